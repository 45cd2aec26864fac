"""socle: the ANS digital-health target architecture as code — tooling (CLI, offline render, audit)."""
__version__ = "0.1.0"

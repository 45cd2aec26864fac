"""Local control plane tooling: pinned builds of the programs a real cluster run needs (see controlplane/README.md)."""

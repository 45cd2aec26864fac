"""The auditors' suite, shipped with the kit: `pytest --pyargs socle.auditsuite --evidence ...` (see plugin.py)."""

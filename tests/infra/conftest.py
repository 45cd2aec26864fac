"""`pytest tests/infra --evidence ...` runs the auditors' suite shipped in the package (socle.auditsuite); the
options, markers and evidence loading come from its pytest plugin (entry point `socle-audit`)."""

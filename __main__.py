"""Pulumi entry point: reads the stack's config, builds its blueprint, registers everything."""
from socle.program import run

run()

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from socle.render import Rendered, render_files, run_program
from socle.stackfile import Stack, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of a program a test needs: skipped on a developer machine without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


TERMINAL_NOTES: list[str] = []  # lines for the end of the run (scanner counts), shown in CI logs


def pytest_terminal_summary(terminalreporter):
    if TERMINAL_NOTES:
        terminalreporter.section("socle")
        for line in TERMINAL_NOTES:
            terminalreporter.write_line(line)


_cache: dict[str, tuple[Stack, Rendered, dict[str, str]]] = {}


def rendered_stack(name: str) -> tuple[Stack, Rendered, dict[str, str]]:
    if name not in _cache:
        stack = load(name)
        rendered = run_program(stack)
        _cache[name] = (stack, rendered, render_files(stack, rendered))
    return _cache[name]


@pytest.fixture(params=EXAMPLE_STACKS)
def example(request) -> tuple[Stack, Rendered, dict[str, str]]:
    return rendered_stack(request.param)


@pytest.fixture
def chdir_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    return ROOT

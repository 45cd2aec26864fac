"""Tenant files of a regional stack: one établissement per file, `stacks/<stack>/tenants/<FINESS or SIRET>.yaml`
(beside the stack file), merged into `socle:params.tenants` before validation, and every problem found in a tenant's
values named by its own file and key path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .stackfile import CONFIG_NS, Problem, StackError, display

PREFIX = f"config.{CONFIG_NS}:params.tenants."
MAX_TENANTS = 1000


def tenant_dir(stack_path: Path, stack: str) -> Path:
    return stack_path.resolve().parent / stack / "tenants"


def with_tenants(config: Any, stack_path: Path, stack: str) -> tuple[Any, dict[str, str], list[Problem]]:
    """The configuration with the tenant files' contents under `socle:params.tenants` (key: the file's stem), the
    file shown for each tenant, and the problems of reading them (every one at once)."""
    from .safeyaml import load_stack_file

    folder = tenant_dir(stack_path, stack)
    params = config.get(f"{CONFIG_NS}:params") if isinstance(config, dict) else None
    if not isinstance(params, dict) or not folder.is_dir():
        return config, {}, []
    problems: list[Problem] = []
    files: dict[str, str] = {}
    tenants: dict[str, Any] = {}
    if "tenants" in params:
        problems.append(Problem(display(stack_path), f"config.{CONFIG_NS}:params.tenants",
                                f"tenants are files of their own in {display(folder)}/, not a key of the stack file"))
    paths = sorted(folder.iterdir())
    for path in paths[: MAX_TENANTS + 1]:
        shown = display(path)
        if path.name.startswith("."):
            continue
        if path.suffix != ".yaml" or not path.is_file():
            problems.append(Problem(shown, "-", "not a tenant file: a tenant is `<FINESS or SIRET>.yaml`"))
            continue
        try:
            doc = load_stack_file(path, shown)
        except StackError as exc:
            problems += exc.problems
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(shown, "-", "a tenant file is a mapping of the tenant's parameters"))
            continue
        files[path.stem] = shown
        tenants[path.stem] = doc
    if len(paths) > MAX_TENANTS:
        problems.append(Problem(display(folder), "-", f"more than {MAX_TENANTS} tenant files"))
    merged = dict(config)
    merged[f"{CONFIG_NS}:params"] = {**params, "tenants": tenants}
    return merged, files, problems


def relocate(problems: list[Problem], files: dict[str, str]) -> list[Problem]:
    """A problem at `config.socle:params.tenants.<key>.<path>` is the tenant file's `<path>`."""
    out = []
    for p in problems:
        if p.path.startswith(PREFIX):
            key, _, rest = p.path[len(PREFIX):].partition(".")
            if key in files:
                out.append(Problem(files[key], rest or "-", p.message))
                continue
        out.append(p)
    return out

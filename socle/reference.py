"""The parameter reference of every blueprint, generated from its model (docs/parameters.md): each key path of
`socle:params` (and of a regional stack's tenant files), its type, its default and its description.

Regenerate after a change of a model:  python -m socle.reference --write   (a test checks the page is current)
"""
from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

PAGE = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"
REGENERATE = "python -m socle.reference --write"


def _models(annotation: Any) -> list[type[BaseModel]]:
    out = []
    for a in [annotation, *typing.get_args(annotation)]:
        for b in [a, *typing.get_args(a)]:
            if isinstance(b, type) and issubclass(b, BaseModel) and b not in out:
                out.append(b)
    return out


def _type(annotation: Any) -> str:
    """A reader's name of a type: `list of str`, `one of: dev, production`, `int or null`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (list, tuple):
        return "list of " + _type(args[0]) if args else "list"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}" if args else "map"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        kinds = [_type(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, BaseModel):
        return ""  # a group: its keys follow
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [json.loads(v.model_dump_json()) for v in value]
    return "`" + json.dumps(value, ensure_ascii=False).replace("|", "\\|") + "`"


def rows(model: type[BaseModel], prefix: str = "", seen: tuple = ()) -> list[tuple[str, str, str, str]]:
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        subs = [m for m in _models(field.annotation) if m not in seen]
        listed = typing.get_origin(field.annotation) is list or "list[" in str(field.annotation)
        mapped = typing.get_origin(field.annotation) is dict or "dict[" in str(field.annotation)
        kind = _type(field.annotation)
        out.append((path, kind, _default(field), (field.description or "").replace("|", "\\|").replace("\n", " ")))
        for sub in subs[:1]:
            child = f"{path}[*]." if listed else f"{path}.<key>." if mapped else f"{path}."
            out += rows(sub, child, seen + (model,))
    return out


def page() -> str:
    from .blueprints import registry

    lines = ["# Parameter reference", "",
             "Generated from the blueprints' parameter models (`socle/blueprints/`); do not edit: run "
             f"`{REGENERATE}`. Each key is a path under the stack file's `socle:params`; `[*]` is any item of a list, "
             "`<key>` any key of a map. Descriptions start with the requirement a parameter serves "
             "([REQUIREMENTS.md](REQUIREMENTS.md)); the production profile refuses weaker values.", ""]
    for bp in sorted(registry().values(), key=lambda b: b.name):
        lines += [f"## {bp.name} {bp.version}", "", bp.description + ".", "",
                  "| key | type | default | description |", "|---|---|---|---|"]
        lines += [f"| `{path}` | {kind} | {default} | {desc} |" for path, kind, default, desc in rows(bp.model)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = page()
    if "--write" in argv:
        PAGE.write_text(text, encoding="utf-8")
        print(f"wrote {PAGE}")
        return 0
    current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
    if current != text:
        print(f"{PAGE} is out of date: run {REGENERATE}")
        return 1
    print(f"{PAGE} is up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

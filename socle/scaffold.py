"""`socle new`: a stack file listing every parameter of a blueprint with its default and a comment."""
from __future__ import annotations

import json
import typing
from importlib import resources
from typing import Any

import jinja2
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from socle.blueprints import Blueprint

REQUIRED = "REQUIRED"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        return _model_of(item)
    return None


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith(" ...") else text


def _comment(field: Any, required: bool) -> str:
    desc = field.description or ""
    if required:
        return f"  # {REQUIRED}" + (f": {desc}" if desc else "")
    return f"  # {desc}" if desc else ""


def model_lines(model: type[BaseModel], indent: int = 0, defaults: BaseModel | None = None) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for name, field in model.model_fields.items():
        required = field.is_required() and defaults is None
        sub = _model_of(field.annotation)
        item = _list_item_model(field.annotation)
        if defaults is not None:
            value = getattr(defaults, name)
            if isinstance(value, BaseModel):
                lines.append(f"{pad}{name}:{_comment(field, False)}")
                lines += model_lines(type(value), indent + 2, value)
            else:
                if isinstance(value, list) and value and isinstance(value[0], BaseModel):
                    value = [json.loads(v.model_dump_json()) for v in value]
                lines.append(f"{pad}{name}: {_scalar(value)}{_comment(field, False)}")
            continue
        if sub is not None:
            lines.append(f"{pad}{name}:{_comment(field, False)}")
            if field.is_required():
                lines += model_lines(sub, indent + 2)
            else:
                lines += model_lines(sub, indent + 2, field.get_default(call_default_factory=True))
            continue
        if item is not None and required:
            lines.append(f"{pad}{name}:{_comment(field, True)} (at least one)")
            sub_lines = model_lines(item, indent + 4)
            first = sub_lines[0].lstrip()
            lines.append(f"{pad}  - {first}")
            lines += sub_lines[1:]
            continue
        if required:
            lines.append(f"{pad}{name}:{_comment(field, True)}")
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = json.loads(default.model_dump_json())
        elif isinstance(default, list) and default and isinstance(default[0], BaseModel):
            default = [json.loads(d.model_dump_json()) for d in default]
        if default is PydanticUndefined:
            default = None
        lines.append(f"{pad}{name}: {_scalar(default)}{_comment(field, False)}")
    return lines


def stack_file(bp: Blueprint, name: str) -> str:
    template_text = resources.files("socle").joinpath(bp.stack_template).read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    from .certify import pin_for

    return env.from_string(template_text).render(
        blueprint=bp, stack=name, params="\n".join(model_lines(bp.model, 4)),
        blueprint_digest=pin_for(bp)[0],  # the certified digest the stack is pinned to (None: not certified)
    )


# A project of the user's own (`socle new` outside any Pulumi project): the program is the installed kit's.
MAIN_PY = ('"""Pulumi entry point: the socle kit reads the stack\'s configuration, builds its blueprint, registers '
           'everything."""\n'
           "from socle.program import run\n"
           "\n"
           "run()\n")


def project_files(directory_name: str) -> dict[str, str]:
    """Pulumi.yaml (written by the YAML serialiser) and __main__.py of a new project named after its directory."""
    import re

    import yaml

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", directory_name).strip("-.") or "socle-project"
    project = {"name": name, "description": "Health-data platform built from a socle blueprint",
               "runtime": {"name": "python"}, "main": "__main__.py", "stackConfigDir": "stacks"}
    header = "# Created by `socle new`: a Pulumi project whose program is the socle kit (pip install socle-sante).\n"
    return {"Pulumi.yaml": header + yaml.safe_dump(project, sort_keys=False, allow_unicode=True), "__main__.py": MAIN_PY}

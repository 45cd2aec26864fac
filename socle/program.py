"""The Pulumi program: stack config -> parameter model -> blueprint -> resources.

Run by the Pulumi engine through __main__.py, and by `socle render` under the SDK's mocks.
"""
from __future__ import annotations

import json

import pulumi

from .stackfile import CONFIG_NS, validate_config


def run() -> None:
    cfg = pulumi.Config(CONFIG_NS)
    stack_file = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    raw: dict[str, object] = {}
    for key in ("blueprint", "blueprintVersion"):
        value = cfg.get(key)
        if value is not None:
            raw[f"{CONFIG_NS}:{key}"] = value
    params = cfg.get("params")
    if params is not None:
        try:
            raw[f"{CONFIG_NS}:params"] = json.loads(params)
        except json.JSONDecodeError:
            raw[f"{CONFIG_NS}:params"] = params
    bp, model, problems = validate_config(raw, stack_file)
    if problems or bp is None or model is None:
        raise pulumi.RunError("invalid stack configuration:\n" + "\n".join(str(p) for p in problems))
    bp.build(model)

"""The Pulumi program: stack config -> parameter model -> blueprint -> resources.

Run by the Pulumi engine through __main__.py, and by `socle render` under the SDK's mocks.
"""
from __future__ import annotations

import json

import pulumi

from .stackfile import CONFIG_NS, StackError, project_root, secret_problems, validate_config


def check_stack_file(stack_file: str) -> None:
    """The engine parsed the stack file itself: run socle's YAML checks on it too (duplicate keys, key types,
    tags, aliases, size), every problem on its own line. Under mocks (`socle render`) the name is the stack's
    name: a stack given by path was checked by `socle.stackfile.load`, and stacks/ may hold no such file."""
    from .safeyaml import load_stack_file

    path = project_root() / stack_file
    if not path.is_file():
        return
    try:
        doc = load_stack_file(path, stack_file)
    except StackError as exc:
        raise pulumi.RunError("invalid stack file:\n" + "\n".join(str(p) for p in exc.problems)) from None
    # The engine hands the program decrypted values: the stack file itself must hold every secret encrypted, and
    # only where the kit takes a secret (the rules `socle validate` applies to the file).
    refused = secret_problems((doc.get("config") or {}) if isinstance(doc, dict) else {}, stack_file)
    if refused:
        raise pulumi.RunError("invalid stack configuration:\n" + "\n".join(str(p) for p in refused))


def run() -> None:
    cfg = pulumi.Config(CONFIG_NS)
    stack_file = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    check_stack_file(stack_file)
    raw: dict[str, object] = {}
    for key in ("blueprint", "blueprintVersion", "blueprintDigest"):  # the digest: a pinned stack runs certified code
        value = cfg.get(key)
        if value is not None:
            raw[f"{CONFIG_NS}:{key}"] = value
    params = cfg.get("params")
    if params is not None:
        try:
            raw[f"{CONFIG_NS}:params"] = json.loads(params)
        except json.JSONDecodeError:
            raw[f"{CONFIG_NS}:params"] = params
    params_raw = raw.get(f"{CONFIG_NS}:params")
    tenant_files: dict[str, str] = {}
    if isinstance(params_raw, dict) and "tenants" not in params_raw:  # the engine reads the stack file only
        from .tenants import with_tenants

        raw, tenant_files, problems = with_tenants(raw, project_root() / stack_file, pulumi.get_stack())
        if problems:
            raise pulumi.RunError("invalid tenant files:\n" + "\n".join(str(p) for p in problems))
    bp, model, problems = validate_config(raw, stack_file, decrypted=True)
    from .tenants import relocate

    problems = relocate(problems, tenant_files)
    if problems or bp is None or model is None:
        raise pulumi.RunError("invalid stack configuration:\n" + "\n".join(str(p) for p in problems))
    from socle.components.grammar import GrammarError

    try:
        bp.build(model)
    except GrammarError as exc:  # a file or object the validation could not foresee: one sentence, no traceback
        raise pulumi.RunError(f"invalid stack configuration: {stack_file}: {exc}") from None
    from . import __version__

    pulumi.export("kitVersion", __version__)
    pulumi.export("blueprint", {"name": bp.name, "version": bp.version})
    for key, value in bp.outputs(model).items():
        pulumi.export(key, value)

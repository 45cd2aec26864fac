"""The control catalogue enforced at `pulumi preview` / `pulumi up`: a Pulumi policy pack (CrossGuard) built from
the same controls the audit runs, not a second copy of the rules.

Every checked control of the catalogue is one stack validation policy (its name is the requirement ID in lower
case): the pack rebuilds, from the Kubernetes resources the program registers, the objects a render would hold,
runs the audit's runner on them (waivers of the stack's `socle:audit` section honoured, with their expiry), and
reports each failing object against its resource's URN, with the requirement ID and the remediation. Missing
evidence is a violation too, as in the audit.

Enforcement: `mandatory` for critical and high controls in production, `advisory` otherwise. The profile and the
waivers come from the stack: `socle preview|up` pass its file (SOCLE_STACK_FILE); `pulumi preview --policy-pack`
run by hand can set SOCLE_STACK_FILE too, else the pack judges as production without waivers (the strictest).
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Callable

PACK_DIR = Path(__file__).resolve().parent / "pack"
PACK = PACK_DIR / "run"  # the executable the engine starts (`--policy-pack socle/policy/pack/run`)
UNKNOWN = "<unknown until deployed>"
STACK_FILE_ENV = "SOCLE_STACK_FILE"
MANDATORY = ("critical", "high")


def plain(value: Any) -> Any:
    """Resource properties as plain data; a value the engine cannot know during a preview becomes UNKNOWN."""
    from collections.abc import Mapping, Sequence

    from pulumi_policy.proxy import UnknownValueError

    if isinstance(value, Mapping):
        out = {}
        for key in list(value.keys()):
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        out_list = []
        for i in range(len(value)):
            try:
                out_list.append(plain(value[i]))
            except UnknownValueError:
                out_list.append(UNKNOWN)
        return out_list
    return value


def kubernetes_objects(resources: list[Any]) -> list[tuple[dict, str]]:
    """(object, URN) of each Kubernetes resource of the stack, as the API server would receive it."""
    out = []
    for r in resources:
        kind_token = str(r.resource_type)
        if not kind_token.startswith("kubernetes:") or kind_token.startswith("kubernetes:index:"):
            continue  # the provider itself, or a Helm/YAML component
        obj = plain(r.props)
        if isinstance(obj, dict) and obj.get("kind") and obj.get("metadata"):
            out.append((obj, r.urn))
    return out


def stack_settings() -> tuple[str, Any, tuple[str, ...], str]:
    """(profile, audit config, allowed registries, where they come from): from the stack file SOCLE_STACK_FILE
    names, else production without waivers or registries (the strictest)."""
    from socle.audit.config import AuditConfig

    path = os.environ.get(STACK_FILE_ENV, "")
    if not path:
        return "production", AuditConfig(), (), f"no stack file ({STACK_FILE_ENV} unset): judged as production, no waiver"
    from socle.stackfile import load

    st = load(path)  # a StackError here stops the pack: the engine reports it
    images = getattr(st.params, "images", None)
    return (getattr(st.params, "profile", "production"), st.audit or AuditConfig(),
            tuple(getattr(images, "allowed_registries", ()) or ()), f"stack file {st.file}")


def evaluate(objs: list[tuple[dict, str]], profile: str, cfg: Any, registries: tuple[str, ...] = (),
             today: dt.date | None = None):
    """The audit of these objects: {control ID: [(finding, URN of its object or "")]} for failures and missing
    evidence, waived findings left out. A stack without the kit's namespaces has nothing to judge."""
    from socle.audit import runner
    from socle.audit.evidence import Evidence
    from socle.audit.model import FAILING_STATUSES, ObjRef

    ev = Evidence(source="pulumi preview", objects=[o for o, _ in objs], target="the stack's resources")
    ctx = runner.make_context(ev, today or dt.date.today(), profile=profile, allowed_registries=registries)
    urns = {ObjRef.of(o): urn for o, urn in objs}
    out: dict[str, list[tuple[Any, str]]] = {}
    try:
        results = runner.run(ev, ctx, cfg).results
    except runner.AuditInputError:
        return out
    for result in results:
        bad = [(f, urns.get(f.obj, "")) for f in result.findings if f.status in FAILING_STATUSES]
        if bad:
            out[result.control.id] = bad
    return out


def policies() -> list[Any]:
    """One stack validation policy per checked control of the catalogue."""
    from pulumi_policy import EnforcementLevel, StackValidationPolicy

    from socle.audit.controls import catalogue

    profile, cfg, registries, origin = stack_settings()
    cache: dict[tuple[str, ...], dict] = {}

    def judged(args) -> dict:
        key = tuple(sorted(str(r.urn) for r in args.resources))
        if key not in cache:
            cache.clear()
            cache[key] = evaluate(kubernetes_objects(args.resources), profile, cfg, registries)
        return cache[key]

    def check(control) -> Callable:
        def validate(args, report_violation) -> None:
            for finding, urn in judged(args).get(control.id, []):
                message = (f"{control.id} ({control.severity}): {finding.obj}: {finding.reason}. "
                           f"Remediation: {control.remediation} [{profile}; {origin}]")
                if urn:
                    report_violation(message, urn)
                else:
                    report_violation(message)
        return validate

    out = []
    for control in catalogue():
        if control.manual:
            continue
        level = EnforcementLevel.MANDATORY if profile == "production" and control.severity in MANDATORY \
            else EnforcementLevel.ADVISORY
        out.append(StackValidationPolicy(name=control.id.lower(), description=f"{control.id}: {control.title}",
                                         validate=check(control), enforcement_level=level))
    return out

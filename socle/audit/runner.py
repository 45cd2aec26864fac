"""Run the catalogue over one evidence source, apply waivers, and produce the audit result."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from .. import __version__ as KIT_VERSION
from ..constants import ANN_BLUEPRINT
from .config import AuditConfig
from .controls import catalogue
from .evidence import Evidence
from .model import Context, Control, ControlResult, Finding


class AuditInputError(Exception):
    """The evidence cannot be audited (not a socle environment, unreadable input): exit 2, no report."""


@dataclass
class Audit:
    target: str
    source: str
    context: Context
    kit_version: str
    blueprints: list[str]
    results: list[ControlResult]
    config: AuditConfig = field(default_factory=AuditConfig)
    object_count: int = 0

    @property
    def date(self) -> dt.date:
        return self.context.today

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("pass", "fail", "waived", "not-applicable", "manual")}
        for r in self.results:
            out[r.status] += 1
        return out


def make_context(ev: Evidence, today: dt.date, profile: str | None = None, stack_profile: str | None = None,
                 allowed_registries: tuple[str, ...] = ()) -> Context:
    """The profile the audit judges against: given > the stack's > declared by the objects > production."""
    if profile:
        chosen, origin = profile, "given on the command line"
    elif stack_profile:
        chosen, origin = stack_profile, "from the stack file"
    elif ev.declared_profile():
        chosen, origin = ev.declared_profile(), "declared by the namespaces (label socle.esante.fr/profile)"
    else:
        chosen, origin = "production", "nothing declared: the strictest profile is assumed"
    return Context(profile=chosen, profile_origin=origin, today=today, allowed_registries=allowed_registries)  # type: ignore[arg-type]


def _apply_waivers(control: Control, findings: list[Finding], cfg: AuditConfig, today: dt.date) -> ControlResult:
    result = ControlResult(control, "not-applicable")
    waivers = [w for w in cfg.waivers if w.control == control.id]
    used: set[tuple[int, str]] = set()
    for f in findings:
        match = next(((i, w, pattern) for i, w in enumerate(waivers) if (pattern := w.matching(f.obj))), None)
        if f.status != "fail" or match is None:
            result.findings.append(f)
            continue
        i, w, pattern = match
        used.add((i, pattern))
        if w.expired(today):
            result.findings.append(Finding("fail", f.obj, f"{f.reason} — waiver expired on {w.expires} (owner {w.owner})", f.file))
        else:
            result.waived.append((f, f"waived until {w.expires} by {w.owner}: {w.justification}"))
    for i, w in enumerate(waivers):
        for pattern in w.objects:
            if (i, pattern) not in used:
                result.notes.append(f"waiver for {pattern} (until {w.expires}) matches no failure: remove it")
    statuses = {f.status for f in result.findings}
    if "fail" in statuses:
        result.status = "fail"
    elif result.waived:
        result.status = "waived"
    elif "pass" in statuses:
        result.status = "pass"
    else:
        result.status = "not-applicable"
        if not result.findings:
            result.notes.append("no object in the evidence this control applies to")
    return result


def run(ev: Evidence, ctx: Context, cfg: AuditConfig | None = None, controls: list[Control] | None = None) -> Audit:
    cfg = cfg or AuditConfig()
    if not ev.kit_namespaces:
        raise AuditInputError(
            f"{ev.source}: no namespace of the kit (label app.kubernetes.io/part-of=socle) among "
            f"{len(ev.objects)} objects — nothing to audit")
    results = []
    for control in controls or catalogue():
        if control.manual:
            r = ControlResult(control, "manual")
            ref = cfg.evidence.get(control.id)
            r.notes.append(f"evidence recorded: {ref.reference} (owner {ref.owner}, {ref.date})" if ref
                           else f"manual evidence required: {control.manual_evidence}")
            results.append(r)
            continue
        findings = list(control.check(ev, ctx))  # type: ignore[misc]
        results.append(_apply_waivers(control, findings, cfg, ctx.today))
    return Audit(
        target=ev.target, source=ev.source, context=ctx, kit_version=KIT_VERSION,
        blueprints=sorted(ev.namespace_annotation(ANN_BLUEPRINT)), results=results, config=cfg,
        object_count=len(ev.objects),
    )


Format = Literal["text", "json"]

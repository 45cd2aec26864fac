"""Run the catalogue over one evidence source, apply waivers, and produce the audit result."""
from __future__ import annotations

import datetime as dt
import gc
from dataclasses import dataclass, field
from typing import Literal

from .. import __version__ as KIT_VERSION
from ..constants import ANN_BLUEPRINT
from .config import AuditConfig
from .controls import catalogue
from .evidence import Evidence
from .model import (CONTROL_STATUSES, FAILING_STATUSES, MANUAL_MISSING, MANUAL_RECORDED, Context, Control, ControlResult,
                    Finding, ObjRef)


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
    audit_day: dt.date | None = None  # the day the audit ran (system clock); None: the date judged
    coverage: dict = field(default_factory=dict)  # what the evidence holds against what the audit expects (coverage())
    # the blueprint's certification and the stack's deviations from its certified reference (socle.certify.audit_section)
    certification: dict | None = None

    @property
    def date(self) -> dt.date:
        """The date judged (waiver expiry): `--as-of`, or the day of the audit."""
        return self.context.today

    @property
    def as_of_notice(self) -> str | None:
        """The headline every report carries when the date judged is not the day of the audit."""
        if self.audit_day is None or self.audit_day == self.date:
            return None
        return f"judged as of {self.date.isoformat()} (not the day of the audit, {self.audit_day.isoformat()})"

    @property
    def failed(self) -> bool:
        """A control failed, or could not be judged for missing evidence."""
        return any(r.status in FAILING_STATUSES for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in CONTROL_STATUSES}
        for r in self.results:
            out[r.status] += 1
        return out


NOTHING_TO_JUDGE = "no object in the evidence this control applies to"

PROFILE_GIVEN = "given on the command line (--profile)"
PROFILE_STACK = "from the stack file"
PROFILE_AUDITOR = "the auditor's standard: production unless --profile or --stack says otherwise; " \
                  "the namespaces' own socle.esante.fr/profile labels are not trusted"


def make_context(ev: Evidence, today: dt.date, profile: str | None = None, stack_profile: str | None = None,
                 allowed_registries: tuple[str, ...] = (), stack_file: str | None = None) -> Context:
    """The profile the audit judges against: `--profile` > the stack's (a render, or `--stack`) > production.

    Never the profile the audited namespaces declare: the audited party does not choose the standard. A namespace
    whose label claims a weaker profile than the one judged is a finding of its own (K8S-09)."""
    if profile:
        chosen, origin = profile, PROFILE_GIVEN
    elif stack_profile:
        chosen, origin = stack_profile, PROFILE_STACK + (f" {stack_file}" if stack_file else "")
    else:
        chosen, origin = "production", PROFILE_AUDITOR
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
        elif w.approved > today:
            # Judged as of a date before the waiver existed: it does not apply (no waiver from the future).
            result.findings.append(Finding("fail", f.obj, f"{f.reason} — waiver not yet approved on {today} "
                                                          f"(approved {w.approved}, owner {w.owner})", f.file))
        else:
            result.waived.append((f, f"waived until {w.expires} by {w.owner} (approved {w.approved}): {w.justification}"))
    for i, w in enumerate(waivers):
        for pattern in w.objects:
            if (i, pattern) not in used:
                result.notes.append(f"waiver for {pattern} (until {w.expires}) matches no failure: remove it")
    statuses = {f.status for f in result.findings}
    if "fail" in statuses:
        result.status = "fail"
    elif "evidence-missing" in statuses:
        result.status = "evidence-missing"
    elif "declared" in statuses:
        result.status = "declared"
    elif result.waived:
        result.status = "waived"
    elif "pass" in statuses:
        result.status = "pass"
    else:
        result.status = "not-applicable"
        if not result.findings:
            result.notes.append(NOTHING_TO_JUDGE)
    return result


def run(ev: Evidence, ctx: Context, cfg: AuditConfig | None = None, controls: list[Control] | None = None,
        audit_day: dt.date | None = None) -> Audit:
    """`audit_day`: the day the audit runs, when the date judged (`ctx.today`, `--as-of`) may differ from it."""
    cfg = cfg or AuditConfig()
    expected = expected_namespaces(cfg)
    if expected:
        ev.expect_namespaces(expected, "the stack's inventory")
    if not ev.kit_namespaces:
        raise AuditInputError(
            f"{ev.source}: no namespace of the kit (label app.kubernetes.io/part-of=socle) among "
            f"{len(ev.objects)} objects — nothing to audit")
    # The evidence of a regional cluster is millions of small containers that the cyclic garbage collector would
    # rescan again and again while the controls allocate (superlinear time); the audit itself makes no cycles
    # worth collecting, so the collector pauses for the run and resumes as it was.
    collecting = gc.isenabled()
    gc.disable()
    try:
        results = _judge(ev, ctx, cfg, controls)
    finally:
        if collecting:
            gc.enable()
    return Audit(
        target=ev.target, source=ev.source, context=ctx, kit_version=KIT_VERSION,
        blueprints=sorted(ev.namespace_annotation(ANN_BLUEPRINT)), results=results, config=cfg,
        object_count=len(ev.objects), audit_day=audit_day, coverage=coverage(ev),
    )


def coverage(ev: Evidence) -> dict:
    """What the evidence holds against what the audit expects: the kit's namespaces (the stack's inventory when
    given), the objects in scope by kind, and the configuration files the containers load, resolved or missing."""
    from .evidence import PROGRAMS

    configs: dict[str, dict[str, list[str]]] = {}
    for program in PROGRAMS:
        loaded = ev.loaded(program)
        if loaded:
            configs[program] = {
                "resolved": sorted({f"{x.workload.ref} {x.container.get('name')}: {x.path} -> "
                                    f"{x.file.ref}/{x.file.key}" for x in loaded if x.file is not None}),
                "missing": sorted({x.why for x in loaded if x.file is None}),
            }
    kinds: dict[str, int] = {}
    for o in ev.scoped():
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    return {
        "namespaces_expected": sorted(ev.expected_namespaces),
        "namespaces_expected_from": ev.expected_origin,
        "namespaces_found": sorted(ev.kit_namespaces),
        "namespaces_missing": sorted(ev.missing_namespaces),
        "namespaces_without_label": sorted(meta_name(o) for o in ev.unlabelled_namespaces),
        "objects_in_scope": sum(kinds.values()),
        "kinds_in_scope": dict(sorted(kinds.items())),
        "configurations": configs,
    }


def meta_name(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _manual(control: Control, cfg: AuditConfig, today: dt.date) -> ControlResult:
    """A documentary control: `manual: missing` when no evidence is recorded, `manual: evidence recorded` when it is
    recorded and holds on the day judged, `fail` when it does not hold (too old for the control's dated rule,
    expired, dated in the future)."""
    r = ControlResult(control, MANUAL_MISSING)
    ref = cfg.evidence.get(control.id)
    if ref is None:
        r.notes.append(f"manual evidence required: {control.manual_evidence}")
        r.notes.append("no documentary evidence is recorded in the stack's socle:audit.evidence")
        return r
    r.notes.append(f"evidence recorded: {ref.reference} (owner {ref.owner}, {ref.date})")
    if ref.describe():
        r.notes.append(ref.describe())
    problems = ref.problems(today, control.max_age_days, control.needs_validity)
    verified, how = ref.document_check(cfg.base_dir)
    if verified is False:
        problems.append(how)
    if problems:
        r.status = "fail"
        r.findings.append(Finding("fail", ObjRef("ManualEvidence", "", control.id),
                                  f"recorded evidence {ref.reference!r}: " + "; ".join(problems)))
    else:
        r.status = MANUAL_RECORDED
        r.notes.append(how)
    return r



def expected_namespaces(cfg: AuditConfig) -> dict[str, str]:
    """The kit's namespaces (name -> block) the stack's inventory names, when the audit has a stack."""
    return dict(getattr(cfg, "_namespaces", None) or {})


def _absent_evidence(ev: Evidence, result: ControlResult) -> None:
    """A control with nothing to judge is not applicable only when the evidence is complete: when a namespace of the
    stack's inventory is absent, what it would have judged may be there, so the control's evidence is missing."""
    missing = ev.missing_namespaces
    if not missing or result.status != "not-applicable" or result.findings:
        return
    result.status = "evidence-missing"
    result.notes = [n for n in result.notes if n != NOTHING_TO_JUDGE]
    result.notes.append("no object to judge, and namespaces of the stack's inventory are not in the evidence: "
                        + ", ".join(f"{n} (block {b})" for n, b in sorted(missing.items())))



def _judge(ev: Evidence, ctx: Context, cfg: AuditConfig, controls: list[Control] | None) -> list[ControlResult]:
    results = []
    for control in controls or catalogue():
        if control.manual:
            reason = control.scope(ev) if control.scope else None
            # A documentary requirement the evidence shows does not apply (HDS-03 for self-hosting): no document.
            results.append(ControlResult(control, "not-applicable", notes=[reason]) if reason
                           else _manual(control, cfg, ctx.today))
            continue
        try:
            findings = list(control.check(ev, ctx))  # type: ignore[misc]
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # The objects have the right shape (checked at load) but a configuration file they carry does not:
            # the evidence cannot be judged, which is an input error naming the control, never a traceback.
            raise AuditInputError(f"{control.id}: the evidence could not be judged ({type(exc).__name__}: {exc}); "
                                  "check the configuration files the kit's ConfigMaps carry") from None
        result = _apply_waivers(control, findings, cfg, ctx.today)
        _absent_evidence(ev, result)
        results.append(result)
    return results


Format = Literal["text", "json"]

"""The vocabulary of the audit: controls, findings, the context an audit runs in, and results.

A control is one requirement of `REQUIREMENTS.md` (same ID) with a check over plain Kubernetes objects (dicts as
the API server returns them) and the configuration files carried in ConfigMaps. A check yields one finding per
object it judged: pass, fail, not applicable, or evidence missing (what it needs is absent or unreadable: a
failure of the audit), always with the reason. Controls whose evidence is a document
(a certificate, a register, a restore record) have no check: the report asks for manual evidence.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Literal

if TYPE_CHECKING:
    from .evidence import Evidence

Status = Literal["pass", "fail", "not-applicable", "evidence-missing", "declared"]
MANUAL_RECORDED = "manual: evidence recorded"
MANUAL_MISSING = "manual: missing"
ControlStatus = Literal["pass", "fail", "waived", "not-applicable", "evidence-missing", "manual: evidence recorded",
                        "manual: missing", "declared"]
# The statuses of a control, in the order reports count them. `evidence-missing` is a failure of the audit: the
# evidence a control needs is absent, unreadable or not what it must be, so the control cannot say pass.
# `declared`: the rule is met only by what the stack file states (e.g. encryption by a storage driver whose
# parameters the audit cannot read): never a pass, the auditor must see a document. A documentary control is
# `manual: evidence recorded` (its reference, date and hash recorded and holding on the day judged) or
# `manual: missing` (nothing recorded).
CONTROL_STATUSES: tuple[str, ...] = ("pass", "fail", "evidence-missing", "declared", "waived", "not-applicable",
                                     MANUAL_RECORDED, MANUAL_MISSING)
FAILING_STATUSES = frozenset({"fail", "evidence-missing"})
# Statuses the result headline lists as reservations: not failures (exit 0), never passes.
RESERVED_STATUSES = (MANUAL_MISSING, "declared")
Severity = Literal["critical", "high", "medium", "low"]

# Frameworks of the report summary, in display order.
FRAMEWORKS: dict[str, str] = {
    "doctrine": "Doctrine du numérique en santé / CI-SIS",
    "hds": "Hébergement de données de santé (HDS)",
    "pgssi-s": "PGSSI-S",
    "mssante": "MSSanté",
    "psc": "Pro Santé Connect",
    "anssi-tls": "ANSSI TLS",
    "k8s": "Kubernetes hardening (ANSSI / CIS practice)",
}

# Families (one module each); the pytest marker of the infra suite is the family name.
FAMILIES: dict[str, str] = {
    "TLS": "Transport security and PKI",
    "API": "APIs and gateway",
    "PSC": "Pro Santé Connect and administration",
    "FHIR": "FHIR, INS and national services",
    "MSS": "MSSanté relay",
    "TRACE": "Traceability",
    "HDS": "Health data hosting, storage and backups",
    "K8S": "Kubernetes platform hardening",
    "TEN": "Tenant isolation (regional platform)",
}


@dataclass(frozen=True, order=True)
class ObjRef:
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @classmethod
    def of(cls, obj: dict) -> "ObjRef":
        meta = obj.get("metadata") or {}
        return cls(str(obj.get("kind", "?")), str(meta.get("namespace") or ""), str(meta.get("name", "?")))

    @classmethod
    def parse(cls, text: str) -> "ObjRef":
        parts = text.split("/")
        if len(parts) == 2 and all(parts):
            return cls(parts[0], "", parts[1])
        if len(parts) == 3 and all(parts):
            return cls(*parts)
        raise ValueError(f"object reference {text!r} must be Kind/name or Kind/namespace/name")


@dataclass(frozen=True)
class Finding:
    status: Status
    obj: ObjRef
    reason: str
    file: str = ""  # the configuration file (ConfigMap key) the finding is about, when there is one


def passed(obj: dict | ObjRef, reason: str, file: str = "") -> Finding:
    return Finding("pass", obj if isinstance(obj, ObjRef) else ObjRef.of(obj), reason, file)


def failed(obj: dict | ObjRef, reason: str, file: str = "") -> Finding:
    return Finding("fail", obj if isinstance(obj, ObjRef) else ObjRef.of(obj), reason, file)


def not_applicable(obj: dict | ObjRef, reason: str, file: str = "") -> Finding:
    return Finding("not-applicable", obj if isinstance(obj, ObjRef) else ObjRef.of(obj), reason, file)


def missing(obj: dict | ObjRef, reason: str, file: str = "") -> Finding:
    """The evidence this finding needs is absent or unreadable: the reason names what is missing."""
    return Finding("evidence-missing", obj if isinstance(obj, ObjRef) else ObjRef.of(obj), reason, file)


def declared(obj: dict | ObjRef, reason: str, file: str = "") -> Finding:
    """The rule is met only by the stack's own statement, which the audit cannot observe: the reason says what was
    declared and why it cannot be seen. Not a pass."""
    return Finding("declared", obj if isinstance(obj, ObjRef) else ObjRef.of(obj), reason, file)


def judge(obj: dict | ObjRef, problems: list[str], ok: str, file: str = "") -> Finding:
    """One finding: fail listing every problem, or pass with `ok`."""
    return failed(obj, "; ".join(problems), file) if problems else passed(obj, ok, file)


Check = Callable[["Evidence", "Context"], Iterable[Finding]]


@dataclass(frozen=True)
class Control:
    id: str
    family: str
    title: str
    severity: Severity
    frameworks: tuple[str, ...]
    sources: tuple[str, ...]
    remediation: str
    check: Check | None = None  # None: documentary evidence, recorded in the stack's `socle:audit.evidence`
    manual_evidence: str = ""  # what an auditor must see when the control is manual
    max_age_days: int | None = None  # manual: the recorded evidence (its `date`) is at most this old on the day judged
    needs_validity: bool = False  # manual: the document expires (a certificate): `valid_until` is required
    # manual: why the requirement does not apply to this evidence (then no document is asked for), or None
    scope: "Callable[[Evidence], str | None] | None" = None

    @property
    def manual(self) -> bool:
        return self.check is None


@dataclass(frozen=True)
class Context:
    """What a check needs to know beyond the objects, and where each fact came from (shown in the report)."""

    profile: Literal["dev", "production"]
    profile_origin: str
    today: dt.date
    allowed_registries: tuple[str, ...] = ()

    @property
    def production(self) -> bool:
        return self.profile == "production"


@dataclass
class ControlResult:
    control: Control
    status: ControlStatus
    findings: list[Finding] = field(default_factory=list)
    waived: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, waiver text)
    notes: list[str] = field(default_factory=list)  # expired or unused waivers, manual evidence reference

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "fail"]

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "evidence-missing"]

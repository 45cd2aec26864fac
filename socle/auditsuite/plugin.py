"""The auditors' suite as a pytest plugin (entry point `pytest11: socle-audit`), loaded by any pytest once socle is
installed: `pip install socle` then `pytest --pyargs socle.auditsuite --evidence snapshot:FILE | live[:CONTEXT]`
(`render:STACK` from a checkout; `pytest tests/infra` there runs the same tests).

One test per control and object, named with the requirement ID and marked with its family (`-m TLS`); a waived
finding is reported as XFAIL with its waiver (the CLI's "waived"), never as PASSED. In live mode the host checks
also run inside the pods through testinfra's `kubectl://` backend.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from socle.audit import runner, sources
from socle.audit.evidence import Evidence
from socle.stackfile import StackError, load

_audits: dict[tuple, tuple[runner.Audit, Evidence, dict]] = {}

FAMILY_MARKERS = {
    "TLS": "transport security and PKI (TLS-*, PKI-*)",
    "API": "APIs and gateway (API-*, GW-*)",
    "PSC": "Pro Santé Connect and administration (PSC-*, ADM-01)",
    "FHIR": "FHIR, INS and national services (FHIR-*, INS-*, DMP-01)",
    "MSS": "MSSanté relay (MSS-*)",
    "TRACE": "traceability (TRACE-*)",
    "HDS": "health data hosting, storage and backups (HDS-*, BCK-*)",
    "K8S": "Kubernetes hardening (K8S-*)",
    "TEN": "tenant isolation on a regional platform (TEN-*)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("socle", "socle auditors' suite")
    group.addoption("--evidence", default="render:demo",
                    help="render:STACK | snapshot:FILE | live | live:CONTEXT (default: render:demo)")
    group.addoption("--stack", default=None, help="stack file whose profile, waivers and evidence apply (snapshot/live)")
    group.addoption("--kubeconfig", default=None, help="kubeconfig for --evidence live")
    group.addoption("--profile", default=None, choices=("dev", "production"), help="judge against this profile")
    group.addoption("--as-of", default=None, help="date YYYY-MM-DD for waiver expiry (default: today)")


def pytest_configure(config: pytest.Config) -> None:
    for family, what in FAMILY_MARKERS.items():
        config.addinivalue_line("markers", f"{family}: auditors' suite, {what}")
    config.addinivalue_line("markers", "host: checks run inside the daemons (testinfra)")


class EvidenceError(Exception):
    """The evidence could not be read: reported as one failing test with the reason, never a traceback."""


def audit_or_error(metafunc: pytest.Metafunc, argname: str):
    """The audit, or None after parametrizing `argname` with the evidence error (one failing test, no traceback)."""
    try:
        return audit_for(metafunc.config)
    except EvidenceError as exc:
        metafunc.parametrize(argname, [pytest.param(exc, id="evidence")])
        return None


@dataclass(frozen=True)
class Options:
    evidence: str
    stack: str | None
    kubeconfig: str | None
    profile: str | None
    as_of: str | None

    @classmethod
    def of(cls, config: pytest.Config) -> "Options":
        return cls(config.getoption("evidence"), config.getoption("stack"), config.getoption("kubeconfig"),
                   config.getoption("profile"), config.getoption("as_of"))


def audit_for(config: pytest.Config) -> tuple[runner.Audit, Evidence, dict]:
    """The audit of the chosen evidence, computed once per session; usage errors stop the run with a clear message."""
    o = Options.of(config)
    key = tuple(vars(o).values())
    if key in _audits:
        return _audits[key]
    kind, _, arg = o.evidence.partition(":")
    try:
        stack = load(arg if kind == "render" else o.stack) if (kind == "render" or o.stack) else None
        if kind == "render":
            ev = sources.from_render(stack)
        elif kind == "snapshot" and arg:
            ev = sources.from_snapshot(Path(arg))
        elif kind == "live":
            ev = sources.from_live(o.kubeconfig, arg or None)
        else:
            raise EvidenceError(f"--evidence {o.evidence!r}: expected render:STACK, snapshot:FILE, live or live:CONTEXT")
        today = dt.date.fromisoformat(o.as_of) if o.as_of else dt.date.today()
        ctx = runner.make_context(ev, today, profile=o.profile, stack_profile=stack.inventory.profile if stack else None,
                                  allowed_registries=stack.inventory.allowed_registries if stack else (),
                                  stack_file=stack.file if stack else None)
        audit = runner.run(ev, ctx, stack.audit if stack else None, audit_day=dt.date.today())
    except StackError as exc:
        raise EvidenceError("\n".join(map(str, exc.problems))) from None
    except runner.AuditInputError as exc:
        raise EvidenceError(str(exc)) from None
    except ValueError as exc:
        raise EvidenceError(f"--as-of: {exc}") from None
    _audits[key] = (audit, ev, {"live": kind == "live", "kubeconfig": o.kubeconfig, "context": arg or None})
    return _audits[key]


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not any("infra" in str(a) or "auditsuite" in str(a) for a in config.args):
        return []
    try:
        audit, _, _ = audit_for(config)
    except EvidenceError as exc:
        return [f"socle audit: {exc}"]
    c = audit.context
    return [f"socle audit of {audit.target}: evidence {audit.source}, profile {c.profile} ({c.profile_origin}), "
            f"as of {audit.date}, kit {audit.kit_version}, blueprints {', '.join(audit.blueprints) or '-'}"]

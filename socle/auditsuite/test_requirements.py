"""One test per requirement and object: the verdict of the control catalogue on the chosen evidence."""
from __future__ import annotations

import pytest

from socle.audit.model import ControlResult, Finding
from socle.auditsuite.plugin import EvidenceError, audit_or_error


def _id(result: ControlResult, finding: Finding | None) -> str:
    return f"{result.control.id} {finding.obj}" if finding else result.control.id


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "verdict" not in metafunc.fixturenames:
        return
    found_audit = audit_or_error(metafunc, "verdict")
    if found_audit is None:
        return
    audit, _, _ = found_audit
    params = []
    for r in audit.results:
        mark = getattr(pytest.mark, r.control.family)
        items: list[tuple[Finding | None, str | None]] = [(f, None) for f in r.findings] + [(f, w) for f, w in r.waived]
        for finding, waiver in items or [(None, None)]:
            params.append(pytest.param((r, finding, waiver), id=_id(r, finding), marks=[mark]))
    metafunc.parametrize("verdict", params)


def test_requirement(verdict, record_property):
    if isinstance(verdict, EvidenceError):
        pytest.fail(f"the evidence could not be read: {verdict}", pytrace=False)
    result, finding, waiver = verdict
    c = result.control
    record_property("requirement", c.id)
    record_property("severity", c.severity)
    if finding is None and result.status == "evidence-missing":
        # Nothing to judge because the evidence the control needs is absent: a failure, never a skip.
        pytest.fail(f"{c.id} {c.title}: evidence missing — {'; '.join(result.notes)}", pytrace=False)
    if finding is None:
        # Manual controls, and checked controls with nothing to judge in this evidence.
        pytest.skip(f"{result.status}: " + ("; ".join(result.notes) or "nothing to judge"))
    record_property("object", str(finding.obj))
    if waiver:
        record_property("waiver", waiver)
        # Waived is not passed: XFAIL in the terminal, <skipped type="pytest.xfail"> in JUnit, with the waiver.
        pytest.xfail(f"waived ({finding.status}: {finding.reason}) — {waiver}")
    if finding.status == "declared":
        # Met only by the stack's own statement: not a pass; the auditor checks a document.
        pytest.skip(f"{c.id} declared, not observed, for {finding.obj}: {finding.reason}")
    if finding.status == "not-applicable":
        pytest.skip(f"{c.id} not applicable to {finding.obj}: {finding.reason}")
    assert finding.status == "pass", (
        f"{c.id} {c.title}{' — evidence missing' if finding.status == 'evidence-missing' else ''}\n  object: {finding.obj}{' (' + finding.file + ')' if finding.file else ''}\n"
        f"  finding: {finding.reason}\n  remediation: {c.remediation}")

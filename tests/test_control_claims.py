"""Every claim a checked control's title makes is checked: each one, violated alone in the real render of an
example stack, fails the control on the object that carries the violation, with a reason naming the claim
(tests/audit_fixtures.py CLAIMS); the renders themselves keep the verdicts they have."""
from __future__ import annotations

import re
from functools import lru_cache

import pytest

from socle.audit import runner
from socle.audit.controls import by_id, catalogue
from socle.audit.model import Finding
from tests.audit_fixtures import CLAIMS, Fixture, build, objects_of
from tests.conftest import rendered_stack
from tests.test_audit import evidence

CHECKED = [c.id for c in catalogue() if not c.manual]
CASES = [pytest.param(cid, claim, fixture, id=f"{cid}-{i}-{fixture.why}")
         for cid, claims in CLAIMS.items() for i, (claim, fixture) in enumerate(claims)]

# The verdict of each checked control on the unmutated renders, with each stack's own waivers: pass unless listed.
# `declared`: the rule rests on the stack's own statement (a region's country, a purge period, an INS list HAPI
# does not read, encryption by a driver whose parameters the audit does not know): never a pass.
RENDER_VERDICTS: dict[str, dict[str, str]] = {
    "demo": {"PKI-02": "waived", "PSC-05": "not-applicable", "INS-02": "declared", "DMP-01": "not-applicable",
             "MSS-06": "waived", "MSS-08": "declared", "HDS-01": "declared", "HDS-04": "declared", "BCK-01": "declared",
             "K8S-01": "waived", "K8S-03": "waived", "K8S-09": "not-applicable"},
    "chu-exemple-prod": {"INS-02": "declared", "DMP-01": "not-applicable", "MSS-08": "declared", "HDS-01": "declared",
                         "BCK-01": "declared", "K8S-01": "waived", "K8S-03": "waived"},
    # the regional platform: the same stated exceptions for the region's cell and each dedicated tenant's
    "region-demo": {"PKI-02": "waived", "PSC-05": "not-applicable", "INS-02": "declared", "DMP-01": "not-applicable",
                    "MSS-06": "waived", "MSS-08": "declared", "HDS-01": "declared", "HDS-04": "declared",
                    "BCK-01": "declared", "K8S-01": "waived", "K8S-03": "waived", "K8S-09": "not-applicable"},
}


# Areas reworked for issue 11 may override a stack's verdicts (tests/fixtures_<area>.py RENDER_VERDICTS).
for _mod in __import__("tests.audit_fixtures", fromlist=["AREA_MODULES"]).AREA_MODULES:
    try:
        _area = __import__(_mod, fromlist=["RENDER_VERDICTS"])
    except ModuleNotFoundError:
        continue
    for _stack, _verdicts in getattr(_area, "RENDER_VERDICTS", {}).items():
        for _cid, _verdict in _verdicts.items():
            if _verdict == "pass":
                RENDER_VERDICTS[_stack].pop(_cid, None)
            else:
                RENDER_VERDICTS[_stack][_cid] = _verdict


def _on(f: Finding, fixture: Fixture) -> bool:
    kind, name = fixture.expect or ("", "")
    return f.obj.kind == kind and bool(re.fullmatch(rf"{re.escape(name)}(-[0-9a-f]{{10}})?", f.obj.name))


@lru_cache(maxsize=None)
def _render_findings(control_id: str, stack: str) -> tuple[Finding, ...]:
    ev, ctx = evidence(objects_of(stack), stack)
    return tuple(by_id()[control_id].check(ev, ctx))


@pytest.mark.parametrize("control_id,claim,fixture", CASES)
def test_each_claim_of_the_title_fails_on_its_own_violation(control_id, claim, fixture):
    assert fixture.expect and fixture.reason, f"{control_id} {claim!r}: a claim fixture names its object and reason"
    ev, ctx = evidence(build(fixture), fixture.stack)
    findings = list(by_id()[control_id].check(ev, ctx))
    verdicts = [f for f in findings if _on(f, fixture) and f.status == fixture.status]
    assert verdicts, f"{control_id} claim {claim!r} ({fixture.why}): no {fixture.status} on {fixture.expect}: {findings}"
    assert any(re.search(fixture.reason, f.reason) for f in verdicts), \
        f"{control_id} claim {claim!r} ({fixture.why}): no reason matches {fixture.reason!r}: {[f.reason for f in verdicts]}"
    # The verdict comes from the violation, not from the render as it was.
    assert not any(_on(f, fixture) and f.status == fixture.status and re.search(fixture.reason, f.reason)
                   for f in _render_findings(control_id, fixture.stack)), f"{control_id} {claim!r}: already so in the render"


def test_every_checked_control_lists_the_claims_of_its_title():
    assert sorted(CLAIMS) == sorted(CHECKED)
    for cid, claims in CLAIMS.items():
        assert claims, cid
        for claim, fixture in claims:
            assert claim.strip() and fixture.expect and fixture.reason, (cid, claim)
            assert fixture.status in ("fail", "evidence-missing", "declared"), (cid, claim)


@pytest.mark.parametrize("stack", sorted(RENDER_VERDICTS))
def test_the_renders_keep_their_verdicts(stack):
    st, rendered, _ = rendered_stack(stack)
    ev, ctx = evidence(objects_of(stack), stack)
    results = {r.control.id: r for r in runner.run(ev, ctx, st.audit).results}
    got = {cid: results[cid].status for cid in CHECKED}
    assert got == {cid: RENDER_VERDICTS[stack].get(cid, "pass") for cid in CHECKED}
    for cid in CHECKED:
        assert not results[cid].failures and not results[cid].missing, (cid, results[cid].findings)

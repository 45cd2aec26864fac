"""Issue 9, parts 3 and 4: the audit judges against the auditor's standard, and waivers are bounded.

- a snapshot or a live cluster is judged against `--profile`, else the stack's (`--stack`), else production — never
  the profile its namespaces' labels claim; a namespace claiming a weaker profile is itself a finding (K8S-09);
- the command `socle auditor-kubeconfig` prints is complete (profile, stack, report directory);
- waivers name objects (the only `*` is a ConfigMap's content-hash suffix), carry an approval date, an owner and a
  real justification, expire at most 12 months after approval, name known controls; `--as-of` other than the day of
  the audit is in the headline of every report format.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from socle.audit import reports, runner
from socle.audit.config import AuditConfig, Waiver, add_months
from socle.audit.controls import by_id
from socle.audit.evidence import Evidence
from socle.audit.model import ObjRef
from socle.cli import app
from socle.constants import LABEL_PROFILE
from tests.conftest import ROOT, rendered_stack

cli = CliRunner()
DEMO = ROOT / "stacks" / "Pulumi.demo.yaml"
TODAY = dt.date(2026, 11, 27)


def _snapshot(tmp_path: Path, objs: list[dict], name: str = "snapshot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs}, sort_keys=False))
    return path


def _audit_json(*args: str) -> tuple[int, dict]:
    res = cli.invoke(app, ["audit", *args, "--format", "json", "--as-of", "2026-11-27"])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.stdout)


def _controls(report: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report["controls"]}


def _ns_failures(control: dict) -> list[dict]:
    return [f for f in control["failures"] if f["kind"] == "Namespace"]


# --- the auditor's standard ----------------------------------------------------------------------------

def test_snapshot_of_namespaces_labelled_dev_is_judged_as_production(tmp_path, chdir_root):
    """Why: namespaces labelled `socle.esante.fr/profile: dev` turned "PSC sandbox in production" and "1 replica"
    into N/A. The demo render (dev profile: PSC sandbox issuer, one replica) exported as a snapshot, audited
    without --profile or --stack, is judged as production: those are failures, and so is each dev label."""
    _, rendered, _ = rendered_stack("demo")
    assert {o["metadata"]["labels"].get(LABEL_PROFILE) for o in rendered.objects if o["kind"] == "Namespace"
            and LABEL_PROFILE in o["metadata"].get("labels", {})} == {"dev"}
    code, report = _audit_json("--snapshot", str(_snapshot(tmp_path, rendered.objects)))
    assert code == 1
    assert report["report"]["profile"] == "production"
    assert "auditor's standard" in report["report"]["profile_origin"]
    assert "not trusted" in report["report"]["profile_origin"]
    c = _controls(report)
    assert c["PSC-05"]["status"] == "fail" and c["PSC-05"]["failures"]
    assert any("sandbox" in f["reason"] for f in c["PSC-05"]["failures"])
    assert c["K8S-09"]["status"] == "fail"
    assert any(f["kind"] == "Deployment" and "1 replica(s)" in f["reason"] for f in c["K8S-09"]["failures"])
    assert not [f for f in c["K8S-09"]["findings"] if f["status"] == "not-applicable"]
    # The label itself: one finding per kit namespace that claims dev.
    kit = sorted(o["metadata"]["name"] for o in rendered.objects if o["kind"] == "Namespace"
                 and o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "socle")
    labelled = _ns_failures(c["K8S-09"])
    assert sorted(f["name"] for f in labelled) == kit
    assert all(f"{LABEL_PROFILE}=dev claims a weaker profile" in f["reason"] for f in labelled)


def test_the_profile_label_finding_shows_in_the_cli_text(tmp_path, chdir_root):
    _, rendered, _ = rendered_stack("demo")
    res = cli.invoke(app, ["audit", "--snapshot", str(_snapshot(tmp_path, rendered.objects)), "--as-of", "2026-11-27"])
    assert res.exit_code == 1
    assert "profile production (the auditor's standard" in res.output
    assert "FAIL K8S-09 Namespace/chdemo-gateway: label socle.esante.fr/profile=dev claims a weaker profile" in res.output
    assert "FAIL PSC-05" in res.output


def test_profile_option_wins_over_the_stack_and_the_label_is_a_finding(tmp_path, chdir_root):
    _, rendered, _ = rendered_stack("demo")
    snap = str(_snapshot(tmp_path, rendered.objects))
    code, report = _audit_json("--snapshot", snap, "--stack", "demo", "--profile", "production")
    assert code == 1 and report["report"]["profile"] == "production"
    assert report["report"]["profile_origin"] == "given on the command line (--profile)"
    assert _ns_failures(_controls(report)["K8S-09"])


def test_stack_given_for_a_snapshot_sets_the_profile(tmp_path, chdir_root):
    _, rendered, _ = rendered_stack("demo")
    code, report = _audit_json("--snapshot", str(_snapshot(tmp_path, rendered.objects)), "--stack", "demo")
    assert report["report"]["profile"] == "dev"
    assert report["report"]["profile_origin"] == "from the stack file stacks/Pulumi.demo.yaml"
    c = _controls(report)
    assert c["K8S-09"]["status"] == "not-applicable" and not _ns_failures(c["K8S-09"])  # dev judged: the labels agree


def test_live_cluster_labelled_dev_is_judged_as_production(tmp_path, chdir_root):
    from tests.test_audit_live import FakeApi, responses

    _, rendered, _ = rendered_stack("demo")
    with FakeApi(responses(rendered.objects)) as api:
        code, report = _audit_json("--live", "--kubeconfig", str(api.kubeconfig(tmp_path)))
    assert code == 1 and report["report"]["profile"] == "production"
    c = _controls(report)
    assert c["PSC-05"]["status"] == "fail" and _ns_failures(c["K8S-09"])


def test_render_keeps_the_stack_profile(chdir_root):
    code, report = _audit_json("--render", "demo")
    assert report["report"]["profile"] == "dev"
    assert report["report"]["profile_origin"].startswith("from the stack file")
    assert _controls(report)["K8S-09"]["status"] == "not-applicable"


def test_a_label_claiming_production_is_not_trusted_either_way_and_never_lowers_the_standard():
    _, rendered, _ = rendered_stack("demo")
    ev = Evidence(source="test", objects=rendered.objects, target="test")
    ctx = runner.make_context(ev, TODAY)
    assert ctx.profile == "production"  # the labels say dev: ignored
    assert runner.make_context(ev, TODAY, stack_profile="dev").profile == "dev"
    assert runner.make_context(ev, TODAY, profile="dev", stack_profile="production").profile == "dev"


def test_production_namespaces_labelled_production_pass_the_label_check():
    _, rendered, _ = rendered_stack("chu-exemple-prod")
    ev = Evidence(source="test", objects=rendered.objects, target="test")
    findings = list(by_id()["K8S-09"].check(ev, runner.make_context(ev, TODAY)))
    ns = [f for f in findings if f.obj.kind == "Namespace"]
    assert ns and all(f.status == "pass" for f in ns)
    relabelled = copy.deepcopy(rendered.objects)
    for o in relabelled:
        if o["kind"] == "Namespace" and o["metadata"].get("labels", {}).get(LABEL_PROFILE):
            o["metadata"]["labels"][LABEL_PROFILE] = "dev"
    ev = Evidence(source="test", objects=relabelled, target="test")
    ns = [f for f in by_id()["K8S-09"].check(ev, runner.make_context(ev, TODAY)) if f.obj.kind == "Namespace"]
    assert ns and all(f.status == "fail" for f in ns)


def _last_audit_line(text: str) -> list[str]:
    line = [x for x in text.splitlines() if x.startswith("socle audit ")][-1]
    return shlex.split(line)


@pytest.mark.parametrize("stack,profile", [(None, "production"), ("demo", "dev"), ("chu-exemple-prod", "production")])
def test_auditor_kubeconfig_prints_a_complete_audit_command(chdir_root, stack, profile):
    """Why: the command `socle auditor-kubeconfig` told the auditor to run passed neither --profile nor --stack."""
    res = cli.invoke(app, ["auditor-kubeconfig", "--user", "alice", *(["--stack", stack] if stack else [])])
    assert res.exit_code == 0, res.output
    argv = _last_audit_line(res.output)
    assert argv[:3] == ["socle", "audit", "--live"]
    assert argv[argv.index("--kubeconfig") + 1] == "alice.kubeconfig"
    assert argv[argv.index("--profile") + 1] == profile
    assert argv[argv.index("--report-dir") + 1] == "audit-report/"
    if stack:
        assert argv[argv.index("--stack") + 1] == f"stacks/Pulumi.{stack}.yaml"
    else:
        assert "--stack" not in argv


# --- bounded waivers -----------------------------------------------------------------------------------

GOOD = {"control": "K8S-01", "objects": ["Namespace/chdemo-mss"], "owner": "dsi-chdemo", "approved": "2026-11-27",
        "justification": "Postfix's master process must start as root to switch to its unprivileged users.",
        "expires": "2027-11-27"}
A = "config.socle:audit"


def _validate(tmp_path: Path, waivers: list[dict]) -> subprocess.CompletedProcess:
    doc = yaml.safe_load(DEMO.read_text())
    doc["config"]["socle:audit"] = {"waivers": waivers}
    path = tmp_path / "Pulumi.waivers.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return subprocess.run(["socle", "validate", str(path)], capture_output=True, text=True, cwd=ROOT)


def _waiver(**changes) -> dict:
    w = dict(GOOD, **changes)
    return {k: v for k, v in w.items() if v is not None}


CASES = {
    "star-star": (_waiver(objects=["*/*"]), "objects", "only wildcard is a ConfigMap's content-hash suffix"),
    "bare-star": (_waiver(objects=["*"]), "objects", "must be Kind/name or Kind/namespace/name"),
    "kind-star": (_waiver(objects=["Namespace/*"]), "objects", "only wildcard"),
    "namespace-star": (_waiver(objects=["ConfigMap/*/postfix-*"]), "objects", "no wildcard in the kind or the namespace"),
    "deployment-star": (_waiver(objects=["Deployment/chdemo-mss/post*"]), "objects", "only wildcard"),
    "configmap-any": (_waiver(objects=["ConfigMap/chdemo-mss/*"]), "objects", "only wildcard"),
    "expires-2999": (_waiver(expires="2999-12-31"), "expires", "more than 12 months after the approval (2026-11-27)"),
    "expires-13-months": (_waiver(approved="2026-01-15", expires="2027-02-15"), "expires", "at most 2027-01-15"),
    "expires-before-approval": (_waiver(approved="2026-06-01", expires="2026-05-31"), "expires", "before the approval"),
    "blank-justification": (_waiver(justification=" \t " * 10), "justification", "at least 20 characters"),
    "short-justification": (_waiver(justification="needed     because    yes"), "justification", "at least 20"),
    "blank-owner": (_waiver(owner="     "), "owner", "at least 3 characters"),
    "short-owner": (_waiver(owner=" a b "), "owner", "at least 3 characters"),
    "missing-approved": (_waiver(approved=None), "approved", "required value missing"),
    "unknown-control": (_waiver(control="K8S-99"), "control", "unknown requirement ID K8S-99"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unbounded_waiver_is_refused_by_validate_with_its_key_path(tmp_path, case):
    """Why: `objects: ["*/*"]`, an expiry in 2999, a whitespace justification and owner were accepted."""
    waiver, key, message = CASES[case]
    res = _validate(tmp_path, [waiver])
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [x for x in res.stderr.splitlines() if f":{A}.waivers[0].{key}: " in x]
    assert lines and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_every_waiver_problem_is_reported_at_once(tmp_path):
    res = _validate(tmp_path, [w for w, _, _ in CASES.values()])
    assert res.returncode == 2
    for i, (_, key, _) in enumerate(CASES.values()):
        assert f":{A}.waivers[{i}].{key}: " in res.stderr, (i, key, res.stderr)
    # An unknown control is reported together with the shape problems of other waivers.
    assert f"waivers[{list(CASES).index('unknown-control')}].control: unknown requirement ID K8S-99" in res.stderr


def test_bounded_waivers_are_valid(tmp_path):
    ok = [_waiver(), _waiver(control="MSS-06", objects=["ConfigMap/chdemo-mss/postfix-*"]),
          _waiver(approved="2024-02-29", expires="2025-02-28"), _waiver(objects=["ClusterRole/socle-auditor"])]
    res = _validate(tmp_path, ok)
    assert res.returncode == 0, res.stderr
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)


def test_the_demo_stacks_waivers_carry_their_approval():
    stack = yaml.safe_load(DEMO.read_text())["config"]["socle:audit"]
    for w in stack["waivers"]:
        # quoted: the Pulumi CLI writes an unquoted YAML date back in Go's format when it saves the stack file
        assert isinstance(w["approved"], str) and isinstance(w["expires"], str)
        approved, expires = dt.date.fromisoformat(w["approved"]), dt.date.fromisoformat(w["expires"])
        assert approved <= expires <= add_months(approved, 12)


def test_the_hash_wildcard_follows_only_the_content_hash():
    w = Waiver.model_validate(_waiver(control="MSS-06", objects=["ConfigMap/chdemo-mss/postfix-*"]))
    assert w.matching(ObjRef("ConfigMap", "chdemo-mss", "postfix-0a1b2c3d4e"))
    assert not w.matching(ObjRef("ConfigMap", "chdemo-mss", "postfix-log-forwarder-0a1b2c3d4e"))
    assert not w.matching(ObjRef("ConfigMap", "chdemo-fhir", "postfix-0a1b2c3d4e"))
    assert not w.matching(ObjRef("Secret", "chdemo-mss", "postfix-0a1b2c3d4e"))
    with pytest.raises(ValidationError):
        AuditConfig.model_validate({"waivers": [_waiver(objects=["*/*"])]})


def test_a_waiver_matching_nothing_is_reported():
    _, rendered, _ = rendered_stack("demo")
    ev = Evidence(source="test", objects=rendered.objects, target="test")
    cfg = AuditConfig.model_validate({"waivers": [_waiver(objects=["Namespace/chdemo-gone"])]})
    r = next(r for r in runner.run(ev, runner.make_context(ev, TODAY, stack_profile="dev"), cfg).results
             if r.control.id == "K8S-01")
    assert any("Namespace/chdemo-gone" in n and "matches no failure" in n for n in r.notes)


# --- --as-of in every headline --------------------------------------------------------------------------

def test_as_of_in_the_past_is_in_the_headline_of_every_report_format(tmp_path, chdir_root):
    """Why: `--as-of` in the past revived expired waivers and the report only showed the date."""
    day = dt.date.today()
    notice = f"judged as of 2026-01-01 (not the day of the audit, {day.isoformat()})"
    res = cli.invoke(app, ["audit", "--render", "demo", "--as-of", "2026-01-01", "--report-dir", str(tmp_path),
                           "--lang", "en"])
    assert res.exit_code in (0, 1), res.output
    assert res.output.splitlines()[0].startswith(f"DATE {notice}")  # the CLI's first line
    html = (tmp_path / "report.html").read_text()
    head = html.split("<h2>")[0]
    assert f"<strong>Date: {notice}</strong>" in head
    md = (tmp_path / "report.md").read_text().splitlines()
    assert md[2].startswith(f"> **Date: {notice}**")
    report = json.loads((tmp_path / "report.json").read_text())["report"]
    assert report["as_of_notice"] == notice and report["date"] == "2026-01-01" and report["audit_day"] == day.isoformat()
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    for suite in junit.iter("testsuite"):
        props = {p.get("name"): p.get("value") for p in suite.find("properties")}
        assert props["as_of_notice"] == notice and props["profile"] == "dev"
        assert props["profile_origin"].startswith("from the stack file")
    sarif = json.loads((tmp_path / "report.sarif").read_text())
    assert sarif["runs"][0]["properties"]["as_of_notice"] == notice
    assert sarif["runs"][0]["properties"]["profile_origin"].startswith("from the stack file")


def test_as_of_today_adds_no_notice_and_reports_stay_deterministic(tmp_path, chdir_root):
    day = dt.date.today().isoformat()
    res = cli.invoke(app, ["audit", "--render", "demo", "--as-of", day, "--report-dir", str(tmp_path / "a")])
    assert res.exit_code in (0, 1) and "judged as of" not in res.output
    assert "judged as of" not in (tmp_path / "a" / "report.md").read_text()
    _, rendered, _ = rendered_stack("demo")
    ev = Evidence(source="test", objects=rendered.objects, target="test")
    ctx = runner.make_context(ev, dt.date(2026, 1, 1), stack_profile="dev")
    one = runner.run(ev, ctx, audit_day=dt.date(2026, 11, 27))
    two = runner.run(ev, ctx, audit_day=dt.date(2026, 11, 27))
    for write in (reports.to_html, reports.to_markdown, reports.to_json, reports.to_junit, reports.to_sarif):
        assert write(one, ev, lang="en") == write(two, ev, lang="en")
        assert "judged as of 2026-01-01 (not the day of the audit, 2026-11-27)" in write(one, ev, lang="en")


def test_a_waiver_does_not_apply_before_its_approval():
    """Judged as of a date before the waiver was approved, the finding fails: no waiver from the future."""
    import datetime as dt

    from socle.audit import runner as audit_runner
    from socle.audit import sources
    from socle.stackfile import load

    stack = load("demo")
    ev = sources.from_render(stack)
    day = dt.date(2026, 1, 1)
    ctx = audit_runner.make_context(ev, day, stack_profile="dev")
    result = audit_runner.run(ev, ctx, stack.audit)
    k8s01 = next(r for r in result.results if r.control.id == "K8S-01")
    assert k8s01.status == "fail" and any("waiver not yet approved on 2026-01-01" in f.reason for f in k8s01.findings)


def test_dates_the_pulumi_cli_writes_back_are_the_same_days():
    """Found with the real engine: when the Pulumi CLI saves a stack file (adding its encryptionsalt) it writes an
    unquoted YAML date back as Go's "2026-11-27 00:00:00 +0000 UTC"; the stack must still load, with the same day."""
    import datetime as dt

    from socle.audit.config import AuditConfig

    cfg = AuditConfig.model_validate({"waivers": [{
        "control": "K8S-01", "objects": ["Namespace/chdemo-mss"], "owner": "dsi-chdemo",
        "justification": "Postfix's master process must start as root to switch to its users.",
        "approved": "2026-11-27 00:00:00 +0000 UTC", "expires": "2027-11-27 00:00:00 +0000 UTC"}],
        "evidence": {"BCK-02": {"reference": "restore test 12", "owner": "dsi", "date": "2026-11-20 00:00:00 +0000 UTC"}}})
    assert cfg.waivers[0].approved == dt.date(2026, 11, 27) and cfg.waivers[0].expires == dt.date(2027, 11, 27)
    assert cfg.evidence["BCK-02"].date == dt.date(2026, 11, 20)

"""The control catalogue: every control fails on its violation and passes where the rule is met; waivers;
reports; the `socle audit` command on renders and snapshots."""
from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from socle.audit import reports, runner
from socle.audit.config import AuditConfig
from socle.audit.controls import by_id, catalogue
from socle.audit.evidence import Evidence
from socle.audit.model import ObjRef
from socle.cli import app
from tests.audit_fixtures import FAILING, PASSING, build, passing
from tests.conftest import ROOT, rendered_stack

TODAY = dt.date(2026, 11, 27)
CHECKED = [c.id for c in catalogue() if not c.manual]
MANUAL = [c.id for c in catalogue() if c.manual]
PROFILE = {"demo": "dev", "chu-exemple-prod": "production", "region-demo": "dev"}


def evidence(objs: list[dict], stack: str) -> tuple[Evidence, runner.Context]:
    ev = Evidence(source=f"test:{stack}", objects=objs, target=f"test {stack}")
    return ev, runner.make_context(ev, TODAY, stack_profile=PROFILE[stack])


def test_catalogue_covers_every_requirement_of_the_catalogue_document():
    doc = (ROOT / "docs" / "REQUIREMENTS.md").read_text(encoding="utf-8").split("## Basis of each requirement")[0]
    ids = re.findall(r"^\| ([A-Z0-9]+-[0-9]{2}) \|", doc, re.M)
    assert sorted(ids) == sorted(c.id for c in catalogue())
    assert [c.id for c in catalogue()] == ids  # same order as the document
    shared = ROOT.parent / "shared" / "REQUIREMENTS.md"
    if shared.is_file():  # the workplace copy: docs/ corrects its values from primary sources, never its IDs
        kept = re.findall(r"^\| ([A-Z0-9]+-[0-9]{2}) \|", shared.read_text(encoding="utf-8"), re.M)
        assert [i for i in ids if i in kept] == kept  # every shared requirement, in its order; the kit may add


def test_every_checked_control_has_a_passing_and_a_failing_fixture():
    assert sorted(FAILING) == sorted(CHECKED)
    assert set(PASSING) <= set(CHECKED)
    for c in catalogue():
        assert c.title and c.remediation and c.sources and c.frameworks, c.id
        assert bool(c.manual) == bool(c.manual_evidence), c.id


@pytest.mark.parametrize("control_id", CHECKED)
def test_control_fails_on_its_violation_naming_the_object(control_id):
    fixture = FAILING[control_id]
    ev, ctx = evidence(build(fixture), fixture.stack)
    control = by_id()[control_id]
    failures = [f for f in control.check(ev, ctx) if f.status == "fail"]
    kind, name = fixture.expect
    assert any(f.obj.kind == kind and (f.obj.name == name or f.obj.name.startswith(name + "-")) for f in failures), \
        f"{control_id} ({fixture.why}) did not fail on {kind}/{name}: {failures}"
    # The whole catalogue attributes the failure to this requirement ID.
    result = next(r for r in runner.run(ev, ctx).results if r.control.id == control_id)
    assert result.status == "fail"


@pytest.mark.parametrize("size", ["0", "00", "0k"])
def test_gw06_fails_on_any_zero_body_limit(size):
    """NGINX reads `client_max_body_size 00` as 0: no limit at all (checked with nginx 1.22: a 3 MB body passes)."""
    from tests.audit_fixtures import Fixture, _nginx

    fixture = Fixture("demo", f"client_max_body_size {size}", _nginx("client_max_body_size 10m;", f"client_max_body_size {size};"))
    ev, ctx = evidence(build(fixture), "demo")
    failures = [f for f in by_id()["GW-06"].check(ev, ctx) if f.status == "fail"]
    assert failures and "no request body limit" in failures[0].reason


@pytest.mark.parametrize("control_id", CHECKED)
def test_control_passes_where_the_rule_is_met(control_id):
    fixture = passing(control_id)
    ev, ctx = evidence(build(fixture), fixture.stack)
    findings = list(by_id()[control_id].check(ev, ctx))
    assert [f for f in findings if f.status == "fail"] == [], fixture.why
    if control_id in ONLY_DECLARED:
        # the rule is met only by what the stack states: declared, never pass (the auditor checks a document)
        assert {f.status for f in findings} == {"declared"}, fixture.why
        return
    assert any(f.status == "pass" for f in findings), f"{control_id}: nothing passed on {fixture.why}"


# Controls whose rule no object can show met: HAPI never reads the INS systems the stack lists (INS-02), and no
# object purges mailboxes, an annotation only states the period (MSS-08).
ONLY_DECLARED = {"INS-02", "MSS-08"}


def test_manual_controls_ask_for_evidence_and_show_the_recorded_reference():
    stack, rendered, _ = rendered_stack("demo")
    ev, ctx = evidence(rendered.objects, "demo")
    cfg = AuditConfig.model_validate({"evidence": {"HDS-03": {"reference": "HDS cert n° 42, activities 1-6, until 2028-03-31",
                                                              "owner": "rssi", "date": "2026-09-01",
                                                              "valid_until": "2028-03-31"}}})
    results = {r.control.id: r for r in runner.run(ev, ctx, cfg).results}
    for cid in MANUAL:
        assert results[cid].status == ("manual: evidence recorded" if cid == "HDS-03" else "manual: missing")
    assert "HDS cert n° 42" in results["HDS-03"].notes[0]
    assert results["BCK-02"].notes[0].startswith("manual evidence required")


def test_dev_only_relaxations_are_not_applicable_not_passed():
    _, rendered, _ = rendered_stack("demo")
    ev, ctx = evidence(rendered.objects, "demo")
    results = {r.control.id: r for r in runner.run(ev, ctx).results}
    assert results["K8S-09"].status == "not-applicable"
    assert results["PSC-05"].status == "not-applicable"
    # Judged as production (e.g. an auditor's --profile), the same render fails them.
    prod = runner.make_context(ev, TODAY, profile="production")
    strict = {r.control.id: r for r in runner.run(ev, prod).results}
    assert strict["K8S-09"].status == "fail" and strict["PSC-05"].status == "fail"


# --- waivers -------------------------------------------------------------------------------------------

def _waiver(expires: str, objects=("Namespace/chdemo-mss",)) -> AuditConfig:
    return AuditConfig.model_validate({"waivers": [{
        "control": "K8S-01", "objects": list(objects), "owner": "rssi", "approved": "2026-01-31",
        "justification": "Postfix master must start as root; user namespace and five capabilities.", "expires": expires}]})


def test_waiver_turns_the_failure_into_waived_with_its_justification():
    _, rendered, _ = rendered_stack("demo")
    ev, ctx = evidence(rendered.objects, "demo")
    r = next(r for r in runner.run(ev, ctx, _waiver("2027-01-31")).results if r.control.id == "K8S-01")
    assert r.status == "waived"
    (finding, text), = r.waived
    assert finding.obj == ObjRef("Namespace", "", "chdemo-mss") and "Postfix master" in text and "2027-01-31" in text


def test_expired_waiver_fails():
    _, rendered, _ = rendered_stack("demo")
    ev, ctx = evidence(rendered.objects, "demo")
    r = next(r for r in runner.run(ev, ctx, _waiver("2026-11-26")).results if r.control.id == "K8S-01")
    assert r.status == "fail" and "waiver expired on 2026-11-26" in r.failures[0].reason


def test_waiver_pattern_follows_a_configmap_whose_name_carries_its_content_hash():
    _, rendered, _ = rendered_stack("demo")
    ev, ctx = evidence(rendered.objects, "demo")
    cfg = AuditConfig.model_validate({"waivers": [{
        "control": "MSS-06", "objects": ["ConfigMap/chdemo-mss/postfix-*"], "owner": "dsi", "approved": "2026-02-01",
        "justification": "no application mailbox yet; the relay lets no client relay", "expires": "2027-01-31"}]})
    r = next(r for r in runner.run(ev, ctx, cfg).results if r.control.id == "MSS-06")
    assert r.status == "waived" and r.waived[0][0].obj.name.startswith("postfix-")


def test_waiver_covers_only_the_objects_it_names():
    objs = build(FAILING["K8S-01"])  # chdemo-fhir made privileged, chdemo-mss still baseline
    ev, ctx = evidence(objs, "demo")
    r = next(r for r in runner.run(ev, ctx, _waiver("2027-01-31", ["Namespace/chdemo-mss", "Namespace/gone"])).results
             if r.control.id == "K8S-01")
    assert r.status == "fail" and [f.obj.name for f in r.failures] == ["chdemo-fhir"]
    assert any("Namespace/gone" in n and "matches no failure" in n for n in r.notes)


# --- reports -------------------------------------------------------------------------------------------

def _demo_audit():
    stack, rendered, _ = rendered_stack("demo")
    ev = Evidence(source="render:demo", objects=rendered.objects, target="stack demo (stacks/Pulumi.demo.yaml)",
                  files={ObjRef.of(o): f"{o['metadata'].get('namespace', '_cluster')}/{o['kind'].lower()}-{o['metadata']['name']}.yaml"
                         for o in rendered.objects})
    ctx = runner.make_context(ev, TODAY, stack_profile="dev")
    return runner.run(ev, ctx, stack.audit), ev


def test_reports_name_target_versions_date_and_every_requirement(tmp_path):
    audit, ev = _demo_audit()
    paths = reports.write_reports(audit, ev, tmp_path, lang="en")
    assert sorted(p.name for p in paths) == sorted(reports.REPORT_FILES)
    html = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    for text in (html, md):
        assert "stack demo" in text and "render:demo" in text and "2026-11-27" in text
        assert "etablissement 1.0.0" in text and f"socle {audit.kit_version}" in text
        for c in catalogue():
            assert c.id in text
    assert "Pro Santé Connect" in html and "ANSSI TLS" in html and "Hébergement de données de santé" in html
    assert "<script" not in html and "http://" not in html.split("</style>")[0]  # self-contained


def test_reports_are_byte_identical_for_the_same_audit(tmp_path):
    audit, ev = _demo_audit()
    a = reports.write_reports(audit, ev, tmp_path / "a")
    b = reports.write_reports(_demo_audit()[0], ev, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_json_junit_and_sarif_carry_failures_with_their_objects():
    objs = build(FAILING["K8S-07"])
    ev, ctx = evidence(objs, "demo")
    audit = runner.run(ev, ctx, rendered_stack("demo")[0].audit)
    data = json.loads(reports.to_json(audit, ev))
    k7 = next(c for c in data["controls"] if c["id"] == "K8S-07")
    assert k7["status"] == "fail"
    assert {"kind": "Service", "namespace": "chdemo-fhir", "name": "hapi-fhir"}.items() <= k7["failures"][0].items()
    assert data["report"]["result"] == "fail" and data["summary"]["fail"] == 1
    junit = ET.fromstring(reports.to_junit(audit, ev))
    failures = [tc for tc in junit.iter("testcase") if tc.find("failure") is not None]
    assert [tc.get("name") for tc in failures] == ["K8S-07 Service/chdemo-fhir/hapi-fhir"]
    assert junit.find("testsuite[@name='socle.K8S']").get("failures") == "1"
    sarif = json.loads(reports.to_sarif(audit, ev))
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert len(run["tool"]["driver"]["rules"]) == len(catalogue())
    errors = [r for r in run["results"] if "suppressions" not in r]
    assert [r["ruleId"] for r in errors] == ["K8S-07"]
    waived = [r for r in run["results"] if "suppressions" in r]
    assert {r["ruleId"] for r in waived} == {"K8S-01", "K8S-03", "MSS-06", "PKI-02"}


# --- the command line ----------------------------------------------------------------------------------

cli = CliRunner()


def _snapshot(tmp_path: Path, objs: list[dict], form: str = "list") -> Path:
    path = tmp_path / f"snapshot-{form}.yaml"
    if form == "list":
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs}, sort_keys=False))
    elif form == "json":
        path = path.with_suffix(".json")
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    else:
        path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def test_audit_render_demo_passes_and_writes_reports(tmp_path, chdir_root):
    res = cli.invoke(app, ["audit", "--render", "demo", "--report-dir", str(tmp_path), "--as-of", "2026-11-27"])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "0 fail" in res.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert {c["status"] for c in data["controls"]} <= {"pass", "waived", "not-applicable", "declared", "manual: missing"}
    # HDS-04 rests on the stack's own word for a driver the audit cannot read: declared, never pass
    assert next(c for c in data["controls"] if c["id"] == "HDS-04")["status"] == "declared"
    assert "Not passes (the auditor needs documents): 7 manual: missing, 5 declared" in res.output
    assert len(data["controls"]) == len(catalogue())


def test_audit_json_output_lists_every_control(chdir_root):
    res = cli.invoke(app, ["audit", "--render", "chu-exemple-prod", "--format", "json", "--as-of", "2026-11-27"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [c["id"] for c in data["controls"]] == [c.id for c in catalogue()]
    assert all({"id", "status", "failures"} <= c.keys() for c in data["controls"])
    assert data["report"]["profile"] == "production"


@pytest.mark.parametrize("form", ["list", "multi", "json"])
def test_snapshot_forms_give_the_results_of_the_render(tmp_path, chdir_root, form):
    _, rendered, _ = rendered_stack("demo")
    render = json.loads(cli.invoke(app, ["audit", "--render", "demo", "--format", "json", "--as-of", "2026-11-27"]).stdout)
    path = _snapshot(tmp_path, rendered.objects, form)
    res = cli.invoke(app, ["audit", "--snapshot", str(path), "--stack", "demo", "--format", "json", "--as-of", "2026-11-27"])
    assert res.exit_code == 0, res.output
    snap = json.loads(res.stdout)

    def strip(d):
        return [(c["id"], c["status"], [(f["status"], f["kind"], f["namespace"], f["name"], f["reason"]) for f in c["findings"]])
                for c in d["controls"]]
    assert strip(snap) == strip(render)
    assert snap["report"]["evidence_source"] == f"snapshot:{path}"


DONE_WHEN = [  # the violations the issue names, each must make `socle audit --snapshot` exit 1 naming its requirement
    ("K8S-03", "privileged container"), ("K8S-07", "NodePort service"), ("K8S-02", "missing default-deny policy"),
    ("HDS-01", "region outside the EEA"), ("TLS-01", "TLS 1.0 in the gateway config"),
    ("PSC-05", "sandbox PSC issuer in production"), ("TRACE-01", "retention of 30 days"),
    ("K8S-08", "a Secret value as a literal env var"),
]


@pytest.mark.parametrize("control_id,what", DONE_WHEN)
def test_snapshot_with_one_violation_fails_naming_the_requirement(tmp_path, chdir_root, control_id, what):
    fixture = FAILING[control_id]
    clean = _snapshot(tmp_path, build(type(fixture)(fixture.stack, "clean")))
    ok = cli.invoke(app, ["audit", "--snapshot", str(clean), "--stack", fixture.stack, "--as-of", "2026-11-27"])
    assert ok.exit_code == 0, ok.output
    bad = _snapshot(tmp_path, build(fixture), "multi")
    res = cli.invoke(app, ["audit", "--snapshot", str(bad), "--stack", fixture.stack, "--as-of", "2026-11-27"])
    assert res.exit_code == 1, res.output
    kind, name = fixture.expect
    assert re.search(rf"FAIL {control_id} {kind}/(\S+/)?{re.escape(name)}", res.output), res.output


def test_snapshot_without_stack_judges_production_and_applies_no_waiver(tmp_path, chdir_root):
    _, rendered, _ = rendered_stack("demo")
    res = cli.invoke(app, ["audit", "--snapshot", str(_snapshot(tmp_path, rendered.objects)), "--as-of", "2026-11-27"])
    assert res.exit_code == 1
    assert "profile production (the auditor's standard" in res.output  # never the namespaces' own label
    assert "FAIL K8S-01 Namespace/chdemo-mss" in res.output


@pytest.mark.parametrize("args,message", [
    ([], "exactly one evidence source"),
    (["--render", "demo", "--live"], "exactly one evidence source"),
    (["--render", "demo", "--format", "xml"], "--format must be text or json"),
    (["--render", "demo", "--as-of", "tomorrow"], "--as-of must be a date"),
    (["--snapshot", "no-such-file.yaml"], "no-such-file.yaml: no such file"),
    (["--render", "no-such-stack"], "no such stack file"),
])
def test_audit_usage_errors_exit_2_without_traceback(chdir_root, args, message):
    res = cli.invoke(app, ["audit", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_snapshot_that_is_not_a_socle_environment_exits_2(tmp_path, chdir_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: List\nitems: [{kind: Namespace, metadata: {name: default}}]\n")
    res = cli.invoke(app, ["audit", "--snapshot", str(bad)])
    assert res.exit_code == 2 and "no namespace of the kit" in res.output
    bad.write_text("kind: [unclosed\n")
    res = cli.invoke(app, ["audit", "--snapshot", str(bad)])
    assert res.exit_code == 2 and "not valid YAML or JSON" in res.output and "line 2" in res.output


def test_auditor_kubeconfig_prints_a_read_only_recipe(chdir_root):
    res = cli.invoke(app, ["auditor-kubeconfig", "--user", "alice", "--stack", "demo"])
    assert res.exit_code == 0
    assert "-subj /CN=alice/O=socle:auditors" in res.output
    assert "signerName: kubernetes.io/kube-apiserver-client" in res.output
    assert "auth can-i list secrets --all-namespaces      # no" in res.output
    assert cli.invoke(app, ["auditor-kubeconfig", "--user", "Alice Smith"]).exit_code == 2


@pytest.mark.parametrize("user,group", [("alice/O=system:masters", "socle:auditors"), ("alice", "system:masters"),
                                        ("alice", "auditors/O=system:masters"), ("alice", "a$(id)"), ("alice", "a b")])
def test_auditor_subject_never_carries_another_group(user, group):
    from socle.audit.access import AccessError, kubeconfig_instructions

    with pytest.raises(AccessError):
        kubeconfig_instructions(user, group, 30)


def test_auditor_recipe_is_safe_to_paste_and_openssl_makes_exactly_that_subject(tmp_path, chdir_root):
    """The printed step 1 run by a real shell and a real openssl: the request names the user and one group."""
    import subprocess

    from tests.conftest import require_tool

    openssl = require_tool("openssl")
    text = cli.invoke(app, ["auditor-kubeconfig", "--user", "alice.martin", "--stack", "demo"]).output
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    step1 = text.split("# 1.", 1)[1].split("\n\n", 1)[0].split("\n", 1)[1]
    subprocess.run(["sh", "-c", step1], cwd=tmp_path, check=True, capture_output=True)
    subject = subprocess.run([openssl, "req", "-in", str(tmp_path / "alice.martin.csr"), "-noout", "-subject",
                              "-nameopt", "RFC2253"], capture_output=True, text=True, check=True).stdout.strip()
    assert subject == "subject=O=socle:auditors,CN=alice.martin"


def test_auditors_group_refuses_system_groups_and_non_names(tmp_path):
    from socle.stackfile import validate_config

    base = yaml.safe_load((ROOT / "stacks" / "Pulumi.demo.yaml").read_text())["config"]
    for group in ("system:masters", "System:Masters", "auditors\n", "a/O=b", ""):
        config = {**base, "socle:params": {**base["socle:params"], "auditors": {"group": group}}}
        _, _, problems = validate_config(config, "x.yaml")
        assert [p.path for p in problems] == ["config.socle:params.auditors.group"], group


def test_infra_suite_names_the_failing_requirement_and_object_and_selects_by_family(tmp_path, chdir_root):
    import subprocess
    import sys

    bad = _snapshot(tmp_path, build(FAILING["K8S-07"]))
    base = [sys.executable, "-m", "pytest", "tests/infra", "-q", "-p", "no:cacheprovider", "--evidence", f"snapshot:{bad}",
            "--stack", "demo", "--as-of", "2026-11-27"]
    run = subprocess.run(base + ["-m", "K8S"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "FAILED tests/infra/test_requirements.py::test_requirement[K8S-07 Service/chdemo-fhir/hapi-fhir]" in run.stdout
    assert "remediation: Use ClusterIP services" in run.stdout
    tls_only = subprocess.run(base + ["-m", "TLS"], capture_output=True, text=True, cwd=ROOT)
    assert tls_only.returncode == 0, tls_only.stdout[-2000:]
    assert "deselected" in tls_only.stdout and "K8S-07" not in tls_only.stdout


def test_infra_suite_reports_unreadable_evidence_as_a_failure_without_traceback(tmp_path, chdir_root):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "pytest", "tests/infra/test_requirements.py", "-q", "-p", "no:cacheprovider",
                          "--evidence", "live", "--kubeconfig", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1
    assert "the evidence could not be read: kubeconfig" in run.stdout and "Traceback" not in run.stdout


def test_snapshot_command_exports_every_kind_the_live_audit_reads(chdir_root):
    from socle.constants import AUDITED_RESOURCES

    res = cli.invoke(app, ["audit", "--print-snapshot-command"])
    assert res.exit_code == 0
    command = res.output.strip()
    assert command.startswith("kubectl get ") and command.endswith("--all-namespaces -o json > cluster.json")
    kinds = command.split()[2].split(",")
    assert kinds == [p if not g else f"{p}.{g}" for g, _, p, _, _ in AUDITED_RESOURCES]
    assert "secrets" not in kinds

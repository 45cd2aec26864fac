"""Certified blueprints (socle.certify): the record `socle blueprint certify` writes, `socle blueprint status`, the pin
`socle new` writes, what `socle validate` says of a modified blueprint, and the certification section of `socle
audit`.

Every test works on a copy of the kit's code (tmp directory, `socle.certify.code_root` pointed at it, or a subprocess
run from the copy): the kit's own checkout and its committed record are never touched. The real-daemon verification
is replaced by a stand-in here (it takes minutes and root); `socle blueprint certify` itself always runs the real one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from socle.blueprints import registry
from socle import certify
from socle.audit.requirements import REQUIREMENTS
from socle.stackfile import StackError, load
from socle.verify import VerifyReport
from socle.verify.probes import Probe
from tests.conftest import ROOT, require_tool

APPROVER = "Alice Martin <alice.martin@example.org>"
DAY = dt.date(2026, 5, 4)
KIT_PARTS = ("socle", "stacks", "Pulumi.yaml")
PIN = "socle:blueprintDigest"


def BP():
    return registry()["etablissement"]


def passing(stack, progress):
    progress("stand-in verification")
    return VerifyReport(stack.name, probes=[Probe("TLS-01", "gateway refuses TLS 1.1", True, "handshake refused")],
                        versions={"nginx": "1.x"})


def failing(stack, progress):
    return VerifyReport(stack.name, probes=[Probe("TLS-01", "gateway refuses TLS 1.1", False, "TLS 1.1 accepted")])


def copy_kit(dest: Path, source: Path = ROOT) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for part in KIT_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "certification*"))
        else:
            shutil.copy2(src, dest / part)
    return dest


@pytest.fixture(scope="module")
def certified_template(tmp_path_factory):
    """A copy of the kit whose etablissement blueprint was certified (stand-in verification), and its evidence."""
    kit = copy_kit(tmp_path_factory.mktemp("certified") / "kit")
    evidence = kit.parent / "evidence"
    done = certify.certify("etablissement", approver=APPROVER, date=DAY, out_dir=evidence, verifier=passing, root=kit)
    return kit, evidence, done


@pytest.fixture
def kit(tmp_path, monkeypatch, certified_template):
    """A private copy of the certified kit, used as the code root."""
    root = tmp_path / "kit"
    shutil.copytree(certified_template[0], root)
    monkeypatch.setattr(certify, "code_root", lambda: root)
    return root


@pytest.fixture
def bare_kit(tmp_path, monkeypatch):
    """A copy of the kit whose blueprint was never certified."""
    root = copy_kit(tmp_path / "bare")
    monkeypatch.setattr(certify, "code_root", lambda: root)
    return root


def record_of(root: Path) -> dict:
    return json.loads((root / "socle" / "blueprints" / "etablissement" / certify.RECORD).read_text(encoding="utf-8"))


def stack_file(tmp_path: Path, base: str, pin: str | None = None, edit=None, name: str = "x") -> Path:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{base}.yaml").read_text(encoding="utf-8"))
    if pin is not None:
        doc["config"][PIN] = pin
    if edit:
        edit(doc["config"]["socle:params"])
    path = tmp_path / "stacks" / f"Pulumi.{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def touch(root: Path, rel: str, text: str = "\n# edited after the certification\n") -> None:
    with open(root / rel, "a", encoding="utf-8") as fh:
        fh.write(text)


def invoke(*args: str, cwd: Path | None = None):
    from socle.cli import app

    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


# --- what makes the blueprint ---------------------------------------------------------------------------------

def test_the_digest_covers_the_blueprint_its_shared_code_components_and_the_data_the_render_reads(bare_kit):
    files = certify.source_files(BP())
    for rel in ("socle/blueprints/__init__.py", "socle/blueprints/etablissement/model.py", "socle/blueprints/etablissement/stack.yaml.j2",
                "socle/blueprints/shared/cell.py", "socle/components/gateway.py", "socle/components/templates/nginx.conf.j2",
                "socle/constants.py", "socle/secretvalue.py", "socle/fhir/hapi_properties.json",
                "socle/fhir/ins_interceptor.jar"):
        assert rel in files, rel
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in files if p.startswith(("socle/cli", "socle/audit/", "stacks/"))]
    # another blueprint's package is not this one's code
    assert not [p for p in files if p.startswith("socle/blueprints/") and p.split("/")[2] not in
                ("__init__.py", "etablissement", "shared")], files
    assert list(files) == sorted(files)
    assert files["socle/components/gateway.py"] == hashlib.sha256((bare_kit / "socle/components/gateway.py").read_bytes()).hexdigest()
    # the overall digest is the SHA-256 of a sha256sum listing: `sha256sum -c` checks a copy with it
    listing = certify.listing(files)
    assert certify.overall(files) == "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    (bare_kit / "listing.sha256").write_text(listing)
    check = subprocess.run(["sha256sum", "--quiet", "-c", "listing.sha256"], cwd=bare_kit, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # deterministic, and blind to bytecode and to the record's own files
    (bare_kit / "socle" / "components" / "__pycache__").mkdir(exist_ok=True)
    (bare_kit / "socle" / "components" / "__pycache__" / "gateway.cpython-311.pyc").write_bytes(b"x")
    (bare_kit / "socle" / "blueprints" / "etablissement" / certify.RECORD).write_text("{}")
    assert certify.source_files(BP()) == files
    touch(bare_kit, "socle/components/templates/nginx.conf.j2")
    assert certify.overall(certify.source_files(BP())) != certify.overall(files)


def test_every_project_module_the_blueprint_imports_is_in_its_digest():
    code = ("import sys, json, socle.blueprints.etablissement; "
            "print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = {Path(f).resolve() for f in json.loads(run.stdout)}
    ours = sorted(p.relative_to(ROOT).as_posix() for p in loaded if ROOT in p.parents and ".venv" not in p.parts)
    covered = certify.source_files(BP(), ROOT)
    # socle/__init__.py holds only the kit's version, which the record states separately
    assert [p for p in ours if p not in covered] == ["socle/__init__.py"]


def test_the_relaxation_table_names_real_requirements_and_real_parameters():
    demo = load(str(ROOT / "stacks" / "Pulumi.demo.yaml"))
    prod = load(str(ROOT / "stacks" / "Pulumi.chu-exemple-prod.yaml"))
    known = set(certify.flatten(json.loads(demo.params.model_dump_json()))) | \
        set(certify.flatten(json.loads(prod.params.model_dump_json())))
    table = certify.relaxation_table()
    assert len(table) >= 40
    doc = (ROOT / "docs" / "certification.md").read_text(encoding="utf-8")
    assert [p for p, req, what in table if f"| `{p}` | {req} | {what} |" not in doc] == []  # the documented table
    for path, req, what in table:
        assert req in REQUIREMENTS, (path, req)
        assert what
        concrete = path.replace("[*]", "[fhir]").replace("hosting.regions[fhir]", "hosting.regions[0]")
        assert any(k == concrete or k.startswith(concrete + ".") for k in known), path
        assert not certify.identity(concrete), path


# --- certify and status -----------------------------------------------------------------------------------------

def test_certify_writes_the_record_with_the_digests_of_its_evidence(kit, certified_template):
    _, evidence, done = certified_template
    rec = record_of(kit)
    assert rec == done.record
    assert rec["blueprint"] == "etablissement" and rec["version"] == BP().version
    assert rec["date"] == "2026-05-04" and rec["approver"] == APPROVER
    assert rec["files"] == certify.source_files(BP()) and rec["digest"] == certify.overall(rec["files"])
    assert rec["sources"][:2] == ["socle/blueprints/etablissement/**", "socle/blueprints/shared/**"]
    for step, report in (("audit", "audit/report.json"), ("verification", "verify/verify.json")):
        assert rec[step]["result"] == "pass" and rec[step]["report"] == report
        assert rec[step]["sha256"] == hashlib.sha256((evidence / report).read_bytes()).hexdigest()
    assert json.loads((evidence / "audit" / "report.json").read_text())["report"]["result"] == "pass"
    assert "stand-in" not in rec["verification"]["summary"] and rec["verification"]["summary"].startswith("1 of 1 probes")
    assert (evidence / "render" / "kustomization.yaml").is_file() and rec["render"]["summary"].endswith("left out")
    ref = rec["reference"]
    assert ref["stack"] == "demo" and ref["profile"] == "dev"
    assert ref["sha256"] == hashlib.sha256((ROOT / "stacks" / "Pulumi.demo.yaml").read_bytes()).hexdigest()
    assert ref["params"]["tls"]["min_version"] == "TLSv1.2"
    assert {"control": "K8S-01", "objects": ["Namespace/<short_name>-mss"]} in ref["waivers"]
    # deterministic JSON, no secret value
    text = (kit / "socle" / "blueprints" / "etablissement" / certify.RECORD).read_text(encoding="utf-8")
    assert text == certify.record_text(json.loads(text))
    assert "secure" not in text and "BEGIN" not in text
    assert not (kit / "socle" / "blueprints" / "etablissement" / certify.SIGNATURE).exists() and not done.signed
    st = certify.status(BP())
    assert st.certified and st.state == "certified" and not st.differences


def test_status_says_certified_and_unchanged(kit):
    res = invoke("blueprint", "status", "etablissement")
    assert res.exit_code == 0, res.output
    assert f"etablissement {BP().version}: certified 2026-05-04 by {APPROVER}" in res.output
    assert "verification pass (1 of 1 probes passed)" in res.output and "not signed" in res.output


def test_status_lists_the_files_changed_added_and_removed_since_the_certification(kit):
    touch(kit, "socle/components/gateway.py")
    (kit / "socle" / "components" / "templates" / "extra.conf.j2").write_text("listen 8080;\n")
    (kit / "socle" / "blueprints" / "etablissement" / "outputs.py").unlink()
    res = invoke("blueprint", "status", "etablissement")
    assert res.exit_code == 1
    assert "modified since its certification of 2026-05-04 (3 files differ)" in res.output
    lines = [line.split() for line in res.output.splitlines()]
    assert ["added", "socle/components/templates/extra.conf.j2"] in lines
    assert ["changed", "socle/components/gateway.py"] in lines
    assert ["removed", "socle/blueprints/etablissement/outputs.py"] in lines
    # put back as certified: certified again
    shutil.copy2(ROOT / "socle" / "components" / "gateway.py", kit / "socle" / "components" / "gateway.py")
    (kit / "socle" / "components" / "templates" / "extra.conf.j2").unlink()
    shutil.copy2(ROOT / "socle" / "blueprints" / "etablissement" / "outputs.py", kit / "socle" / "blueprints" / "etablissement" / "outputs.py")
    assert invoke("blueprint", "status", "etablissement").exit_code == 0


def test_status_of_a_blueprint_without_a_record_says_it_is_not_certified(bare_kit):
    res = invoke("blueprint", "status", "etablissement")
    assert res.exit_code == 1
    assert "etablissement 1.0.0: not certified" in res.output.replace(BP().version, "1.0.0")
    assert 'socle blueprint certify etablissement --approver "Name <email>"' in res.output
    assert invoke("blueprint", "status", "no-such").exit_code == 2


def test_a_hand_edited_record_is_not_a_certification(kit):
    path = kit / "socle" / "blueprints" / "etablissement" / certify.RECORD
    rec = json.loads(path.read_text())
    rec["files"]["socle/components/gateway.py"] = "0" * 64  # "certify" a file that was changed
    path.write_text(certify.record_text(rec))
    res = invoke("blueprint", "status", "etablissement")
    assert res.exit_code == 1
    assert "digest: is not the digest of the files it lists: the record was edited by hand" in res.output
    path.write_text("{not json")
    res = invoke("blueprint", "status")
    assert res.exit_code == 1 and "unreadable certification record" in res.output


def test_certify_refuses_a_reference_stack_whose_verification_fails_and_writes_no_record(bare_kit, tmp_path):
    with pytest.raises(certify.CertifyFailed, match=r"verification of demo fails \(TLS-01 gateway refuses TLS 1.1\)"):
        certify.certify("etablissement", approver=APPROVER, date=DAY, out_dir=tmp_path / "ev", verifier=failing)
    assert not (bare_kit / "socle" / "blueprints" / "etablissement" / certify.RECORD).exists()
    assert "FAIL" in (tmp_path / "ev" / "verify" / "verify.md").read_text()  # the evidence says why


def test_certify_refuses_a_reference_stack_whose_audit_fails(bare_kit, tmp_path):
    def weaker(p):
        p["tls"] = {"min_version": "TLSv1.1"}
    ref = bare_kit / "stacks" / "Pulumi.demo.yaml"
    doc = yaml.safe_load(ref.read_text())
    weaker(doc["config"]["socle:params"])
    ref.write_text(yaml.safe_dump(doc, allow_unicode=True))
    called = []
    with pytest.raises(certify.CertifyFailed, match=r"the audit of reference stack demo fails \(.*TLS-01"):
        certify.certify("etablissement", approver=APPROVER, date=DAY, out_dir=tmp_path / "ev",
                        verifier=lambda st, step: called.append(st))
    assert not called and not (bare_kit / "socle" / "blueprints" / "etablissement" / certify.RECORD).exists()


def test_certify_lists_every_input_problem_and_writes_nothing(bare_kit, tmp_path):
    (tmp_path / "ev" / "audit").mkdir(parents=True)
    (tmp_path / "ev" / "audit" / "report.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(certify.CertifyError) as exc:
        certify.certify("etablissement", approver="alice", date=DAY, out_dir=tmp_path / "ev",
                        sign_key=tmp_path / "k.pem", verifier=passing)
    text = "\n".join(exc.value.problems)
    assert "--approver must be `Name <email>`" in text and "--sign-key and --sign-cert go together" in text
    assert "symbolic link" in text
    with pytest.raises(certify.CertifyError, match="unknown blueprint 'hopital'"):
        certify.certify("hopital", approver=APPROVER, date=DAY, out_dir=tmp_path / "ev2", verifier=passing)
    assert not (tmp_path / "ev2").exists()
    assert not (bare_kit / "socle" / "blueprints" / "etablissement" / certify.RECORD).exists()


def test_the_certify_command_refuses_bad_options_before_any_work(bare_kit, tmp_path, monkeypatch):
    monkeypatch.setattr("socle.verify.missing_programs", lambda: [])
    res = invoke("blueprint", "certify", "etablissement", "--approver", APPROVER, "--date", "4 mai",
                 "--out", str(tmp_path / "ev"))
    assert res.exit_code == 2 and "--date must be a date YYYY-MM-DD" in res.output
    monkeypatch.setattr("socle.verify.missing_programs", lambda: ["nginx runs the gateway: apt-get install nginx"])
    res = invoke("blueprint", "certify", "etablissement", "--approver", APPROVER, "--out", str(tmp_path / "ev"))
    assert res.exit_code == 2 and "the verification needs: nginx runs the gateway" in res.output
    assert not (tmp_path / "ev").exists()


def test_the_certify_command_runs_the_verification_and_reports_each_step(bare_kit, tmp_path, monkeypatch):
    monkeypatch.setattr("socle.verify.missing_programs", lambda: [])
    monkeypatch.setattr(certify, "real_verification", passing)
    res = invoke("blueprint", "certify", "etablissement", "--approver", APPROVER, "--date", "2026-05-04",
                 "--out", str(tmp_path / "ev"))
    assert res.exit_code == 0, res.output
    assert f"approved by {APPROVER} on 2026-05-04" in res.output
    assert "verification: pass — 1 of 1 probes passed" in res.output and "(not signed)" in res.output
    assert record_of(bare_kit)["digest"] == certify.overall(certify.source_files(BP()))
    monkeypatch.setattr(certify, "real_verification", failing)
    before = record_of(bare_kit)
    res = invoke("blueprint", "certify", "etablissement", "--approver", APPROVER, "--out", str(tmp_path / "ev"))
    assert res.exit_code == 1 and "NOT certified, no record written" in res.output
    assert record_of(bare_kit) == before


def test_a_signed_record_verifies_with_the_kit_and_with_openssl_and_shows_any_change(bare_kit, tmp_path):
    require_tool("openssl")
    from tests.test_signing import _issue

    keys = tmp_path / "keys"
    keys.mkdir()
    ca = _issue(keys, "certification-body", ca=True)
    _issue(keys, "approver", issuer=ca)
    _issue(keys, "other-ca", ca=True)
    done = certify.certify("etablissement", approver=APPROVER, date=DAY, out_dir=tmp_path / "ev", verifier=passing,
                           sign_key=keys / "approver.key", sign_cert=keys / "approver.pem")
    assert done.signed
    folder = bare_kit / "socle" / "blueprints" / "etablissement"
    assert subprocess.run(["sha256sum", "-c", certify.MANIFEST], cwd=folder, capture_output=True).returncode == 0
    ossl = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", certify.SIGNATURE, "-content",
                           certify.MANIFEST, "-CAfile", str(keys / "certification-body.pem"), "-purpose", "any",
                           "-out", "/dev/null"], cwd=folder, capture_output=True, text=True)
    assert ossl.returncode == 0, ossl.stderr
    assert certify.signature(BP(), keys / "certification-body.pem").trusted is True
    unchecked = certify.signature(BP())
    assert unchecked.valid and unchecked.trusted is None and "identity was not checked" in unchecked.text()
    assert invoke("blueprint", "status", "etablissement", "--ca", str(keys / "certification-body.pem")).exit_code == 0
    res = invoke("blueprint", "status", "etablissement", "--ca", str(keys / "other-ca.pem"))
    assert res.exit_code == 1 and "does NOT chain" in res.output
    # the approver's name changed after signing: the record still matches the files, the signature does not
    rec = record_of(bare_kit)
    rec["approver"] = "Mallory <mallory@example.org>"
    (folder / certify.RECORD).write_text(certify.record_text(rec))
    assert certify.status(BP()).certified
    res = invoke("blueprint", "status", "etablissement", "--ca", str(keys / "certification-body.pem"))
    assert res.exit_code == 1 and "signature does NOT verify" in res.output
    # certified again without a key: the stale signature goes
    certify.certify("etablissement", approver=APPROVER, date=DAY, out_dir=tmp_path / "ev", verifier=passing)
    assert not (folder / certify.SIGNATURE).exists() and not (folder / certify.MANIFEST).exists()


def test_certify_refuses_a_key_that_is_not_the_certificates(bare_kit, tmp_path):
    from tests.test_signing import _issue

    keys = tmp_path / "keys"
    keys.mkdir()
    _issue(keys, "a")
    _issue(keys, "b")
    with pytest.raises(certify.CertifyError, match="is not the certificate of"):
        certify.certify("etablissement", approver=APPROVER, date=DAY, out_dir=tmp_path / "ev", verifier=passing,
                        sign_key=keys / "a.key", sign_cert=keys / "b.pem")


def test_list_shows_the_certification(kit):
    def cells(output: str) -> str:  # the table's cells, wrapped at the terminal's width
        return " ".join(w for w in output.replace("│", " ").split())
    res = invoke("list")
    assert res.exit_code == 0 and "certified 2026-05-04" in cells(res.output)
    touch(kit, "socle/components/relay.py")
    listed = cells(invoke("list").output)
    assert "modified" in listed and "certified 2026-05-04" not in listed


# --- socle new: the pin ------------------------------------------------------------------------------------------

def test_new_pins_the_certified_digest(kit, tmp_path):
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    res = invoke("new", "etablissement", "ch-ouest", cwd=project)
    assert res.exit_code == 0, res.output
    digest = record_of(kit)["digest"]
    assert f"pinned to the certified etablissement: {digest}" in res.output
    text = (project / "stacks" / "Pulumi.ch-ouest.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["config"][PIN] == digest
    assert f'  socle:blueprintVersion: "1"\n  {PIN}: "{digest}"  # the certified blueprint' in text


def test_new_without_a_certified_blueprint_writes_no_pin_and_says_so(bare_kit, tmp_path):
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    res = invoke("new", "etablissement", "ch-est", cwd=project)
    assert res.exit_code == 0, res.output
    assert "is not certified: the stack is not pinned" in res.output
    text = (project / "stacks" / "Pulumi.ch-est.yaml").read_text()
    assert PIN not in text and '  socle:blueprintVersion: "1"\n  socle:params:\n' in text


# --- socle validate: warns in dev, refuses in production -------------------------------------------------------------

def test_a_pinned_stack_on_the_certified_blueprint_validates_without_a_word(kit, tmp_path):
    digest = record_of(kit)["digest"]
    for base in ("demo", "chu-exemple-prod"):
        st = load(str(stack_file(tmp_path, base, pin=digest, name=base)))
        assert [p for p in st.advisories if PIN in p.path] == []


def test_a_modified_blueprint_is_warned_about_in_dev_and_refused_in_production(kit, tmp_path):
    digest = record_of(kit)["digest"]
    touch(kit, "socle/components/gateway.py")
    dev = stack_file(tmp_path, "demo", pin=digest, name="dev")
    warnings = [str(p) for p in load(str(dev)).advisories]
    assert len(warnings) == 1
    assert f"Pulumi.dev.yaml:config.{PIN}: blueprint etablissement was modified after its certification of " \
           "2026-05-04: 1 file(s) differ (changed socle/components/gateway.py)" in warnings[0]
    res = invoke("validate", str(dev))
    assert res.exit_code == 0 and "warning: " in res.output and "modified after its certification" in res.output
    prod = stack_file(tmp_path, "chu-exemple-prod", pin=digest, name="prod")
    with pytest.raises(StackError) as exc:
        load(str(prod))
    (problem,) = [p for p in exc.value.problems if p.path == f"config.{PIN}"]
    assert "modified after its certification" in problem.message and "production refuses it" in problem.message
    res = invoke("validate", str(prod))
    assert res.exit_code == 2
    assert f"Pulumi.prod.yaml:config.{PIN}: blueprint etablissement was modified after its certification" in res.output
    assert "nothing was written or deployed" in res.output
    # restored: valid again
    shutil.copy2(ROOT / "socle" / "components" / "gateway.py", kit / "socle" / "components" / "gateway.py")
    assert load(str(prod)).name == "prod"


def test_a_pin_that_is_not_the_certified_digest_is_warned_about_in_dev_and_refused_in_production(kit, tmp_path):
    other = "sha256:" + "0" * 64
    st = load(str(stack_file(tmp_path, "demo", pin=other, name="dev")))
    (warning,) = [p.message for p in st.advisories]
    assert warning.startswith(f"pinned to {other}, but the certified etablissement is {record_of(kit)['digest']}")
    with pytest.raises(StackError, match="pinned to sha256:0+, but the certified etablissement is"):
        load(str(stack_file(tmp_path, "chu-exemple-prod", pin=other, name="prod")))


def test_a_pin_must_be_a_digest_in_every_profile(kit, tmp_path):
    for base in ("demo", "chu-exemple-prod"):
        with pytest.raises(StackError) as exc:
            load(str(stack_file(tmp_path, base, pin="etablissement-1.0.0", name=base)))
        assert [p.path for p in exc.value.problems] == [f"config.{PIN}"]
        assert "sha256:<64 hex digits>" in exc.value.problems[0].message


def test_a_pinned_production_stack_on_an_uncertified_blueprint_is_refused(bare_kit, tmp_path):
    pin = "sha256:" + "1" * 64
    with pytest.raises(StackError, match=r"pinned to sha256:1+, but blueprint etablissement .* is not certified"):
        load(str(stack_file(tmp_path, "chu-exemple-prod", pin=pin, name="prod")))
    (warning,) = load(str(stack_file(tmp_path, "demo", pin=pin, name="dev"))).advisories
    assert "is not certified" in warning.message


def test_an_unpinned_stack_is_silent_in_dev_and_warned_about_in_production(kit, bare_kit, tmp_path):
    # bare_kit (uncertified) is the code root here: the later fixture's monkeypatch wins
    assert load(str(stack_file(tmp_path, "demo", name="dev"))).advisories == []
    (warning,) = load(str(stack_file(tmp_path, "chu-exemple-prod", name="prod"))).advisories
    assert warning.path == f"config.{PIN}" and "which is not certified" in warning.message


def test_an_unpinned_production_stack_is_told_the_pin_to_add(kit, tmp_path):
    (warning,) = load(str(stack_file(tmp_path, "chu-exemple-prod", name="prod"))).advisories
    assert f'add `{PIN}: "{record_of(kit)["digest"]}"`' in warning.message


# --- socle audit: the certification and the deviations ----------------------------------------------------------------

def deviations_of(tmp_path, edit=None, base="demo"):
    return {d["path"]: d for d in certify.audit_section(load(str(stack_file(tmp_path, base, edit=edit))))["deviations"]}


def test_the_certified_reference_has_no_deviation_and_identity_fields_are_not_compared(kit, tmp_path):
    def other_hospital(p):
        p["organisation"].update(name="CH de Lorient", finess="560000000", short_name="chlorient", owner_group="dsi")
        p["gateway"]["apis"][0]["host"] = "fhir.ch-lorient.test"
        p["relay"]["hostname"] = "mss.ch-lorient.test"
        p["backup"]["bucket"] = "chlorient-backups"
        p["psc"]["client_id"] = "chlorient"
    assert deviations_of(tmp_path) == {}
    path = stack_file(tmp_path, "demo", edit=other_hospital, name="lorient")
    path.write_text(path.read_text().replace("chdemo-", "chlorient-"))  # its waivers name its own namespaces
    assert certify.audit_section(load(str(path)))["deviations"] == []


def test_deviations_flag_what_relaxes_a_requirement(kit, tmp_path):
    def relaxed(p):
        p["tls"] = {"min_version": "TLSv1.1"}
        p["gateway"]["hsts_max_age"] = 86400
        p["gateway"]["apis"][0]["token_validation"] = False
        p["audit"] = {"retention_days": 200}
        p["images"] = {"allowed_registries": ["docker.io", "quay.io", "registry.example.org"]}
        p["authz"]["access_token_minutes"] = 240
    devs = deviations_of(tmp_path, relaxed)
    assert devs["tls.min_version"] == {"path": "tls.min_version", "stack": "TLSv1.1", "reference": "TLSv1.2",
                                       "relaxes": "TLS-01", "why": "an older TLS version"}
    assert devs["gateway.hsts_max_age"]["relaxes"] == "TLS-03"
    assert devs["gateway.apis[fhir].token_validation"]["relaxes"] == "API-03"
    assert devs["audit.retention_days"]["relaxes"] == "TRACE-01"
    assert devs["images.allowed_registries"]["relaxes"] == "K8S-05"
    assert devs["authz.access_token_minutes"]["relaxes"] == "API-03"

    def stronger(p):
        p["tls"] = {"min_version": "TLSv1.3"}
        p["gateway"]["replicas"] = 3
        p["audit"] = {"retention_days": 400}
    devs = deviations_of(tmp_path, stronger)
    assert set(devs) == {"tls.min_version", "gateway.replicas", "audit.retention_days"}
    assert all(d["relaxes"] is None for d in devs.values())


def test_a_waiver_the_reference_does_not_have_relaxes_its_requirement(kit, tmp_path):
    path = stack_file(tmp_path, "demo")
    doc = yaml.safe_load(path.read_text())
    extra = dict(doc["config"]["socle:audit"]["waivers"][0], control="K8S-04", objects=["Namespace/chdemo-fhir"])
    doc["config"]["socle:audit"]["waivers"].append(extra)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    devs = {d["path"]: d for d in certify.audit_section(load(str(path)))["deviations"]}
    assert list(devs) == ["socle:audit.waivers[4]"]
    assert devs["socle:audit.waivers[4]"]["relaxes"] == "K8S-04"


def test_the_production_example_deviates_without_relaxing(kit):
    section = certify.audit_section(load(str(ROOT / "stacks" / "Pulumi.chu-exemple-prod.yaml")))
    devs = {d["path"]: d for d in section["deviations"]}
    assert devs["pki.mode"]["stack"] == "provided" and devs["pki.mode"]["relaxes"] is None
    assert devs["gateway.apis[fhir-patients]"]["stack"] == "(present)"
    assert devs["gateway.apis[fhir-patients].max_body"]["reference"] == "10m (default)"
    assert devs["authz.database"] == {"path": "authz.database", "stack": "(set)", "reference": "(none)",
                                      "relaxes": None, "why": None}
    assert section["relaxations"] == 0 and section["stack_pin"] is None


def test_audit_reports_the_certification_and_the_deviations_in_every_format(kit, tmp_path):
    def weaker(p):
        p["tls"] = {"min_version": "TLSv1.1"}
    path = stack_file(tmp_path, "demo", pin=record_of(kit)["digest"], edit=weaker, name="weak")
    res = invoke("audit", "--render", str(path), "--report-dir", str(tmp_path / "reports"), "--lang", "fr", cwd=tmp_path)
    assert res.exit_code == 1  # TLS-01 fails: the audit itself judges the rendered files
    text = res.output
    assert f"CERTIFICATION etablissement {BP().version}: certified ({record_of(kit)['digest']}, 2026-05-04" in text
    assert "DEVIATION tls.min_version: TLSv1.1 (reference TLSv1.2)  [relaxes TLS-01: an older TLS version]" in text
    data = json.loads((tmp_path / "reports" / "report.json").read_text())
    c = data["certification"]
    assert c["status"] == "certified" and c["matches"] and c["pin_matches"] is True
    assert c["approver"] == APPROVER and c["date"] == "2026-05-04" and c["signature"]["signed"] is False
    assert c["deviations"] == [{"path": "tls.min_version", "stack": "TLSv1.1", "reference": "TLSv1.2",
                                "relaxes": "TLS-01", "why": "an older TLS version"}]
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "## Certification du blueprint" in md and "- Le blueprint sur disque est celui certifié: oui" in md
    assert "| `tls.min_version` | TLSv1.1 | TLSv1.2 | **assouplit TLS-01** |" in md
    html = (tmp_path / "reports" / "report.html").read_text()
    assert '<h2 id="certification">Certification du blueprint</h2>' in html
    assert html.index('id="certification"') < html.index('id="limitations"')
    assert "<strong>assouplit TLS-01</strong>" in html
    # the blueprint modified since: the same audit says so, file by file
    touch(kit, "socle/components/zone.py")
    c = certify.audit_section(load(str(stack_file(tmp_path, "demo", name="again"))))
    assert c["status"] == "modified" and not c["matches"]
    assert c["differences"] == [{"path": "socle/components/zone.py", "change": "changed"}]


def test_an_audit_without_a_stack_has_no_certification_section(kit, tmp_path):
    from socle.render import run_program

    objects = run_program(load(str(ROOT / "stacks" / "Pulumi.demo.yaml"))).objects
    snap = tmp_path / "cluster.json"
    snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    res = invoke("audit", "--snapshot", str(snap), "--format", "json", "--profile", "dev", cwd=tmp_path)
    assert json.loads(res.output)["certification"] is None
    assert "CERTIFICATION" not in invoke("audit", "--snapshot", str(snap), "--profile", "dev", cwd=tmp_path).output


# --- the commands as a region runs them, from a copy of the kit ----------------------------------------------------

def test_a_cloned_kit_certified_then_modified(certified_template, tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(certified_template[0], clone)
    env = {**os.environ, "PYTHONPATH": str(clone)}

    def socle(*args):
        return subprocess.run([sys.executable, "-m", "socle.cli", *args], cwd=clone, env=env, capture_output=True,
                              text=True)
    where = socle("blueprint", "status", "etablissement")
    assert where.returncode == 0, where.stdout + where.stderr
    assert socle("new", "etablissement", "chu-nord").returncode == 0
    doc = yaml.safe_load((clone / "stacks" / "Pulumi.chu-nord.yaml").read_text())
    pin = doc["config"][PIN]
    assert pin == record_of(clone)["digest"]
    prod = yaml.safe_load((clone / "stacks" / "Pulumi.chu-exemple-prod.yaml").read_text())
    prod["config"][PIN] = pin
    (clone / "stacks" / "Pulumi.chu-nord.yaml").write_text(yaml.safe_dump(prod, allow_unicode=True))
    assert socle("validate", "chu-nord").returncode == 0
    touch(clone, "socle/components/templates/main.cf.j2", "smtpd_tls_security_level = may\n")
    status = socle("blueprint", "status", "etablissement")
    assert status.returncode == 1 and "changed  socle/components/templates/main.cf.j2" in status.stdout
    refused = socle("validate", "chu-nord")
    assert refused.returncode == 2
    assert (f"stacks/Pulumi.chu-nord.yaml:config.{PIN}: blueprint etablissement was modified after its certification "
            "of 2026-05-04: 1 file(s) differ (changed socle/components/templates/main.cf.j2)") in refused.stderr

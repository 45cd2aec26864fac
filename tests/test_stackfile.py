"""Bad stack files: every problem at once, named by file and key path, exit 2, nothing written."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from socle.stackfile import StackError, load
from tests.conftest import ROOT

PROD = ROOT / "stacks" / "Pulumi.chu-exemple-prod.yaml"
DEMO = ROOT / "stacks" / "Pulumi.demo.yaml"
P = "config.socle:params"


def write_stack(tmp_path: Path, doc: dict, name: str = "broken") -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def mutated(base: Path, mutate) -> dict:
    doc = yaml.safe_load(base.read_text())
    doc = copy.deepcopy(doc)
    mutate(doc["config"]["socle:params"])
    return doc


def problems_of(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(StackError) as exc:
        load(str(path))
    return [(p.path, p.message) for p in exc.value.problems]


def test_example_stacks_are_valid():
    assert load(str(DEMO)).params.profile == "dev"
    assert load(str(PROD)).params.profile == "production"


def test_every_problem_is_reported_at_once(tmp_path):
    def mutate(p):
        p["organisation"]["finnes"] = "x"  # unknown key
        p["gateway"]["replicas"] = "two"  # wrong type
        del p["relay"]["hostname"]  # missing required value
        p["tls"] = {"min_version": "SSLv3"}  # not an allowed value
    found = problems_of(write_stack(tmp_path, mutated(DEMO, mutate)))
    paths = [path for path, _ in found]
    assert f"{P}.organisation.finnes" in paths
    assert f"{P}.gateway.replicas" in paths
    assert f"{P}.relay.hostname" in paths
    assert f"{P}.tls.min_version" in paths
    assert dict(found)[f"{P}.organisation.finnes"] == "unknown key"
    assert dict(found)[f"{P}.relay.hostname"] == "required value missing"
    assert "two" in dict(found)[f"{P}.gateway.replicas"]


def test_unquoted_finess_is_a_type_error_not_a_silent_conversion(tmp_path):
    def mutate(p):
        p["organisation"]["finess"] = 990000001
    found = dict(problems_of(write_stack(tmp_path, mutated(DEMO, mutate))))
    assert f"{P}.organisation.finess" in found


def test_unknown_top_level_config_key_and_blueprint(tmp_path):
    doc = yaml.safe_load(DEMO.read_text())
    doc["config"]["socle:parms"] = {}
    doc["config"]["acme:thing"] = 1
    doc["config"]["socle:blueprint"] = "hopital"
    doc["extra"] = 1
    found = dict(problems_of(write_stack(tmp_path, doc)))
    assert "config.socle:parms" in found
    assert "config.acme:thing" not in found  # another provider's configuration: passed through, as Pulumi does
    assert "unknown blueprint" in found["config.socle:blueprint"]
    assert found["extra"] == "unknown top-level key"


def test_major_version_mismatch(tmp_path):
    doc = yaml.safe_load(DEMO.read_text())
    doc["config"]["socle:blueprintVersion"] = "2"
    found = dict(problems_of(write_stack(tmp_path, doc)))
    assert "major version 2" in found["config.socle:blueprintVersion"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  socle:blueprint: [unclosed\n")
    (where, message), = problems_of(path)
    assert where.startswith("line ") and "not valid YAML" in message


REFUSALS = [
    ("PSC-05", "psc.issuer", lambda p: p["psc"].update(issuer="https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet")),
    ("TLS-01", "tls.min_version", lambda p: p.update(tls={"min_version": "TLSv1.1"})),
    ("API-01", "gateway.apis[0].mtls", lambda p: p["gateway"]["apis"][0].update(mtls=False)),
    ("TRACE-01", "audit.retention_days", lambda p: p["audit"].update(retention_days=30)),
    ("K8S-09", "gateway.replicas", lambda p: p["gateway"].update(replicas=1)),
    ("K8S-09", "fhir.replicas", lambda p: p["fhir"].update(replicas=1)),
    ("K8S-09", "fhir.database.mode", lambda p: p["fhir"].update(database={"mode": "in-cluster"})),
    ("HDS-01", "hosting.regions[0].country", lambda p: p["hosting"].update(regions=[{"name": "us-east-1", "country": "US"}])),
    ("HDS-01", "backup.region.country", lambda p: p["backup"].update(region={"name": "ca-central", "country": "CA"})),
    ("BCK-01", "backup.region.name", lambda p: p["backup"].update(region={"name": "fr-par", "country": "FR"})),
    ("HDS-04", "storage.encrypted", lambda p: p["storage"].update(encrypted=False)),
    ("INS-02", "fhir.ins_systems[1]", lambda p: p["fhir"].update(ins_systems=["urn:oid:1.2.250.1.213.1.4.8", "urn:oid:1.2.250.1.213.1.4.10"])),
    ("PKI-01", "pki.mode", lambda p: p["pki"].update(mode="demo")),
    ("MSS-06", "relay.client_fingerprints", lambda p: p["relay"].pop("client_fingerprints")),
]


@pytest.mark.parametrize("req,path,mutate", REFUSALS, ids=[f"{r[0]}:{r[1]}" for r in REFUSALS])
def test_production_refusals_name_the_requirement(tmp_path, req, path, mutate):
    found = dict(problems_of(write_stack(tmp_path, mutated(PROD, mutate))))
    assert f"{P}.{path}" in found, found
    assert found[f"{P}.{path}"].startswith(req), found[f"{P}.{path}"]


def test_the_same_settings_are_accepted_in_dev(tmp_path):
    def mutate(p):
        p["tls"] = {"min_version": "TLSv1.1"}
        p["audit"] = {"retention_days": 30}
        p["fhir"] = {"ins_systems": ["urn:oid:1.2.250.1.213.1.4.10"]}
    assert load(str(write_stack(tmp_path, mutated(DEMO, mutate)))).params.audit.retention_days == 30


def test_unpinned_image_is_refused(tmp_path):
    def mutate(p):
        p["images"] = {"gateway": "docker.io/nginxinc/nginx-unprivileged:latest", "fhir": "hapiproject/hapi:v8.0.0"}
    found = dict(problems_of(write_stack(tmp_path, mutated(DEMO, mutate))))
    assert "K8S-05" in found[f"{P}.images.gateway"]
    assert "registry" in found[f"{P}.images.fhir"]


def test_validate_cli_lists_problems_with_file_and_path_and_writes_nothing(tmp_path):
    def mutate(p):
        p["gateway"]["replicas"] = "two"
        p["organisation"]["finnes"] = "x"
    path = write_stack(tmp_path, mutated(DEMO, mutate))
    result = subprocess.run(["socle", "validate", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("Pulumi.broken.yaml:")]
    assert len(lines) == 2, result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "out"
    result = subprocess.run(["socle", "render", str(path), "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and not out.exists()


def test_missing_stack_is_a_clear_error(tmp_path):
    result = subprocess.run(["socle", "validate", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "no such stack file" in result.stderr and "Traceback" not in result.stderr


def test_audit_section_problems_are_all_reported_with_their_key_path(tmp_path):
    doc = yaml.safe_load(DEMO.read_text())
    doc["config"]["socle:audit"] = {
        "evidence": {"HDS-03": {"reference": "HDS cert 42", "owner": "rssi"},  # no date
                     "K8S-01": {"reference": "x-ref", "owner": "rssi", "date": "2026-01-01"},  # checked control
                     "XYZ-99": {"reference": "x-ref", "owner": "rssi", "date": "2026-01-01"}},
        "waivers": [
            {"control": "BCK-02", "objects": ["Namespace/a"], "justification": "restore tests are done by the host", "owner": "ops",
             "approved": "2026-01-01", "expires": "2027-01-01"},
            {"control": "K8S-01", "objects": ["chdemo-mss"], "justification": "too short", "owner": "o", "expires": "soon"},
        ],
    }
    found = problems_of(write_stack(tmp_path, doc))
    A = "config.socle:audit"
    assert (f"{A}.evidence.HDS-03.date", "required value missing") in found
    assert (f"{A}.waivers[1].objects", "object reference 'chdemo-mss' must be Kind/name or Kind/namespace/name") in found
    assert any(p == f"{A}.waivers[1].justification" for p, _ in found)
    assert any(p == f"{A}.waivers[1].expires" for p, _ in found)
    # Once the shapes are right, the references are checked against the catalogue.
    doc["config"]["socle:audit"]["evidence"]["HDS-03"]["date"] = "2026-09-01"
    doc["config"]["socle:audit"]["waivers"].pop()
    found = problems_of(write_stack(tmp_path, doc))
    assert found == [
        (f"{A}.evidence.K8S-01", "this control is checked on objects; evidence references are for manual controls"),
        (f"{A}.evidence.XYZ-99", "unknown requirement ID"),
        (f"{A}.waivers[0].control", "BCK-02 is a manual control; record its evidence instead"),
    ]


def test_production_needs_crl_distribution_points_for_mtls_routes(tmp_path):
    doc = mutated(PROD, lambda p: p["pki"].pop("crl_urls"))
    assert ("config.socle:params.pki.crl_urls",
            "PKI-02: production mTLS routes need the CRL distribution points so the CRL is refreshed") in problems_of(write_stack(tmp_path, doc))

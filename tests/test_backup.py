"""Backups whose data leaves the region (BCK-01), an external database's provider backups (BCK-01, HDS-01) and the
scope of HDS-03, from the stack file to the rendered objects to the audit's verdict."""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
from pathlib import Path

import pytest
import yaml

from socle import constants
from socle.audit import runner
from socle.audit.controls import by_id, hds
from socle.audit.evidence import Evidence
from socle.render import run_program
from socle.stackfile import StackError, load
from tests.conftest import ROOT, rendered_stack, require_tool

TODAY = dt.date(2026, 11, 27)
VELERO = ("github.com/vmware-tanzu/velero", "v1.15.2")
# Velero 1.15.2's CRDs, as socle/cluster/crds.py pins the ones it installs (Restore is not installed there).
CRD_SHA256 = {
    "config/crd/v1/bases/velero.io_schedules.yaml": "708c2ffb98d2b0df3283aa64d42ad70388119955f321234932719b643ba2558c",
    "config/crd/v1/bases/velero.io_restores.yaml": "9e9167af04facf4dbf75b9e23c2c8a609f4fa493bd7892882237f326bade7662",
}


def stack_variant(tmp_path: Path, base: str, edit) -> Path:
    """A copy of an example stack with its parameters edited by `edit(params)`."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{base}.yaml").read_text(encoding="utf-8"))
    edit(doc["config"]["socle:params"])
    path = tmp_path / f"Pulumi.{base}-variant.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StackError) as exc:
        load(str(path))
    return [f"{p.path}: {p.message}" for p in exc.value.problems]


def objects(path: Path) -> list[dict]:
    return run_program(load(str(path))).objects


def one(objs: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, (kind, name, len(hits))
    return hits[0]


def verdict(objs: list[dict], control_id: str, profile: str) -> tuple[str, list]:
    ev = Evidence(source="test", objects=copy.deepcopy(objs), target="test")
    ctx = runner.make_context(ev, TODAY, stack_profile=profile)
    result = runner.run(ev, ctx, controls=[by_id()[control_id]]).results[0]
    return result.status, result.findings


# --- the data mover ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mover,fields", [
    ("csi-snapshot-data-movement", {"snapshotVolumes": True, "snapshotMoveData": True, "defaultVolumesToFsBackup": False}),
    ("file-system-backup", {"snapshotVolumes": False, "snapshotMoveData": False, "defaultVolumesToFsBackup": True}),
    ("snapshots-in-place", {"snapshotVolumes": True, "snapshotMoveData": False, "defaultVolumesToFsBackup": False}),
])
def test_each_data_mover_is_written_on_both_schedules_and_judged(tmp_path, mover, fields):
    path = stack_variant(tmp_path, "demo", lambda p: p["backup"].update({"data_mover": mover}))
    objs = objects(path)
    for name in ("socle-daily", "socle-monthly"):
        tpl = one(objs, "Schedule", name)["spec"]["template"]
        assert {k: tpl[k] for k in fields} == fields, name
    status, findings = verdict(objs, "BCK-01", "dev")
    schedules = {f.obj.name: f for f in findings if f.obj.kind == "Schedule"}
    if mover == "snapshots-in-place":
        # the weaker setting is allowed in dev but never hidden: BCK-01 fails on both schedules
        assert status == "fail"
        assert all(f.status == "fail" and "volume data stays in the primary region" in f.reason for f in schedules.values())
    else:
        assert status == "declared"  # the second region's country is the stack's label (BCK-01 declared, never pass)
        assert all(f.status == "pass" for f in schedules.values()), schedules


def test_the_default_moves_the_data_and_labels_the_snapshot_class_for_velero():
    objs = rendered_stack("demo")[1].objects
    assert one(objs, "Schedule", "socle-daily")["spec"]["template"]["snapshotMoveData"] is True
    vsc = one(objs, "VolumeSnapshotClass", "socle-health-data")
    assert vsc["metadata"]["labels"]["velero.io/csi-volumesnapshot-class"] == "true"
    assert vsc["driver"] == one(objs, "StorageClass", "socle-health-data")["provisioner"]


def test_production_refuses_snapshots_left_in_place(tmp_path):
    path = stack_variant(tmp_path, "chu-exemple-prod", lambda p: p["backup"].update({"data_mover": "snapshots-in-place"}))
    assert any(re.search(r"backup\.data_mover: BCK-01: snapshots in place leave the volume data", x) for x in problems(path))


def test_an_unknown_data_mover_is_refused(tmp_path):
    path = stack_variant(tmp_path, "demo", lambda p: p["backup"].update({"data_mover": "none"}))
    assert any("backup.data_mover" in x for x in problems(path))


def test_the_schedule_fields_exist_in_velero_1_15_2():
    """Every field the kit writes in a Schedule is in the schema of Velero 1.15.2's Schedule CRD (the version
    socle/cluster/crds.py installs), read from the Go module with its SHA-256 checked."""
    crd = velero_crd("config/crd/v1/bases/velero.io_schedules.yaml")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for stack in ("demo", "chu-exemple-prod"):
        for s in (o for o in rendered_stack(stack)[1].objects if o["kind"] == "Schedule"):
            assert_in_schema(s["spec"], schema, "spec")
    tpl = schema["properties"]["template"]["properties"]
    for field in ("snapshotMoveData", "defaultVolumesToFsBackup", "snapshotVolumes", "storageLocation", "ttl"):
        assert field in tpl, field


def velero_crd(path: str) -> dict:
    require_tool("go")
    from socle.cluster import crds

    data = (crds._module_dir(*VELERO) / path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == CRD_SHA256[path], path
    return yaml.safe_load(data)


def assert_in_schema(value, schema: dict, where: str) -> None:
    if isinstance(value, dict):
        props = schema.get("properties")
        assert props is not None or schema.get("additionalProperties") or schema.get("x-kubernetes-preserve-unknown-fields"), where
        for key, sub in value.items():
            if props is not None:
                assert key in props, f"{where}.{key} is not a field of Velero 1.15.2"
                assert_in_schema(sub, props[key], f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_in_schema(item, schema.get("items") or {}, f"{where}[{i}]")
    else:
        expected = {"boolean": bool, "string": str, "integer": int}.get(schema.get("type", ""))
        if expected:
            assert isinstance(value, expected), f"{where}: {value!r} is not a {schema['type']}"


# --- the external database's provider backups -------------------------------------------------------------

def test_the_declaration_reaches_a_configmap_the_audit_reads():
    objs = rendered_stack("chu-exemple-prod")[1].objects
    cm = one(objs, "ConfigMap", constants.DATABASE_BACKUP)
    assert cm["metadata"]["namespace"] == "chuex-fhir"
    assert cm["metadata"]["labels"][constants.LABEL_DECLARATION] == constants.DATABASE_BACKUP
    assert cm["data"] == {"database-host": "pg-chuex.rdb.fr-par.scw.cloud", "region": "nl-ams", "region-country": "NL",
                          "retention-days": "30", "monthly-retention-days": "180", "point-in-time-recovery": "true",
                          "evidence": cm["data"]["evidence"]}
    for cid in ("BCK-01", "HDS-01"):
        status, findings = verdict(objs, cid, "production")
        assert status == "declared", cid
        mine = [f for f in findings if f.obj.name == constants.DATABASE_BACKUP]
        assert [f.status for f in mine] == ["declared"] and "by the stack's declaration only" in mine[0].reason
    # an in-cluster database has no declaration: Velero backs its namespace up
    assert not [o for o in rendered_stack("demo")[1].objects if o["metadata"]["name"] == constants.DATABASE_BACKUP]


def _external_dev(p: dict) -> None:
    p["fhir"] = {"database": {"mode": "external", "host": "pg.example.test", "credentials_secret": "db",
                              "ca_secret": "db-ca", "network": "10.0.0.0/24"}}


def test_dev_renders_an_undeclared_external_database_and_the_audit_says_the_evidence_is_missing(tmp_path):
    objs = objects(stack_variant(tmp_path, "demo", _external_dev))
    assert not [o for o in objs if o["metadata"]["name"] == constants.DATABASE_BACKUP]
    for cid in ("BCK-01", "HDS-01"):
        status, findings = verdict(objs, cid, "dev")
        assert status == "evidence-missing", cid
        assert any(f.status == "evidence-missing" and "pg.example.test is outside the cluster" in f.reason for f in findings)


@pytest.mark.parametrize("declaration,message", [
    (None, r"fhir\.database\.provider_backup: BCK-01: declare the external database's provider backups"),
    ({"region": {"name": "us-east-1", "country": "US"}, "retention_days": 30, "monthly_retention_days": 180,
      "point_in_time_recovery": True}, r"provider_backup\.region\.country: HDS-01: database backup region us-east-1 \(US\)"),
    ({"region": {"name": "fr-par", "country": "FR"}, "retention_days": 30, "monthly_retention_days": 180,
      "point_in_time_recovery": True}, r"provider_backup\.region\.name: BCK-01: the database's backups must be kept in a second region"),
    ({"region": {"name": "nl-ams", "country": "NL"}, "retention_days": 7, "monthly_retention_days": 180,
      "point_in_time_recovery": False}, r"provider_backup\.retention_days: BCK-01: database backups kept less than 30 days"),
    ({"region": {"name": "nl-ams", "country": "NL"}, "retention_days": 30, "point_in_time_recovery": False},
     r"provider_backup\.monthly_retention_days: BCK-01: no database backup kept 180 days"),
], ids=["absent", "outside-eea", "same-region", "short", "no-monthly"])
def test_production_refuses_an_external_database_without_a_sound_declaration(tmp_path, declaration, message):
    def edit(p: dict) -> None:
        if declaration is None:
            p["fhir"]["database"].pop("provider_backup")
        else:
            p["fhir"]["database"]["provider_backup"] = declaration
    found = problems(stack_variant(tmp_path, "chu-exemple-prod", edit))
    assert any(re.search(message, x) for x in found), found


def test_a_daily_retention_of_180_days_needs_no_separate_monthly_copy(tmp_path):
    def edit(p: dict) -> None:
        p["fhir"]["database"]["provider_backup"] = {"region": {"name": "nl-ams", "country": "NL"}, "retention_days": 180,
                                                    "point_in_time_recovery": False}
    objs = objects(stack_variant(tmp_path, "chu-exemple-prod", edit))
    status, findings = verdict(objs, "BCK-01", "production")
    mine = [f for f in findings if f.obj.name == constants.DATABASE_BACKUP]
    assert status == "declared" and [f.status for f in mine] == ["declared"]
    assert "kept 180 days, in nl-ams" in mine[0].reason and "point-in-time recovery no" in mine[0].reason


def test_a_database_reached_through_a_cluster_service_is_not_external():
    assert hds.in_cluster_host("postgres.chdemo-fhir.svc.cluster.local")
    assert hds.in_cluster_host("postgres.chdemo-fhir.svc") and hds.in_cluster_host("postgres")
    assert not hds.in_cluster_host("pg-chuex.rdb.fr-par.scw.cloud") and not hds.in_cluster_host("10.0.0.5")
    assert not hds.in_cluster_host("svc.example.fr") and not hds.in_cluster_host("::1")


# --- HDS-03: who hosts the data -------------------------------------------------------------------------------

def test_hds_03_does_not_apply_when_the_etablissement_hosts_its_own_data(tmp_path):
    objs = objects(stack_variant(tmp_path, "demo", lambda p: p["hosting"].update({"hosted_by": "etablissement"})))
    sc = one(objs, "StorageClass", "socle-health-data")
    assert sc["metadata"]["annotations"][constants.ANN_HOSTED_BY] == "etablissement"
    control = by_id()["HDS-03"]
    assert control.manual
    reason = control.scope(Evidence(source="test", objects=objs, target="test"))
    assert reason and "CSP L.1111-8" in reason and "acting for a third party" in reason


@pytest.mark.parametrize("stack", ["demo", "chu-exemple-prod"])
def test_hds_03_asks_for_the_certificate_of_a_third_party_host(stack):
    objs = copy.deepcopy(rendered_stack(stack)[1].objects)
    assert one(objs, "StorageClass", "socle-health-data")["metadata"]["annotations"][constants.ANN_HOSTED_BY] == "third-party"
    control = by_id()["HDS-03"]
    assert control.scope(Evidence(source="test", objects=objs, target="test")) is None
    # a StorageClass whose declaration was stripped keeps the certificate required
    one(objs, "StorageClass", "socle-health-data")["metadata"]["annotations"].pop(constants.ANN_HOSTED_BY)
    assert control.scope(Evidence(source="test", objects=objs, target="test")) is None


def test_the_audit_reports_hds_03_not_applicable_for_a_self_hosting_etablissement(tmp_path):
    objs = objects(stack_variant(tmp_path, "demo", lambda p: p["hosting"].update({"hosted_by": "etablissement"})))
    ev = Evidence(source="test", objects=objs, target="test")
    result = runner.run(ev, runner.make_context(ev, TODAY, stack_profile="dev"), controls=[by_id()["HDS-03"]]).results[0]
    assert result.status == "not-applicable" and any("L.1111-8" in n for n in result.notes)


# --- the restore path -----------------------------------------------------------------------------------------

def restore_manifest() -> dict:
    """The Restore object docs/restore.md tells the operator to create (its only `yaml` block of kind Restore)."""
    text = (ROOT / "docs" / "restore.md").read_text(encoding="utf-8")
    docs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    restores = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Restore"]
    assert len(restores) == 1, "docs/restore.md shows one Restore object"
    return restores[0]


def test_the_documented_restore_uses_only_fields_of_velero_1_15_2():
    restore = restore_manifest()
    crd = velero_crd("config/crd/v1/bases/velero.io_restores.yaml")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert_in_schema(restore["spec"], schema, "spec")
    assert restore["apiVersion"] == "velero.io/v1" and restore["metadata"]["namespace"] == "velero"
    # the latest daily backup: the Restore names the schedule (Velero then takes its most recent completed backup)
    assert restore["spec"]["scheduleName"] == "socle-daily" and "backupName" not in restore["spec"]
    assert restore["spec"]["restorePVs"] is True

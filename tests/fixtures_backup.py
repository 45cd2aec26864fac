"""Fixtures of the backup and hosting controls reworked for issue 11 (HDS-01, BCK-01): the volume data must leave the
primary region, every stateful namespace is included, and an external database's provider backups are declared and
judged. Entries replace tests/audit_fixtures.py's for the same control ID (its `_merge_areas`)."""
from __future__ import annotations

from typing import Callable

from tests.audit_fixtures import Fixture, Objects, _bsl, _claim, _sc, _schedule, find, pod_spec

DECLARATION = ("ConfigMap", "database-backup")


def _template(name: str, **fields) -> Callable[[Objects], None]:
    """Set (or, with None, remove) fields of a Schedule's backup template."""
    def mutate(objs: Objects) -> None:
        tpl = find(objs, "Schedule", name)["spec"]["template"]
        for key, value in fields.items():
            if value is None:
                tpl.pop(key, None)
            else:
                tpl[key] = value
    return mutate


def _declaration(**data) -> Callable[[Objects], None]:
    """Change (or, with None, remove) keys of the external database's provider-backup declaration."""
    def mutate(objs: Objects) -> None:
        cm = find(objs, "ConfigMap", "database-backup", "chuex-fhir")
        for key, value in data.items():
            if value is None:
                cm["data"].pop(key)
            else:
                cm["data"][key] = value
    return mutate


def _no_declaration(objs: Objects) -> None:
    objs.remove(find(objs, "ConfigMap", "database-backup", "chuex-fhir"))


def _snapshot_class_unlabelled(objs: Objects) -> None:
    find(objs, "VolumeSnapshotClass", "socle-health-data")["metadata"]["labels"].pop("velero.io/csi-volumesnapshot-class")


def _without_audit_namespace(name: str) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        tpl = find(objs, "Schedule", name)["spec"]["template"]
        tpl["includedNamespaces"] = [ns for ns in tpl["includedNamespaces"] if ns != "chdemo-audit"]
    return mutate


def _fs_backup(objs: Objects) -> None:
    for name in ("socle-daily", "socle-monthly"):
        _template(name, snapshotVolumes=False, snapshotMoveData=False, defaultVolumesToFsBackup=True)(objs)


IN_PLACE = _template("socle-daily", snapshotMoveData=False)

FAILING: dict[str, Fixture] = {
    "BCK-01": Fixture("demo", "daily backups leave the volume data as snapshots in the primary region", IN_PLACE,
                      ("Schedule", "socle-daily")),
}

PASSING: dict[str, Fixture] = {
    "BCK-01": Fixture("demo", "volume data copied by file-system backup (the data mover's alternative)", _fs_backup),
}

CLAIMS: dict[str, list[tuple[str, Fixture]]] = {
    "HDS-01": [
        ("nodes in allowed regions", _claim("demo", "FHIR server schedulable anywhere", lambda objs: pod_spec(find(objs, "Deployment", "hapi-fhir")).pop("affinity"), ("Deployment", "hapi-fhir"), r"no required node affinity on a region label")),
        ("volumes in allowed regions", _claim("demo", "volumes provisioned anywhere", _sc(lambda sc: sc.pop("allowedTopologies")), ("StorageClass", "socle-health-data"), r"provisioned in any region")),
        ("backups in allowed regions", _claim("demo", "backups in a region outside the EEA", _bsl(lambda b: b["metadata"]["labels"].update({"socle.esante.fr/region-country": "US"})), ("BackupStorageLocation", "socle-second-region"), r"backup region fr-srr is in US, outside the EEA")),
        ("backups in allowed regions", _claim("chu-exemple-prod", "the external database's backups declared outside the EEA", _declaration(**{"region": "us-east-1", "region-country": "US"}), DECLARATION, r"backup region us-east-1 is in US, outside the EEA")),
        ("backups in allowed regions", _claim("chu-exemple-prod", "the external database's backups not declared", _no_declaration, ("ConfigMap", "hapi-fhir"), r"outside the cluster.*no declaration of its provider's backups", "evidence-missing")),
        ("only in the EEA", _claim("demo", "the volumes' region declared outside the EEA", _sc(lambda sc: sc["metadata"]["annotations"].update({"socle.esante.fr/region-countries": '{"fr-par":"US"}'})), ("StorageClass", "socle-health-data"), r"volume region fr-par is in US, outside the EEA")),
        ("only in the EEA", _claim("demo", "backup region without declared country", _bsl(lambda b: b["metadata"]["labels"].pop("socle.esante.fr/region-country")), ("BackupStorageLocation", "socle-second-region"), r"has no declared country")),
        ("only in the EEA", _claim("chu-exemple-prod", "the database's backup region without declared country", _declaration(**{"region-country": None}), DECLARATION, r"backup region nl-ams has no declared country")),
        ("only in the EEA: an external database's backups in the EEA are the stack's word (declared, never a pass)", _claim("chu-exemple-prod", "the database's backups declared in another EEA region", _declaration(region="de-fra", **{"region-country": "DE"}), DECLARATION, r"provider backups in de-fra, in DE \(EEA\), by the stack's declaration only", "declared")),
    ],
    "BCK-01": [
        ("backups go to a second region", _claim("demo", "backups in the primary region", _bsl(lambda b: b["spec"]["config"].update({"region": "fr-par"})), ("Schedule", "socle-daily"), r"primary region fr-par, not a second region")),
        ("backups go to a second region", _claim("demo", "daily backups stay in the cluster's default location", lambda objs: find(objs, "Schedule", "socle-daily")["spec"]["template"].update({"storageLocation": "default"}), ("Schedule", "socle-daily"), r"storage location default is not a backup location of the kit")),
        ("also in the EEA", _claim("demo", "second region outside the EEA", _bsl(lambda b: b["metadata"]["labels"].update({"socle.esante.fr/region-country": "CH"})), ("BackupStorageLocation", "socle-second-region"), r"is in CH, outside the EEA")),
        ("volume data included (moved to the second region, not snapshots left in place)", _claim("demo", "CSI snapshots kept by the storage provider", IN_PLACE, ("Schedule", "socle-daily"), r"volume data stays in the primary region: CSI snapshots are kept by the storage provider")),
        ("volume data included (moved to the second region, not snapshots left in place)", _claim("demo", "data movement left to the server's default", _template("socle-monthly", snapshotMoveData=None), ("Schedule", "socle-monthly"), r"volume data stays in the primary region")),
        ("volume data included (moved to the second region, not snapshots left in place)", _claim("demo", "no snapshot and no file-system backup", _template("socle-daily", snapshotVolumes=False), ("Schedule", "socle-daily"), r"volume data is not backed up")),
        ("volume data included (moved to the second region, not snapshots left in place)", _claim("demo", "no snapshot class Velero would take", _snapshot_class_unlabelled, ("Schedule", "socle-daily"), r"no VolumeSnapshotClass labelled velero\.io/csi-volumesnapshot-class=true for driver ebs\.csi\.example\.test")),
        ("volume data included (moved to the second region, not snapshots left in place)", _claim("demo", "a data mover the audit cannot follow", _template("socle-daily", datamover="acme-mover"), ("Schedule", "socle-daily"), r"data mover acme-mover, not Velero's built-in one")),
        ("daily kept 30 days", _claim("demo", "daily backups kept 10 days", _schedule("socle-daily", "240h0m0s"), ("Schedule", "socle-daily"), r"daily backups kept 10 days, less than 30 days")),
        ("monthly kept 180 days", _claim("demo", "monthly backups kept 30 days", _schedule("socle-monthly", "720h0m0s"), ("Schedule", "socle-monthly"), r"monthly backups kept 30 days, less than 180 days")),
        ("every stateful namespace", _claim("demo", "the audit log's namespace left out of the daily backups", _without_audit_namespace("socle-daily"), ("Schedule", "socle-daily"), r"does not include chdemo-audit")),
        ("every stateful namespace", _claim("demo", "the audit log's namespace in no monthly backup", _without_audit_namespace("socle-monthly"), ("Namespace", "chdemo-audit"), r"no monthly backup of this namespace to a second region")),
        ("an external database: its provider backups declared", _claim("chu-exemple-prod", "the external database's backups not declared", _no_declaration, ("ConfigMap", "hapi-fhir"), r"pg-chuex\.rdb\.fr-par\.scw\.cloud is outside the cluster, so Velero does not back it up", "evidence-missing")),
        ("an external database: its provider backups declared", _claim("chu-exemple-prod", "a declaration for another database", _declaration(**{"database-host": "pg-other.rdb.fr-par.scw.cloud"}), ("ConfigMap", "hapi-fhir"), r"no declaration of its provider's backups", "evidence-missing")),
        ("an external database: its provider backups declared", _claim("chu-exemple-prod", "declared backups met: the stack's word, never a pass", _declaration(**{"retention-days": "60"}), DECLARATION, r"provider backups kept 60 days, monthly 180 days, in nl-ams \(NL, not a primary region\), point-in-time recovery yes, by the stack's declaration only", "declared")),
        ("an external database: to a second region", _claim("chu-exemple-prod", "the database's backups in the primary region", _declaration(region="fr-par", **{"region-country": "FR"}), DECLARATION, r"backups stay in the primary region fr-par, not a second region")),
        ("an external database: also in the EEA", _claim("chu-exemple-prod", "the database's backups outside the EEA", _declaration(region="ch-zrh", **{"region-country": "CH"}), DECLARATION, r"backup region ch-zrh is in CH, outside the EEA")),
        ("an external database: daily kept 30 days", _claim("chu-exemple-prod", "the database's backups kept 7 days", _declaration(**{"retention-days": "7"}), DECLARATION, r"backups kept 7 days, less than 30 days")),
        ("an external database: monthly kept 180 days", _claim("chu-exemple-prod", "no monthly copy of the database", _declaration(**{"monthly-retention-days": None}), DECLARATION, r"no backup kept 180 days \(monthly: none declared\)")),
    ],
}

"""HDS storage: encrypted StorageClass (Retain) by provider profile, VolumeSnapshotClass, Velero backups."""
from __future__ import annotations

import json
from typing import Literal, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict

from socle.constants import (
    ANN_HOSTED_BY,
    ANN_REGION_COUNTRIES,
    ANN_REQUIREMENTS,
    DATABASE_BACKUP,
    KIT,
    LABEL_BLOCK,
    LABEL_DECLARATION,
    LABEL_ENCRYPTED,
    LABEL_REGION_COUNTRY,
    PART_OF,
    VELERO_SNAPSHOT_CLASS_LABEL,
)

from .common import KubernetesObject, child

HEALTH_DATA_CLASS = "socle-health-data"
BACKUP_LOCATION = "socle-second-region"  # the BackupStorageLocation every Schedule writes to
DataMover = Literal["csi-snapshot-data-movement", "file-system-backup", "snapshots-in-place"]


class StorageProfile(BaseModel):
    """What a provider profile resolves to: a CSI driver and the parameters that make it encrypt."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    provisioner: str
    parameters: Mapping[str, str]
    encrypted: bool
    snapshot_driver: str


class BackupLocationArgs(BaseModel):
    """The cluster's backup location in a second region (platform layer: one per cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    namespace: str  # Velero's namespace
    provider: Literal["aws"] = "aws"
    bucket: str
    prefix: str
    s3_url: str
    region: str
    region_country: str
    credential_secret: str


class BackupScheduleArgs(BaseModel):
    """One établissement's backups (its cell): the daily and monthly Schedules of its namespaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    namespace: str  # Velero's namespace
    name_prefix: str = "socle"  # Schedules `<name_prefix>-daily` and `<name_prefix>-monthly`
    included_namespaces: Sequence[str]
    daily_schedule: str
    daily_ttl_days: int
    monthly_schedule: str
    monthly_ttl_days: int
    data_mover: DataMover = "csi-snapshot-data-movement"


class DatabaseBackupArgs(BaseModel):
    """The provider's backups of an external database, as the stack declares them (BCK-01, HDS-01)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    region: str
    region_country: str
    retention_days: int
    monthly_retention_days: int | None = None
    point_in_time_recovery: bool
    evidence: str | None = None


class StorageArgs(BaseModel):
    """Platform layer: the health-data StorageClass, its snapshot class and the backup location."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    profile: StorageProfile
    region_label: str
    regions: Sequence[str]
    region_countries: Mapping[str, str]  # region name -> ISO country, declared for HDS-01 audits
    backup: BackupLocationArgs | None
    protect: bool = False
    hosted_by: Literal["third-party", "etablissement"] = "third-party"


class BackupPlanArgs(BaseModel):
    """Cell: one établissement's backup Schedules, and what the provider of its external database declares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schedules: BackupScheduleArgs | None
    database_namespace: str = ""  # where the FHIR store (and its database's declaration) lives
    external_database_host: str | None = None  # the FHIR store's database when it is outside the cluster
    database_backup: DatabaseBackupArgs | None = None


def volume_data_fields(data_mover: DataMover) -> dict[str, bool]:
    """The Velero 1.15 BackupSpec fields that say how volume data is backed up, every one explicit (a field left out
    takes the Velero server's default, which the rendered objects do not show)."""
    if data_mover == "csi-snapshot-data-movement":
        # CSI snapshots, then Velero's built-in data mover (node agent, Kopia) copies them to the backup location.
        return {"snapshotVolumes": True, "snapshotMoveData": True, "defaultVolumesToFsBackup": False}
    if data_mover == "file-system-backup":
        # Every pod volume copied file by file (node agent, Kopia) to the backup location; no snapshot left behind.
        return {"snapshotVolumes": False, "snapshotMoveData": False, "defaultVolumesToFsBackup": True}
    # CSI snapshots kept by the storage provider, in the primary region: the weaker setting (dev only).
    return {"snapshotVolumes": True, "snapshotMoveData": False, "defaultVolumesToFsBackup": False}


def database_backup_data(host: str, b: DatabaseBackupArgs) -> dict[str, str]:
    """The declaration's ConfigMap data: one plain value per key."""
    data = {"database-host": host, "region": b.region, "region-country": b.region_country,
            "retention-days": str(b.retention_days), "point-in-time-recovery": "true" if b.point_in_time_recovery else "false"}
    if b.monthly_retention_days is not None:
        data["monthly-retention-days"] = str(b.monthly_retention_days)
    if b.evidence:
        data["evidence"] = b.evidence
    return data


def scaleway_profile(kms_key_id: str, luks_secret: str, luks_namespace: str, iops: str) -> StorageProfile:
    # Scaleway Block Storage CSI: `encrypted: "true"` with a Key Manager key, or LUKS with a passphrase Secret.
    params = {"encrypted": "true", "iops": iops, "csi.storage.k8s.io/fstype": "ext4"}
    if kms_key_id:
        params["kmsKeyId"] = kms_key_id
    else:
        for op in ("node-stage", "node-expand"):
            params[f"csi.storage.k8s.io/{op}-secret-name"] = luks_secret
            params[f"csi.storage.k8s.io/{op}-secret-namespace"] = luks_namespace
    return StorageProfile(name="scaleway-sbs", provisioner="csi.scaleway.com", parameters=params, encrypted=True,
                          snapshot_driver="csi.scaleway.com")


def ceph_rbd_profile(cluster_id: str, pool: str, kms_id: str, secret_name: str, secret_namespace: str) -> StorageProfile:
    # ceph-csi RBD: block encryption (LUKS) with the passphrase from the configured KMS.
    params = {
        "clusterID": cluster_id,
        "pool": pool,
        "imageFeatures": "layering",
        "encrypted": "true",
        "encryptionType": "block",
        "encryptionKMSID": kms_id,
        "csi.storage.k8s.io/fstype": "ext4",
    }
    for op in ("provisioner", "controller-expand", "node-stage"):
        params[f"csi.storage.k8s.io/{op}-secret-name"] = secret_name
        params[f"csi.storage.k8s.io/{op}-secret-namespace"] = secret_namespace
    return StorageProfile(name="ceph-rbd", provisioner="rbd.csi.ceph.com", parameters=params, encrypted=True,
                          snapshot_driver="rbd.csi.ceph.com")


def _ttl(days: int) -> str:
    return f"{days * 24}h0m0s"


class HdsStorage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:hds:HdsStorage", name, None, opts)
        prof = args.profile
        lbl = {PART_OF: KIT, LABEL_BLOCK: "storage"}
        # HDS-04: encrypted at rest, kept on delete. Name, provisioner, parameters and reclaimPolicy are
        # immutable: the class is protected in production.
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-health-data",
            metadata={
                "name": HEALTH_DATA_CLASS,
                "labels": {**lbl, LABEL_ENCRYPTED: "true" if prof.encrypted else "false",
                           "socle.esante.fr/storage-profile": prof.name},
                "annotations": {ANN_REQUIREMENTS: "HDS-01 HDS-03 HDS-04", ANN_HOSTED_BY: args.hosted_by,
                                ANN_REGION_COUNTRIES: json.dumps(dict(sorted(args.region_countries.items())), separators=(",", ":"))},
            },
            provisioner=prof.provisioner,
            parameters=dict(prof.parameters),
            reclaim_policy="Retain",
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            allowed_topologies=[{"matchLabelExpressions": [{"key": args.region_label, "values": sorted(args.regions)}]}],
            opts=child(self, protect=args.protect, retain_on_delete=args.protect),
        )
        KubernetesObject(
            f"{name}-snapshot-class",
            api_version="snapshot.storage.k8s.io/v1",
            kind="VolumeSnapshotClass",
            # Velero takes, for each CSI driver, the VolumeSnapshotClass labelled for it (BCK-01).
            metadata={"name": HEALTH_DATA_CLASS, "labels": {**lbl, VELERO_SNAPSHOT_CLASS_LABEL: "true"}},
            fields={"driver": prof.snapshot_driver, "deletionPolicy": "Retain"},
            opts=child(self),
        )
        if args.backup is not None:
            b = args.backup
            k8s.apiextensions.CustomResource(
                f"{name}-backup-location",
                api_version="velero.io/v1",
                kind="BackupStorageLocation",
                metadata={"name": BACKUP_LOCATION, "namespace": b.namespace,
                          "labels": {**lbl, LABEL_REGION_COUNTRY: b.region_country},
                          "annotations": {ANN_REQUIREMENTS: "BCK-01 HDS-01"}},
                spec={
                    "provider": b.provider,
                    "objectStorage": {"bucket": b.bucket, "prefix": b.prefix},
                    "config": {"region": b.region, "s3Url": b.s3_url, "s3ForcePathStyle": "true"},
                    "credential": {"name": b.credential_secret, "key": "cloud"},
                    "accessMode": "ReadWrite",
                },
                opts=child(self),
            )
        self.register_outputs({"storage_class": HEALTH_DATA_CLASS})


class BackupPlan(pulumi.ComponentResource):
    """One établissement's backups. Its objects were children of HdsStorage (kit 0.1): `aliases` carries their
    former parent so that the engine keeps them rather than replacing them."""

    def __init__(self, name: str, args: BackupPlanArgs, opts: pulumi.ResourceOptions | None = None,
                 former_parent: pulumi.Resource | None = None):
        super().__init__("socle:hds:BackupPlan", name, None, opts)
        lbl = {PART_OF: KIT, LABEL_BLOCK: "storage"}

        def moved() -> pulumi.ResourceOptions:
            return child(self, aliases=[pulumi.Alias(parent=former_parent)] if former_parent is not None else None)
        if args.schedules is not None:
            b = args.schedules
            for kind, schedule, ttl_days in (
                ("daily", b.daily_schedule, b.daily_ttl_days),
                ("monthly", b.monthly_schedule, b.monthly_ttl_days),
            ):
                k8s.apiextensions.CustomResource(
                    f"{name}-schedule-{kind}",
                    api_version="velero.io/v1",
                    kind="Schedule",
                    metadata={"name": f"{b.name_prefix}-{kind}", "namespace": b.namespace, "labels": lbl,
                              "annotations": {ANN_REQUIREMENTS: "BCK-01"}},
                    spec={
                        "schedule": schedule,
                        "useOwnerReferencesInBackup": False,
                        "template": {
                            "includedNamespaces": sorted(b.included_namespaces),
                            "storageLocation": BACKUP_LOCATION,
                            **volume_data_fields(b.data_mover),
                            "ttl": _ttl(ttl_days),
                        },
                    },
                    opts=moved(),
                )
        if args.external_database_host and args.database_backup is not None:
            # The database lives outside the cluster: Velero does not back it up. What its provider keeps, where and
            # how long, is the stack's statement; the audit judges it and reports it as declared, never as passed.
            k8s.core.v1.ConfigMap(
                f"{name}-database-backup",
                metadata={"name": DATABASE_BACKUP, "namespace": args.database_namespace,
                          "labels": {**lbl, LABEL_DECLARATION: DATABASE_BACKUP,
                                     LABEL_REGION_COUNTRY: args.database_backup.region_country},
                          "annotations": {ANN_REQUIREMENTS: "BCK-01 HDS-01"}},
                data=database_backup_data(args.external_database_host, args.database_backup),
                opts=moved(),
            )
        self.register_outputs({})


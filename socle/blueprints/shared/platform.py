"""Platform layer: what a cluster holds once, whatever the number of établissements on it — the admission
policies, the auditors' read-only access, the encrypted health-data StorageClass, its snapshot class and the
backup location in a second region. Every blueprint builds it once, with these Pulumi names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi

from socle.components.access import AuditorAccess, AuditorAccessArgs
from socle.components.admission import AdmissionArgs, AdmissionPolicies
from socle.components.storage import (
    BackupLocationArgs,
    HdsStorage,
    StorageArgs,
    StorageProfile,
    ceph_rbd_profile,
    scaleway_profile,
)

from .groups import Auditors, Backup, Hosting, Storage


@dataclass(frozen=True)
class Platform:
    admission: AdmissionPolicies
    auditors: AuditorAccess
    storage: HdsStorage


def storage_profile(hosting: Hosting, storage: Storage) -> StorageProfile:
    """The CSI driver and the parameters that make it encrypt, by provider profile (HDS-04)."""
    if hosting.provider_profile == "scaleway-sbs":
        s = storage.scaleway_sbs
        return scaleway_profile(s.kms_key_id, s.luks_secret, s.luks_secret_namespace, s.iops)
    if hosting.provider_profile == "ceph-rbd":
        c = storage.ceph_rbd
        return ceph_rbd_profile(c.cluster_id, c.pool, c.kms_id, c.secret_name, c.secret_namespace)
    g = storage.generic_csi
    return StorageProfile(
        name="generic-csi",
        provisioner=g.provisioner,
        parameters=dict(sorted(g.parameters.items())),
        encrypted=storage.encrypted and g.encrypted,
        snapshot_driver=g.snapshot_driver or g.provisioner,
    )


def build_platform(*, profile: str, hosting: Hosting, storage: Storage, backup: Backup, backup_prefix: str,
                   allowed_registries: Sequence[str], auditors: Auditors, exec_namespaces: Sequence[str],
                   namespaces: Sequence[pulumi.Resource]) -> Platform:
    """Register the platform layer. `namespaces` are the cells' Namespace objects: the auditors' bindings and the
    storage objects come after them; the admission policies come first, before any workload."""
    production = profile == "production"
    admission = AdmissionPolicies("admission", AdmissionArgs(allowed_registries=list(allowed_registries)))
    after = pulumi.ResourceOptions(depends_on=list(namespaces) + [admission])
    access = AuditorAccess("auditors", AuditorAccessArgs(
        group=auditors.group, exec_namespaces=sorted(exec_namespaces) if auditors.live_checks else []), opts=after)
    location = None
    if backup.enabled:
        location = BackupLocationArgs(
            namespace=backup.velero_namespace, provider=backup.provider, bucket=backup.bucket, prefix=backup_prefix,
            s3_url=backup.s3_url, region=backup.region.name, region_country=backup.region.country,
            credential_secret=backup.credential_secret)
    hds = HdsStorage("hds-storage", StorageArgs(
        profile=storage_profile(hosting, storage), region_label=hosting.region_label,
        regions=[r.name for r in hosting.regions], region_countries={r.name: r.country for r in hosting.regions},
        backup=location, protect=production, hosted_by=hosting.hosted_by), opts=after)
    return Platform(admission=admission, auditors=access, storage=hds)

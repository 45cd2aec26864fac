"""Health data hosting, storage and backups (HDS-01..04, BCK-01, BCK-02)."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Iterator
from urllib.parse import urlparse

from socle.constants import (ANN_HOSTED_BY, ANN_REGION_COUNTRIES, DATABASE_BACKUP, EEA_COUNTRIES, LABEL_DATA, LABEL_TENANT,
                             LABEL_DECLARATION, LABEL_ENCRYPTED, LABEL_REGION_COUNTRY, VELERO_SNAPSHOT_CLASS_LABEL)

from ..evidence import Evidence, Workload, annotations, dig, labels, meta
from ..model import Context, Control, Finding, ObjRef, declared, failed, judge, missing
from . import registrar
from ._common import Parsed, hapi_files

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "HDS")
HDS = ("hds",)
# BCK-01: the retention of ANS's own platform (Velero 720 h daily, 4320 h monthly).
DAILY_DAYS, MONTHLY_DAYS = 30, 180
# Drivers whose encryption parameter the audit knows (from the drivers' documentation).
ENCRYPTION_PARAMETER = {"csi.scaleway.com": "encrypted", "rbd.csi.ceph.com": "encrypted"}


def region_countries(ev: Evidence) -> dict[str, str]:
    """Region name -> country, as the kit's StorageClasses declare it."""
    out: dict[str, str] = {}
    for sc in ev.scoped("StorageClass"):
        try:
            declared = json.loads(annotations(sc).get(ANN_REGION_COUNTRIES, "{}"))
        except json.JSONDecodeError:
            continue
        if isinstance(declared, dict):
            out.update({str(k): str(v) for k, v in declared.items()})
    return out


def stateful(w: Workload) -> bool:
    if labels(w.obj).get(LABEL_DATA) == "true" or w.kind == "StatefulSet":
        return True
    return any("persistentVolumeClaim" in v for v in w.pod_spec.get("volumes") or [])


def _affinity_regions(w: Workload) -> tuple[str | None, list[str]]:
    terms = dig(w.pod_spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                "nodeSelectorTerms", default=[]) or []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if "region" in expr.get("key", "") and expr.get("operator") == "In":
                return expr["key"], list(expr.get("values") or [])
    selector = w.pod_spec.get("nodeSelector") or {}
    for key, value in selector.items():
        if "region" in key:
            return key, [value]
    return None, []


def _region_problems(regions: list[str], countries: dict[str, str], what: str) -> list[str]:
    problems = []
    for r in regions:
        country = countries.get(r)
        if country is None:
            problems.append(f"{what} region {r} has no declared country")
        elif country not in EEA_COUNTRIES:
            problems.append(f"{what} region {r} is in {country}, outside the EEA")
    return problems


def backup_country(bsl: dict) -> Finding:
    """HDS-01, BCK-01: a backup location's country is the stack's label: outside the EEA or absent fails, inside is
    declared (the audit cannot see where a provider's region is)."""
    country = labels(bsl).get(LABEL_REGION_COUNTRY)
    region = dig(bsl, "spec", "config", "region", default="?")
    if not country:
        return failed(bsl, f"backup region {region} has no declared country ({LABEL_REGION_COUNTRY})")
    if country not in EEA_COUNTRIES:
        return failed(bsl, f"backup region {region} is in {country}, outside the EEA")
    return declared(bsl, f"backups in region {region}, in {country} (EEA) by the stack's label {LABEL_REGION_COUNTRY} only: "
                         "the auditor checks the provider's documentation of that region")


def _jdbc_host(url: str) -> str | None:
    """The host of a JDBC PostgreSQL URL (`jdbc:postgresql://host:port/db?...`), None when it names none."""
    if not url.startswith("jdbc:"):
        return None
    try:
        return urlparse(url[len("jdbc:"):]).hostname
    except ValueError:
        return None


def in_cluster_host(host: str) -> bool:
    """A Service of the cluster (`name.namespace.svc[.cluster.local]`), whose data Velero backs up with its namespace."""
    try:
        ipaddress.ip_address(host)
        return False  # an address: the kit names in-cluster databases by their Service, never by an IP
    except ValueError:
        pass
    parts = host.rstrip(".").split(".")
    return "svc" in parts[2:3] or len(parts) == 1


def external_databases(ev: Evidence) -> Iterator[tuple[Parsed, str]]:
    """(HAPI configuration, database host) for every FHIR server whose database is outside the cluster."""
    for p in hapi_files(ev):
        if not isinstance(p, Parsed):
            continue  # FHIR-01 reports a configuration it cannot read
        host = _jdbc_host(str(dig(p.data, "spring", "datasource", "url", default="") or ""))
        if host and not in_cluster_host(host):
            yield p, host


def database_declaration(ev: Evidence, namespace: str, host: str) -> dict | None:
    """The stack's declaration of the provider backups of the database `host` used from `namespace`."""
    for cm in ev.scoped_in("ConfigMap", namespace):
        if labels(cm).get(LABEL_DECLARATION) == DATABASE_BACKUP and (cm.get("data") or {}).get("database-host") == host:
            return cm
    return None


def _days(data: dict, key: str) -> int | None:
    value = str(data.get(key, ""))
    return int(value) if value.isdigit() and len(value) <= 5 else None


def database_backup(ev: Evidence, storage_regions: set[str], requirement: str) -> Iterator[Finding]:
    """BCK-01, HDS-01: an external database is not Velero's to back up; its provider's backups, as the stack declares
    them, are judged by the same rules (second region in the EEA, 30/180 days). Met: `declared`, since it is the
    provider's word relayed by the stack; broken: fail; no declaration: evidence missing."""
    for p, host in external_databases(ev):
        ns = meta(p.file.obj).get("namespace", "")
        decl = database_declaration(ev, ns, host)
        if decl is None:
            yield missing(p.file.obj, f"the FHIR database {host} is outside the cluster, so Velero does not back it up, "
                                      f"and no declaration of its provider's backups is in {ns} (ConfigMap labelled "
                                      f"{LABEL_DECLARATION}={DATABASE_BACKUP} for database-host {host})", p.file.key)
            continue
        data = decl.get("data") or {}
        region, country = str(data.get("region", "")), str(data.get("region-country", ""))
        problems = []
        if not region:
            problems.append(f"the backups of database {host} name no region")
        if not country:
            problems.append(f"database {host}: backup region {region} has no declared country")
        elif country not in EEA_COUNTRIES:
            problems.append(f"database {host}: backup region {region} is in {country}, outside the EEA")
        if requirement == "BCK-01":
            if region and region in storage_regions:
                problems.append(f"database {host}: backups stay in the primary region {region}, not a second region")
            daily, monthly = _days(data, "retention-days"), _days(data, "monthly-retention-days")
            if daily is None:
                problems.append(f"database {host}: no retention-days declared")
            else:
                if daily < DAILY_DAYS:
                    problems.append(f"database {host}: backups kept {daily} days, less than {DAILY_DAYS} days")
                if max(daily, monthly or 0) < MONTHLY_DAYS:
                    problems.append(f"database {host}: no backup kept {MONTHLY_DAYS} days (monthly: "
                                    f"{monthly if monthly is not None else 'none declared'})")
        if problems:
            yield failed(decl, "; ".join(problems))
            continue
        if requirement == "BCK-01":
            monthly = data.get("monthly-retention-days")
            pitr = "yes" if data.get("point-in-time-recovery") == "true" else "no"
            kept = f"kept {data['retention-days']} days" + (f", monthly {monthly} days" if monthly else "")
            what = f"{kept}, in {region} ({country}, not a primary region), point-in-time recovery {pitr}"
        else:
            what = f"in {region}, in {country} (EEA)"
        ref = data.get("evidence")
        yield declared(decl, f"database {host}: provider backups {what}, by the stack's declaration only "
                             f"({'evidence: ' + ref if ref else 'no evidence reference'}): the auditor checks the "
                             "provider's backup settings")


@control("HDS-01", "Health data stored only in the EEA: nodes, volumes and backups in allowed regions", "critical", HDS,
         ("hds",), "Pin stateful workloads, storage classes and backup locations to regions of EEA countries.")
def hds_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # The regions a workload, a volume or a backup may use are seen in the objects; the country of a region is the
    # stack's declaration (a region name says nothing the audit can check): EEA countries are declared, not passed.
    countries = region_countries(ev)
    bad = {r: c for r, c in countries.items() if c not in EEA_COUNTRIES}
    for sc in ev.scoped("StorageClass"):
        regions = [v for t in sc.get("allowedTopologies") or [] for e in t.get("matchLabelExpressions") or []
                   if "region" in e.get("key", "") for v in e.get("values") or []]
        problems = [] if regions else ["volumes may be provisioned in any region (no allowedTopologies on a region label)"]
        problems += _region_problems(regions, countries, "volume")
        problems += [f"declared region {r} is in {c}, outside the EEA" for r, c in sorted(bad.items()) if r not in regions]
        if problems:
            yield failed(sc, "; ".join(problems))
        else:
            where = ", ".join(f"{r} in {countries[r]}" for r in regions)
            yield declared(sc, f"volumes only in {', '.join(regions)}; {where} (EEA) by the stack's annotation "
                               f"{ANN_REGION_COUNTRIES} only: the auditor checks the provider's documentation of the region")
    for w in ev.workloads():
        if not stateful(w):
            continue
        key, regions = _affinity_regions(w)
        problems = [] if key else ["no required node affinity on a region label"]
        problems += _region_problems(regions, countries, "node")
        yield judge(w.obj, problems, f"scheduled only in {', '.join(regions)} ({key})")
    for bsl in ev.scoped("BackupStorageLocation"):
        yield backup_country(bsl)
    yield from database_backup(ev, set(), "HDS-01")


manual("HDS-02", "Access from outside the EEA has a legal basis and is declared", "high", HDS, ("hds",),
       "Declare every access from outside the EEA with its legal basis.",
       "The register of accesses from outside the EEA and their legal basis (or a statement that there is none).")


def hds_03_scope(ev: Evidence) -> str | None:
    """HDS-03 does not apply when the stack declares that the établissement hosts its own data: HDS certification is
    required of a host acting for a third party (CSP L.1111-8). Any kit StorageClass declaring a third-party host, or
    none declaring anything, keeps the certificate required."""
    hosts = {annotations(sc).get(ANN_HOSTED_BY) for sc in ev.scoped("StorageClass")}
    if hosts != {"etablissement"}:
        return None
    return ("the stack declares that the établissement hosts its own health data (StorageClass annotation "
            f"{ANN_HOSTED_BY}=etablissement): HDS certification applies to a host acting for a third party (CSP "
            "L.1111-8), so none is required; the auditor checks that no third party hosts or operates the "
            "infrastructure (contracts, data-centre ownership)")


manual("HDS-03", "The hosting provider is HDS-certified for the activities used", "critical", HDS, ("hds",),
       "Host on an HDS-certified provider (2024 référentiel) for every activity used; an établissement hosting its own "
       "data declares hosting.hosted_by: etablissement.",
       "The provider's HDS certificate: number, scope (activities 1-6), certifier and expiry date (none when the "
       "établissement hosts its own data, CSP L.1111-8).",
       needs_validity=True, scope=hds_03_scope)


def _claims(ev: Evidence) -> Iterator[tuple[dict, str | None, str]]:
    """(owner object, storage class, claim name) for every claim template and PVC of the kit."""
    for w in ev.workloads():
        for tpl in dig(w.obj, "spec", "volumeClaimTemplates", default=[]) or []:
            yield w.obj, dig(tpl, "spec", "storageClassName"), meta(tpl).get("name", "?")
    for pvc in ev.scoped("PersistentVolumeClaim"):
        yield pvc, dig(pvc, "spec", "storageClassName"), meta(pvc).get("name", "?")


@control("HDS-04", "Health-data volumes encrypted at rest and kept on delete (reclaimPolicy Retain)", "critical", HDS,
         ("hds", "socle"), "Use the kit's socle-health-data StorageClass (encrypted, Retain) for every claim.")
def hds_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    classes: set[str] = set()
    for owner, cls, claim in _claims(ev):
        if not cls:
            yield failed(owner, f"claim {claim} uses the cluster's default storage class, not an encrypted Retain class")
            continue
        classes.add(cls)
        sc = ev.get("StorageClass", "", cls)
        if sc is None:
            yield missing(owner, f"claim {claim}: storage class {cls} is not in the evidence")
        if owner.get("kind") == "StatefulSet":
            policy = dig(owner, "spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted", default="Retain")
            if policy != "Retain":
                yield failed(owner, f"claims deleted with the StatefulSet (whenDeleted {policy})")
    for cls in sorted(classes):
        sc = ev.get("StorageClass", "", cls)
        if sc is None:
            continue
        problems = []
        if sc.get("reclaimPolicy", "Delete") != "Retain":
            problems.append(f"reclaimPolicy {sc.get('reclaimPolicy', 'Delete')}")
        provisioner = sc.get("provisioner", "")
        param = ENCRYPTION_PARAMETER.get(provisioner)
        if param and str((sc.get("parameters") or {}).get(param)).lower() != "true":
            problems.append(f"{provisioner} parameter {param} is not \"true\"")
        if labels(sc).get(LABEL_ENCRYPTED) != "true":
            problems.append(f"not declared encrypted ({LABEL_ENCRYPTED})")
        if problems or param:
            yield judge(sc, problems, f"encrypted ({provisioner} parameter {param}), reclaimPolicy Retain")
        else:
            # The driver has no encryption parameter the audit knows: only the stack's label says the disks are
            # encrypted. That is the operator's statement, not evidence.
            yield declared(sc, f"reclaimPolicy Retain; encryption declared by the stack only ({LABEL_ENCRYPTED}): "
                               f"the audit cannot see it for driver {provisioner}; the auditor checks the provider's "
                               "documentation or console")


_DAILY = re.compile(r"^\S+\s+\S+\s+\*\s+\*\s+\*$")
_MONTHLY = re.compile(r"^\S+\s+\S+\s+\d+\s+\*\s+\*$")


def _ttl_hours(value: str) -> float:
    if not value:
        return 720  # Velero's default TTL
    m = re.match(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", value)
    if not m or not any(m.groups()):
        return 0
    h, mi, s = (int(g or 0) for g in m.groups())
    return h + mi / 60 + s / 3600


def volume_data(s: dict, ev: Evidence) -> tuple[list[str], str]:
    """(problems, how) of the way a Schedule's backups carry the volume data: to the backup location (CSI snapshots
    moved by Velero's data mover, or file-system backup), or not (snapshots left with the storage provider in the
    primary region). A field left out takes the Velero server's default, which the evidence does not show."""
    tpl = dig(s, "spec", "template", default={}) or {}
    if tpl.get("defaultVolumesToFsBackup") is True:
        return [], "volume data copied by file-system backup (node agent, Kopia) to the backup location"
    if tpl.get("snapshotMoveData") is True and tpl.get("snapshotVolumes") is not False:
        mover = str(tpl.get("datamover") or "")
        if mover not in ("", "velero"):
            return [f"volume data moved by data mover {mover}, not Velero's built-in one: where it writes cannot be "
                    "seen"], ""
        drivers = sorted({str(sc.get("provisioner", "")) for sc in ev.scoped("StorageClass")} - {""})
        labelled = {str(c.get("driver", "")) for c in ev.scoped("VolumeSnapshotClass")
                    if labels(c).get(VELERO_SNAPSHOT_CLASS_LABEL) == "true"}
        unlabelled = [d for d in drivers if d not in labelled]
        if unlabelled:
            return [f"no VolumeSnapshotClass labelled {VELERO_SNAPSHOT_CLASS_LABEL}=true for driver "
                    f"{', '.join(unlabelled)}: Velero cannot snapshot those volumes to move their data"], ""
        return [], "volume data: CSI snapshots moved to the backup location by Velero's data mover"
    if tpl.get("snapshotVolumes") is False:
        return ["volume data is not backed up (snapshotVolumes false, no file-system backup)"], ""
    return ["volume data stays in the primary region: CSI snapshots are kept by the storage provider "
            "(snapshotMoveData and defaultVolumesToFsBackup are not true)"], ""


@control("BCK-01", "Backups of every stateful namespace, volume data included, and of an external database go to a "
         "second region, also in the EEA (daily kept 30 days, monthly kept 180 days)", "critical",
         HDS, ("ans-k8s", "hds"), "Enable backup with a location in another EEA region, the daily and monthly schedules "
         "with the volume data moved (backup.data_mover), and declare an external database's provider backups.")
def bck_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # The second region, the retention and how volume data travels are seen in the Velero objects; the region's
    # country is the stack's label; an external database's backups are the stack's declaration.
    data_ns = sorted({w.namespace for w in ev.workloads() if stateful(w)})
    storage_regions = {v for sc in ev.scoped("StorageClass") for t in sc.get("allowedTopologies") or []
                       for e in t.get("matchLabelExpressions") or [] for v in e.get("values") or []}
    yield from database_backup(ev, storage_regions, "BCK-01")
    locations = {meta(b)["name"]: b for b in ev.scoped("BackupStorageLocation")}
    schedules = ev.scoped("Schedule")
    if not schedules:
        for ns in data_ns:
            yield failed(ObjRef("Namespace", "", ns), "health data with no backup schedule")
        return
    covered: dict[str, set[str]] = {"daily": set(), "monthly": set()}
    used: dict[str, dict] = {}
    tenant_of = {meta(n)["name"]: (meta(n).get("labels") or {}).get(LABEL_TENANT) for n in ev.scoped("Namespace")}
    for s in schedules:
        cron = str(dig(s, "spec", "schedule", default="")).strip()
        kind = "daily" if _DAILY.match(cron) else "monthly" if _MONTHLY.match(cron) else None
        included = set(dig(s, "spec", "template", "includedNamespaces", default=[]) or [])
        loc_name = dig(s, "spec", "template", "storageLocation", default="default")
        loc = locations.get(loc_name)
        problems = []
        region = ""
        if loc is None:
            problems.append(f"storage location {loc_name} is not a backup location of the kit")
        else:
            used[loc_name] = loc
            region = str(dig(loc, "spec", "config", "region", default="") or "")
            if not region:
                problems.append(f"storage location {loc_name} names no region: it cannot be told from the primary region")
            elif region in storage_regions:
                problems.append(f"backups stay in the primary region {region}, not a second region")
        moved, how = volume_data(s, ev)
        problems += moved
        ttl = _ttl_hours(str(dig(s, "spec", "template", "ttl", default="") or ""))
        floor = {"daily": DAILY_DAYS, "monthly": MONTHLY_DAYS}.get(kind or "")
        if floor and ttl < floor * 24:
            problems.append(f"{kind} backups kept {ttl / 24:g} days, less than {floor} days")
        # A schedule covers its own établissement's namespaces (a regional platform has one per tenant).
        own = {tenant_of.get(ns) for ns in included}
        missing = [] if "*" in included else [ns for ns in data_ns if ns not in included and tenant_of.get(ns) in own]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(f"does not include {shown}")
        if kind and not problems:
            covered[kind] |= set(data_ns) if "*" in included else included & set(data_ns)
        yield judge(s, problems, f"{kind or 'custom'} schedule ({cron}), kept {ttl / 24:g} days in {loc_name} "
                                 f"(region {region}, not a primary region); {how}")
    for name in sorted(used):
        yield backup_country(used[name])
    for kind in ("daily", "monthly"):
        for ns in data_ns:
            if ns not in covered[kind]:
                yield failed(ObjRef("Namespace", "", ns), f"no {kind} backup of this namespace to a second region")


manual("BCK-02", "Restores are tested regularly (at least every 90 days)", "high", HDS, ("ans-k8s", "socle"),
       "Run a restore test at least every 90 days and keep its record.",
       "The record of the last restore test (date, backup restored, result); older than 90 days fails the requirement.",
       max_age_days=90)

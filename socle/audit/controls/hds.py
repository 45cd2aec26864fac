"""Health data hosting, storage and backups (HDS-01..04, BCK-01, BCK-02)."""
from __future__ import annotations

import json
import re
from typing import Iterator

from socle.constants import ANN_REGION_COUNTRIES, EEA_COUNTRIES, LABEL_DATA, LABEL_ENCRYPTED, LABEL_REGION_COUNTRY

from ..evidence import Evidence, Workload, annotations, dig, labels, meta
from ..model import Context, Control, Finding, ObjRef, declared, failed, judge, missing
from . import registrar

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "HDS")
HDS = ("hds",)
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


manual("HDS-02", "Access from outside the EEA has a legal basis and is declared", "high", HDS, ("hds",),
       "Declare every access from outside the EEA with its legal basis.",
       "The register of accesses from outside the EEA and their legal basis (or a statement that there is none).")
manual("HDS-03", "The hosting provider is HDS-certified for the activities used", "critical", HDS, ("hds",),
       "Host on an HDS-certified provider (2024 référentiel) for every activity used.",
       "The provider's HDS certificate: number, scope (activities 1-6), certifier and expiry date.",
       needs_validity=True)


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


@control("BCK-01", "Backups go to a second region, also in the EEA (daily kept 30 days, monthly kept 180 days)", "critical",
         HDS, ("ans-k8s", "hds"), "Enable backup with a location in another EEA region and the daily and monthly schedules.")
def bck_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    # The second region and the retention are seen in the Velero objects; the region's country is the stack's label.
    data_ns = sorted({w.namespace for w in ev.workloads() if stateful(w)})
    storage_regions = {v for sc in ev.scoped("StorageClass") for t in sc.get("allowedTopologies") or []
                       for e in t.get("matchLabelExpressions") or [] for v in e.get("values") or []}
    locations = {meta(b)["name"]: b for b in ev.scoped("BackupStorageLocation")}
    schedules = ev.scoped("Schedule")
    if not schedules:
        for ns in data_ns:
            yield failed(ObjRef("Namespace", "", ns), "health data with no backup schedule")
        return
    covered: dict[str, set[str]] = {"daily": set(), "monthly": set()}
    used: dict[str, dict] = {}
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
        ttl = _ttl_hours(str(dig(s, "spec", "template", "ttl", default="") or ""))
        floor = {"daily": 30, "monthly": 180}.get(kind or "")
        if floor and ttl < floor * 24:
            problems.append(f"{kind} backups kept {ttl / 24:g} days, less than {floor} days")
        if "*" not in included and not set(data_ns) <= included:
            missing = [ns for ns in data_ns if ns not in included]
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(f"does not include {shown}")
        if kind and not problems:
            covered[kind] |= set(data_ns)
        yield judge(s, problems, f"{kind or 'custom'} schedule ({cron}), kept {ttl / 24:g} days in {loc_name} "
                                 f"(region {region}, not a primary region)")
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

"""What every profile refuses and what production refuses of one établissement's parameters (`CellParams`), and
the advisories `socle validate` prints: (key path, message), each message starting with the requirement it protects."""
from __future__ import annotations

from socle.constants import (
    EEA_COUNTRIES,
    HSTS_MIN_MAX_AGE,
    INS_NON_PRODUCTION,
    PSC_PRODUCTION_ISSUER,
    PSC_SANDBOX_HOST,
    RETENTION_CNIL_CEILING_DAYS,
    RETENTION_FLOOR_DAYS,
)

from .groups import BLOCKS, RESERVED_API_NAMES, CellParams, Images, Relay

def image_registry(ref: str) -> str:
    return ref.split("/", 1)[0]


def production_refusals(p: CellParams) -> list[tuple[str, str]]:
    """(key path, message) for everything the production profile refuses; also dev-profile hard errors."""
    out: list[tuple[str, str]] = []
    # Checks that hold for every profile.
    for i, api in enumerate(p.gateway.apis):
        if api.backend is None and api.name in RESERVED_API_NAMES:
            out.append((f"gateway.apis[{i}].name", f"'{api.name}' names one of the gateway's own flows "
                        f"(NetworkPolicy allow-gateway-to-{api.name}); choose another name"))
    for block in BLOCKS:
        name = p.namespace(block)
        if len(name) > 63:
            out.append(("organisation.short_name", f"namespace '{name}' would be {len(name)} characters; Kubernetes names "
                        f"are at most 63 (short_name at most {63 - len(max(BLOCKS, key=len)) - 1})"))
            break
    for field_name in (f for f in Images.model_fields if f != "allowed_registries"):
        ref = getattr(p.images, field_name)
        if image_registry(ref) not in p.images.allowed_registries:
            out.append((f"images.{field_name}", f"K8S-05: registry {image_registry(ref)} is not in images.allowed_registries"))
    if p.authz.replicas > 1 and p.authz.database is None:
        out.append(("authz.replicas", "K8S-09: replicas of the authorization server must share a database (authz.database): "
                    "each would otherwise hold its own sessions"))
    for i, api in enumerate(p.gateway.apis):
        if not api.requires_mtls and not api.token_validation:
            out.append((f"gateway.apis[{i}]", f"GW-02: route '{api.name}' would have no authentication (mtls or token_validation)"))
    if p.profile != "production":
        return out

    if PSC_SANDBOX_HOST in p.psc.issuer:
        out.append(("psc.issuer", f"PSC-05: the Pro Santé Connect sandbox ({PSC_SANDBOX_HOST}) is refused in production"))
    elif p.psc.issuer != PSC_PRODUCTION_ISSUER:
        out.append(("psc.issuer", f"PSC-04: production issuer must be {PSC_PRODUCTION_ISSUER}"))
    if p.tls.min_version in ("TLSv1", "TLSv1.1"):
        out.append(("tls.min_version", "TLS-01: TLS below 1.2 is refused in production"))
    for i, api in enumerate(p.gateway.apis):
        if api.sensitivity == "sensitive" and not api.requires_mtls:
            out.append((f"gateway.apis[{i}].mtls", f"API-01: sensitive route '{api.name}' must verify client certificates"))
        if api.backend == "fhir" and (api.sensitivity != "sensitive" or not api.requires_mtls):
            out.append((f"gateway.apis[{i}].sensitivity", f"API-01: route '{api.name}' serves the FHIR store (patient data): "
                        "it must be sensitive, with client certificates"))
    if p.authz.database is None:
        out.append(("authz.database", "K8S-09: production runs the authorization server on 2 replicas sharing an external "
                    "database: set authz.database"))
    elif p.authz.replicas < 2:
        out.append(("authz.replicas", "K8S-09: stateless services need at least 2 replicas in production"))
    if p.gateway.hsts_max_age < HSTS_MIN_MAX_AGE:
        out.append(("gateway.hsts_max_age", f"TLS-03: HSTS max-age below {HSTS_MIN_MAX_AGE} is refused in production"))
    lifetime = p.gateway.session_lifetime
    if int(lifetime[:-1]) * (3600 if lifetime.endswith("h") else 60) > 4 * 3600:
        out.append(("gateway.session_lifetime", "API-04: a browser session longer than 4 h (PSC's session) is refused in production"))
    if p.audit.retention_days < RETENTION_FLOOR_DAYS:
        out.append(("audit.retention_days", f"TRACE-01: retention below {RETENTION_FLOOR_DAYS} days is refused in production"))
    if p.gateway.replicas < 2:
        out.append(("gateway.replicas", "K8S-09: stateless services need at least 2 replicas in production"))
    if p.fhir.replicas < 2:
        out.append(("fhir.replicas", "K8S-09: stateless services need at least 2 replicas in production"))
    if p.fhir.database.mode == "in-cluster":
        out.append(("fhir.database.mode", "K8S-09: a single in-cluster PostgreSQL is refused in production; use an external managed database"))
    for i, region in enumerate(p.hosting.regions):
        if region.country not in EEA_COUNTRIES:
            out.append((f"hosting.regions[{i}].country", f"HDS-01: region {region.name} ({region.country}) is outside the EEA"))
    if p.backup.enabled:
        if p.backup.region.country not in EEA_COUNTRIES:
            out.append(("backup.region.country", f"HDS-01: backup region {p.backup.region.name} is outside the EEA"))
        if p.backup.region.name in {r.name for r in p.hosting.regions}:
            out.append(("backup.region.name", "BCK-01: backups must go to a second region"))
        if p.backup.data_mover == "snapshots-in-place":
            out.append(("backup.data_mover", "BCK-01: snapshots in place leave the volume data in the primary region; "
                        "use csi-snapshot-data-movement or file-system-backup in production"))
    else:
        out.append(("backup.enabled", "BCK-01: backups are mandatory in production"))
    if p.fhir.database.mode == "external":
        pb = p.fhir.database.provider_backup
        if pb is None:
            out.append(("fhir.database.provider_backup", "BCK-01: declare the external database's provider backups "
                        "(region, retention, point-in-time recovery): Velero does not back it up"))
        else:
            if pb.region.country not in EEA_COUNTRIES:
                out.append(("fhir.database.provider_backup.region.country",
                            f"HDS-01: database backup region {pb.region.name} ({pb.region.country}) is outside the EEA"))
            if pb.region.name in {r.name for r in p.hosting.regions}:
                out.append(("fhir.database.provider_backup.region.name",
                            "BCK-01: the database's backups must be kept in a second region"))
            if pb.retention_days < 30:  # the daily backups of ANS's own platform (Velero 720 h)
                out.append(("fhir.database.provider_backup.retention_days",
                            "BCK-01: database backups kept less than 30 days"))
            if max(pb.retention_days, pb.monthly_retention_days or 0) < 180:  # its monthly backups (4320 h)
                out.append(("fhir.database.provider_backup.monthly_retention_days",
                            "BCK-01: no database backup kept 180 days (monthly)"))
    if not p.storage.encrypted:
        out.append(("storage.encrypted", "HDS-04: unencrypted storage is refused in production"))
    elif p.hosting.provider_profile == "generic-csi" and not p.storage.generic_csi.encrypted:
        out.append(("storage.generic_csi.encrypted", "HDS-04: the generic CSI profile must declare encrypted volumes"))
    for i, system in enumerate(p.fhir.ins_systems):
        if system in INS_NON_PRODUCTION:
            out.append((f"fhir.ins_systems[{i}]", f"INS-02: test/demo INS system {system} is refused in production"))
    if p.pki.mode == "demo":
        out.append(("pki.mode", "PKI-01: the demo PKI is refused in production; provide IGC-Santé certificates"))
    elif not p.pki.crl_urls and any(a.requires_mtls for a in p.gateway.apis):
        out.append(("pki.crl_urls", "PKI-02: production mTLS routes need the CRL distribution points so the CRL is refreshed"))
    if not p.fhir.validation_fr_core:
        out.append(("fhir.validation_fr_core", "FHIR-04: FR Core validation must be on in production"))
    if p.relay.domain_list_url != Relay.model_fields["domain_list_url"].default:
        out.append(("relay.domain_list_url", "MSS-05: production reads the ANS white list of the MSSanté trust space "
                    f"({Relay.model_fields['domain_list_url'].default})"))
    if p.relay.mode == "operator" and not p.relay.operator_contract:
        out.append(("relay.operator_contract", "MSS-05: direct delivery needs the ANS MSSanté operator contract; give its "
                    "reference, or set relay.mode external-operator with your operator's relay as relay.next_hop"))
    if not p.relay.require_client_certificate:
        out.append(("relay.require_client_certificate", "MSS-06: application mailboxes must use the organisation certificate"))
    elif not p.relay.client_fingerprints:
        out.append(("relay.client_fingerprints", "MSS-06: list the organisation certificates allowed to relay (none would relay)"))
    if p.hosting.provider_profile == "ceph-rbd":
        for key in ("cluster_id", "pool", "kms_id"):
            if not getattr(p.storage.ceph_rbd, key):
                out.append((f"storage.ceph_rbd.{key}", "HDS-04: required by the ceph-rbd profile"))
    if p.hosting.provider_profile == "generic-csi" and p.storage.generic_csi.provisioner.endswith((".invalid", ".test", ".example")):
        out.append(("storage.generic_csi.provisioner", "HDS-04: name the real CSI driver of the cluster"))
    return out


def advisories(p: CellParams) -> list[tuple[str, str]]:
    """(key path, message) for valid values that a recommendation advises against: printed, never refused."""
    out: list[tuple[str, str]] = []
    if p.audit.retention_days > RETENTION_CNIL_CEILING_DAYS:
        out.append(("audit.retention_days", f"TRACE-01: records kept {p.audit.retention_days} days; the CNIL recommends "
                    f"six months to one year ({RETENTION_CNIL_CEILING_DAYS} days) and longer only with a documented "
                    "justification: keep it with the audit evidence"))
    return out

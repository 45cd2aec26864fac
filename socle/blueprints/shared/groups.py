"""Parameter groups shared by the blueprints, and `CellParams`: one établissement's parameters (the hospital
blueprint's whole model; a dedicated tenant's cell in the regional platform)."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from socle.constants import (
    ANS_TERMINOLOGY_SERVER,
    HSTS_MIN_MAX_AGE,
    INS_SYSTEMS,
    PSC_SANDBOX_ISSUER,
    RETENTION_CNIL_CEILING_DAYS,
    RETENTION_DEFAULT_DAYS,
    RETENTION_FLOOR_DAYS,
)
from socle.secretvalue import SecretValue

from .types import (
    Cidr,
    CrlUrl,
    Cron,
    DnsLabel,
    Fingerprint,
    Host,
    HttpsUrl,
    Identifier,
    Image,
    LabelValue,
    SecretName,
    Size,
    Strict,
    Text,
    _BODY,
    _CSI_DRIVER,
    _auditors_group,
    _db_host,
    _full,
    _ins_system,
    _label_key,
    _next_hop,
    _text,
)

class Organisation(Strict):
    name: Text = Field(description="Legal name of the établissement")
    finess: str = Field(pattern=r"^(?:[0-9]{2}|2A|2B)[0-9]{7}$",
                        description="FINESS juridique or géographique number: 9 characters, the first two the "
                                    "département (2A or 2B in Corsica)")
    short_name: DnsLabel = Field(description="Prefix of every namespace and object name (`<short_name>-gateway` must fit in 63 characters)")
    owner_group: Text = Field(default="dsi", description="Group that owns the platform")


class Region(Strict):
    name: LabelValue = Field(description="Region name as the node label carries it")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of the region")


class Hosting(Strict):
    provider_profile: Literal["generic-csi", "scaleway-sbs", "ceph-rbd"] = Field(
        default="generic-csi", description="Storage profile: generic CSI, Scaleway Block Storage, on-premise Ceph RBD"
    )
    region_label: Annotated[str, AfterValidator(_label_key)] = Field(
        default="topology.kubernetes.io/region", description="Node label holding the region")
    regions: list[Region] = Field(
        default_factory=lambda: [Region(name="fr-par", country="FR")], min_length=1, max_length=10,
        description="Regions where health data may be stored (HDS-01)",
    )
    hosted_by: Literal["third-party", "etablissement"] = Field(
        default="third-party",
        description="HDS-03: who hosts the health data: a third-party host (which must be HDS-certified) or the "
                    "établissement itself on its own infrastructure (CSP L.1111-8: certification applies to a host "
                    "acting for a third party; HDS-03 is then not applicable)")


class GenericCsi(Strict):
    provisioner: Annotated[str, _full(_CSI_DRIVER, "must be a CSI driver name (DNS subdomain, at most 63 characters)", 63)] = Field(
        default="csi.example.invalid", description="CSI driver name")
    parameters: dict[Annotated[str, AfterValidator(_label_key)], Annotated[str, Field(max_length=1024), AfterValidator(_text)]] = Field(
        default_factory=dict, max_length=32, description="StorageClass parameters of the driver")
    encrypted: bool = Field(default=True, description="The driver encrypts volumes at rest with these parameters (HDS-04)")
    snapshot_driver: Annotated[str, _full(re.compile(rf"({_CSI_DRIVER.pattern})?"), "must be a CSI driver name or empty", 63)] = Field(
        default="", description="Driver of the VolumeSnapshotClass (empty: same as provisioner)")


class ScalewaySbs(Strict):
    kms_key_id: Identifier = Field(default="", description="Scaleway Key Manager key id (empty: LUKS with passphrase Secret)")
    luks_secret: SecretName = Field(default="sbs-luks-passphrase", description="Secret with key encryptionPassphrase")
    luks_secret_namespace: DnsLabel = Field(description="Namespace of the LUKS passphrase Secret (no Key Manager key)", default="kube-system")
    iops: Literal["5000", "15000"] = Field(default="5000", description="Scaleway Block Storage performance class (IOPS)")


class CephRbd(Strict):
    cluster_id: Identifier = Field(default="", description="ceph-csi clusterID")
    pool: Identifier = Field(default="", description="RBD pool")
    kms_id: Identifier = Field(default="", description="encryptionKMSID of the ceph-csi KMS configuration")
    secret_name: SecretName = Field(description="Secret of the ceph-csi provisioner and node credentials", default="csi-rbd-secret")
    secret_namespace: DnsLabel = Field(description="Namespace of that Secret", default="ceph-csi")


class Storage(Strict):
    encrypted: bool = Field(default=True, description="HDS-04: volumes holding health data are encrypted at rest")
    generic_csi: GenericCsi = Field(description="HDS-04: the generic-csi profile's driver and parameters", default_factory=GenericCsi)
    scaleway_sbs: ScalewaySbs = Field(description="HDS-04: the scaleway-sbs profile (Scaleway Block Storage)", default_factory=ScalewaySbs)
    ceph_rbd: CephRbd = Field(description="HDS-04: the ceph-rbd profile (on-premise ceph-csi block encryption)", default_factory=CephRbd)


class Backup(Strict):
    enabled: bool = Field(default=True, description="BCK-01: back up the stateful namespaces with Velero (mandatory in production)")
    velero_namespace: DnsLabel = Field(default="velero", description="Namespace where Velero runs")
    provider: Literal["aws"] = Field(default="aws", description="Velero object-store plugin (S3 API)")
    bucket: Annotated[str, _full(re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"), "must be an S3 bucket name", 63)] = Field(default="socle-backups", description="BCK-01: S3 bucket of the backup location")
    s3_url: HttpsUrl = Field(description="BCK-01: S3 endpoint of the backup location, in the second region", default="https://s3.fr-srr.scw.cloud")
    region: Region = Field(description="HDS-01/BCK-01: the backup location's region and country (a second region in the EEA)", default_factory=lambda: Region(name="fr-srr", country="FR"))
    credential_secret: SecretName = Field(description="Secret (key `cloud`) with the S3 credentials, in Velero's namespace", default="velero-s3-credentials")
    daily_schedule: Cron = Field(default="0 2 * * *", description="BCK-01: cron of the daily backup")
    daily_ttl_days: int = Field(description="BCK-01: days a daily backup is kept (at least 7; 30 by default)", default=30, ge=7, le=3650)
    monthly_schedule: Cron = Field(default="0 3 1 * *", description="BCK-01: cron of the monthly backup")
    monthly_ttl_days: int = Field(description="BCK-01: days a monthly backup is kept (at least 30; 180 by default)", default=180, ge=30, le=3650)
    data_mover: Literal["csi-snapshot-data-movement", "file-system-backup", "snapshots-in-place"] = Field(
        default="csi-snapshot-data-movement",
        description="BCK-01: how volume data reaches the backup location: CSI snapshots moved there by Velero's data "
                    "mover (node agent), or file-system backup (Kopia, node agent); snapshots-in-place leaves the data "
                    "with the storage provider in the primary region (a weaker setting, reported by the audit, "
                    "refused in production)")


class Images(Strict):
    gateway: Image = Field(default="docker.io/nginxinc/nginx-unprivileged:1.27.4-alpine", description="K8S-05: NGINX (unprivileged) image of the gateway")
    # the version socle.cluster.build builds and `socle verify` runs (controlplane/oauth2-proxy)
    oauth2_proxy: Image = Field(default="quay.io/oauth2-proxy/oauth2-proxy:v7.15.6", description="K8S-05: oauth2-proxy image (the version socle verify runs)")
    # the établissement's authorization server; socle verify runs the same version (socle/verify/keycloak.py)
    keycloak: Image = Field(default="quay.io/keycloak/keycloak:26.7.3", description="K8S-05: Keycloak image of the authorization server (the version socle verify runs)")
    fhir: Image = Field(default="docker.io/hapiproject/hapi:v8.8.0-1", description="K8S-05: HAPI FHIR image (its property names are checked, socle/fhir/hapi_properties.json)")  # socle/fhir/hapi_properties.json: its property names
    postgres: Image = Field(default="docker.io/library/postgres:16.6-alpine3.21", description="K8S-05: PostgreSQL image of the in-cluster database")
    relay: Image = Field(default="docker.io/boky/postfix:v4.4.0", description="K8S-05: Postfix image of the MSSanté relay")
    syslog: Image = Field(default="docker.io/rsyslog/rsyslog:2025-06", description="K8S-05: rsyslog image of the audit log and its forwarders")
    tools: Image = Field(default="docker.io/library/alpine:3.21.3", description="K8S-05: small image with a shell (CRL refresher, partitions Job)")
    allowed_registries: list[Annotated[str, _full(re.compile(r"[a-z0-9.-]+(:[0-9]{1,5})?"), "must be a registry host[:port]", 253)]] = Field(description="K8S-05: registries the images may come from (admission refuses others)",
        default_factory=lambda: ["docker.io", "quay.io"], min_length=1, max_length=20)


class Tls(Strict):
    min_version: Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] = Field(
        default="TLSv1.2", description="TLS-01: lowest protocol offered; below TLSv1.2 only as a reported dev exception"
    )


class Pki(Strict):
    mode: Literal["demo", "provided"] = Field(
        default="demo", description="demo: a throw-away PKI generated by pulumi_tls; provided: existing Secrets"
    )
    trust_bundle_secret: SecretName = Field(default="igc-sante-trust-bundle", description="PKI-01: ca.crt with only the health PKI CAs")
    crl_secret: SecretName = Field(default="igc-sante-crl", description="PKI-02: crl.pem, the CRL the gateway starts with")
    crl_urls: list[CrlUrl] = Field(
        default_factory=list, max_length=16,
        description="PKI-02: CRL distribution points of the health PKI CAs (see `openssl x509 -noout -ext crlDistributionPoints`)",
    )
    crl_refresh_minutes: int = Field(default=60, ge=5, le=1440, description="PKI-02: how often the CRLs are downloaded")
    gateway_server_secret: SecretName = Field(default="gateway-server-tls", description="PKI-01: Secret with the gateway's server certificate (tls.crt, tls.key)")
    relay_server_secret: SecretName = Field(default="relay-server-tls", description="MSS-02: Secret with the relay's server certificate")
    relay_client_secret: SecretName = Field(default="relay-org-client-tls", description="MSS-06: organisation certificate")
    audit_server_secret: SecretName = Field(default="auditlog-server-tls", description="TRACE-03: Secret with the audit log aggregator's server certificate")
    audit_client_secret: SecretName = Field(default="auditlog-client-tls", description="TRACE-03: Secret with the forwarders' client certificate")
    audit_seal_key_secret: SecretName = Field(
        default="auditlog-seal-key",
        description="TRACE-04: HMAC key of the audit log seal (key `key`, 32 to 64 bytes), mounted in the seal container "
                    "only; generated by the program in demo mode, provided by you otherwise")
    database_server_secret: SecretName = Field(default="postgres-server-tls", description="K8S-08: Secret with the in-cluster database's server certificate")


class Api(Strict):
    name: DnsLabel = Field(description="Name of the API (its virtual host, rate zone and flows)")
    host: Host = Field(description="GW-03: the API's own host name")
    owner_group: Text = Field(description="GW-01: group that owns the API")
    sensitivity: Literal["public", "restricted", "sensitive"] = Field(description="API-01: sensitive routes require client certificates")
    backend: Literal["fhir"] | None = Field(default="fhir", description="Built-in backend; or service+namespace+port")
    service: DnsLabel | None = Field(default=None, description="Service of an API without a built-in backend")
    namespace: DnsLabel | None = Field(default=None, description="Namespace of that Service")
    port: int | None = Field(description="Port of that Service", default=None, ge=1, le=65535)
    mtls: bool | None = Field(default=None, description="API-01: client certificate required (default: sensitive routes)")
    token_validation: bool = Field(default=True, description="API-03: Pro Santé Connect / OAuth2 token checked at the gateway")
    rate_per_second: int = Field(description="GW-06: requests per second per client address", default=100, ge=1, le=100000)
    burst: int = Field(description="GW-06: requests allowed above the rate before 429", default=200, ge=0, le=100000)
    max_body: Annotated[str, _full(_BODY, "must be an NGINX size such as 10m", 8)] = Field(
        default="10m", description="GW-06: request body limit (nginx size)")

    @model_validator(mode="after")
    def _backend(self) -> "Api":
        if self.backend is None and not (self.service and self.namespace and self.port):
            raise ValueError("an API without a built-in backend needs service, namespace and port")
        return self

    @property
    def requires_mtls(self) -> bool:
        return self.sensitivity == "sensitive" if self.mtls is None else self.mtls


class Gateway(Strict):
    replicas: int = Field(description="K8S-09: gateway replicas (2 or more in production)", default=1, ge=1, le=20)
    hsts_max_age: int = Field(description="TLS-03: HSTS max-age in seconds (at least a year in production)", default=HSTS_MIN_MAX_AGE, ge=0, le=10 * 366 * 86400)
    service_type: Literal["LoadBalancer", "ClusterIP"] = Field(default="LoadBalancer", description="Service type of the gateway (LoadBalancer: its node ports are allowed by the quota)")
    apis: list[Api] = Field(description="GW-01..03: the APIs the gateway serves, one virtual host each", min_length=1, max_length=50)
    session_lifetime: str = Field(default="4h", pattern=r"^[0-9]{1,4}[hm]$",
                                  description="API-04: browser session cookie lifetime (PSC sessions: 4 h at most)")


class Psc(Strict):
    issuer: HttpsUrl = Field(default=PSC_SANDBOX_ISSUER, description="PSC-04/05: OIDC issuer")
    client_id: str = Field(pattern=r"^[A-Za-z0-9._~:@/+=-]{1,255}$", description="PSC-01: client id registered with Pro Santé Connect")
    client_secret: SecretName = Field(default="psc-client", description="PSC-03: Secret holding key client-secret")
    client_secret_value: SecretValue | None = Field(
        default=None,
        description="PSC-03: the client secret itself, encrypted in the stack file (`pulumi config set --secret --path "
                    "socle:params.psc.client_secret_value SECRET`): `socle up` writes it into the Secret client_secret "
                    "of the authorization server's namespace. Empty: you create that Secret yourself")
    auth_method: Literal["secret"] = Field(
        default="secret", description="PSC-03: oauth2-proxy authenticates with the client secret (mTLS client auth is not offered by it)"
    )
    redirect_host: Host | None = Field(default=None, description="Host of the /oauth2/callback (default: first API host)")
    wallet_host: Host | None = Field(
        default=None, description="PSC-04: host of PSC's wallet authorization endpoint (default: the wallet of the issuer's "
                                  "environment: wallet.esw.esante.gouv.fr, or wallet.bas.psc.esante.gouv.fr for the sandbox)")


class AuthzClient(Strict):
    """API-02: an API client (software of another organisation) and its IGC-Santé ORG certificate."""
    client_id: Annotated[str, _full(re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}"), "must be a client id (letters, digits, ._:-)", 100)] = Field(description="API-02: the client's id at the authorization server")
    subject_dn: Annotated[str, _full(re.compile(r"[A-Za-z0-9 .,=@'()+/:_-]{3,500}"), "must be an RFC 2253 DN", 500)] = Field(
        description="API-02: subject DN of the client's certificate, RFC 2253 (`openssl x509 -noout -subject -nameopt RFC2253`)")
    issuer_dn: Annotated[str, _full(re.compile(r"[A-Za-z0-9 .,=@'()+/:_-]{3,500}"), "must be an RFC 2253 DN", 500)] = Field(
        description="API-02: subject DN of the CA that issued it (RFC 2253)")


class AuthzDatabase(Strict):
    """K8S-09: the external PostgreSQL database the authorization server's replicas share (sessions, users)."""
    host: Annotated[str, AfterValidator(_db_host)] = Field(description="host name or IP address")
    port: int = Field(description="Port of the database", default=5432, ge=1, le=65535)
    name: str = Field(description="Database name", default="keycloak", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    credentials_secret: SecretName = Field(description="existing Secret with username/password")
    ca_secret: SecretName = Field(description="Secret with ca.crt of the database server")
    network: Cidr = Field(description="network of the database (egress allow rule)")


class Authz(Strict):
    """The établissement's authorization server (Keycloak): PSC broker, RFC 8693 exchange, RFC 8705 bound tokens."""
    replicas: int = Field(default=1, ge=1, le=10, description="K8S-09: 2 or more need authz.database")
    database: AuthzDatabase | None = Field(
        default=None, description="K8S-09: external PostgreSQL shared by the replicas; none: one replica keeping its "
                                  "sessions in memory (the realm is imported at each start), dev only")
    host: Host | None = Field(default=None, description="Public host of the authorization server on the gateway (default: "
                                                        "`auth.` + the domain of the first API host)")
    realm: DnsLabel = Field(default="etablissement", description="Keycloak realm of the établissement")
    access_token_minutes: int = Field(default=60, ge=60, le=240, description="API-03: API token lifetime, 1 to 4 h")
    session_idle_minutes: int = Field(default=30, ge=5, le=30, description="API-04: SSO session idle timeout (PSC: 30 min)")
    session_max_hours: int = Field(default=4, ge=1, le=4, description="API-04: SSO session maximum (PSC: 4 h)")
    browser_client_secret: SecretName = Field(default="oauth2-proxy-keycloak-client",
                                              description="PSC-03: Secret (key client-secret) of oauth2-proxy's client at the "
                                                          "authorization server, generated by the program in both namespaces")
    api_clients: list[AuthzClient] = Field(description="API-02: the API clients allowed to exchange PSC tokens, by certificate", default_factory=list, max_length=100)


class ProviderBackup(Strict):
    """BCK-01/HDS-01: what the provider of an external database says of its backups (the audit cannot see them)."""

    region: Region = Field(description="Region (and its country) where the provider keeps the database's backups")
    retention_days: int = Field(ge=1, le=3650, description="BCK-01: days the daily backups are kept (floor 30)")
    monthly_retention_days: int | None = Field(
        default=None, ge=1, le=3650,
        description="BCK-01: days a monthly copy is kept, if the provider keeps one (else retention_days must reach 180)")
    point_in_time_recovery: bool = Field(description="The provider can restore the database to any point in time")
    evidence: Text | None = Field(default=None, description="Reference of the provider's document or setting that says so")


class Database(Strict):
    mode: Literal["in-cluster", "external"] = Field(default="in-cluster", description="in-cluster (dev: one PostgreSQL StatefulSet) or external (production: a managed database)")
    host: Annotated[str, AfterValidator(_db_host)] | None = Field(default=None, description="external: host name or IP address")
    port: int = Field(description="Port of the database", default=5432, ge=1, le=65535)
    name: str = Field(description="Database name", default="hapi", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    user: str = Field(description="Database user", default="hapi", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    credentials_secret: SecretName | None = Field(default=None, description="external: existing Secret with username/password")
    password: SecretValue | None = Field(
        default=None,
        description="external: the database password, encrypted in the stack file (`pulumi config set --secret --path "
                    "socle:params.fhir.database.password PASSWORD`): `socle up` writes credentials_secret with it and "
                    "the user. Empty: you create that Secret yourself")
    ca_secret: SecretName | None = Field(default=None, description="external: Secret with ca.crt of the database server")
    network: Cidr | None = Field(default=None, description="external: network of the database (egress allow rule)")
    provider_backup: ProviderBackup | None = Field(
        default=None, description="external: the provider's backups of the database, declared for BCK-01/HDS-01 "
                                  "(Velero does not back up a database outside the cluster)")
    storage_size: Size = Field(default="20Gi", description="in-cluster: size of the database volume")

    @model_validator(mode="after")
    def _external(self) -> "Database":
        if self.mode == "external":
            missing = [k for k in ("host", "credentials_secret", "ca_secret", "network") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"external database needs {', '.join(missing)}")
        elif self.password is not None:
            raise ValueError("the in-cluster database's password is generated by the program: give password only "
                             "for an external database")
        return self


class Fhir(Strict):
    replicas: int = Field(description="K8S-09: FHIR server replicas (2 or more in production)", default=1, ge=1, le=20)
    validation_fr_core: bool = Field(default=True, description="FHIR-04: validate incoming resources against FR Core")
    terminology_server: HttpsUrl = Field(default=ANS_TERMINOLOGY_SERVER, description="FHIR-02")
    annuaire_api_key_secret: SecretName = Field(default="annuaire-sante-api-key", description="FHIR-03: Secret with key api-key")
    annuaire_api_key: SecretValue | None = Field(
        default=None,
        description="FHIR-03: the Annuaire Santé API key itself, encrypted in the stack file (`pulumi config set --secret "
                    "--path socle:params.fhir.annuaire_api_key KEY`): `socle up` writes it into the Secret "
                    "annuaire_api_key_secret. Empty: you create that Secret yourself")
    ins_systems: list[Annotated[str, Field(max_length=100), AfterValidator(_ins_system)]] = Field(
        default_factory=lambda: [INS_SYSTEMS["NIR"], INS_SYSTEMS["NIA"]], min_length=1, max_length=10, description="INS-02 systems accepted"
    )
    database: Database = Field(description="K8S-08/K8S-09: the FHIR store's PostgreSQL", default_factory=Database)
    memory: Size = Field(default="2Gi", description="Memory of a FHIR server pod (request and limit)")



class Relay(Strict):
    replicas: int = Field(description="Relay replicas", default=1, ge=1, le=10)
    hostname: Host = Field(description="MSS-02: the relay's host name (its certificate's and its EHLO's)")
    service_type: Literal["LoadBalancer", "ClusterIP"] = Field(default="LoadBalancer", description="Service type of the relay")
    mode: Literal["operator", "external-operator"] = Field(
        default="operator", description="MSS-05: operator = the établissement is a contracted MSSanté operator and delivers "
                                        "directly to the listed domains; external-operator = every message goes to its operator's relay (next_hop)")
    operator_contract: Text | None = Field(
        default=None, description="MSS-05: reference of the ANS MSSanté operator contract (production, mode operator)")
    authorized_domains: list[Host] = Field(min_length=1, max_length=5000,
                                           description="MSS-05: authorized MSSanté domains until the first accepted download of the list")
    domain_list_url: HttpsUrl = Field(
        default="https://espacedeconfiance.mssante.fr/listeblanchemssante.xml",
        description="MSS-05: the ANS white list of the MSSanté trust space (XML, served under IGC-Santé)"
    )
    refresh_interval_hours: int = Field(default=24, ge=1, le=168, description="MSS-05: how often the domain list is refreshed")
    list_min_domains: int = Field(default=1000, ge=1, le=1000000,
                                  description="MSS-05: a downloaded list with fewer domains is refused (the previous list stays)")
    list_max_shrink_percent: int = Field(default=10, ge=0, le=100,
                                         description="MSS-05: a list that lost more than this share of the current domains is refused")
    list_max_invalid_percent: int = Field(default=1, ge=0, le=100,
                                          description="MSS-05: a list with more entries that are not host names is refused (fewer are skipped)")
    enforce_operator_dn: bool | None = Field(
        default=None, description="MSS-05: deliver to a listed domain only to a server whose certificate names the host of "
                                  "its operator's DN (default: on for direct delivery)")
    require_client_certificate: bool = Field(default=True, description="MSS-06: application mailboxes use the organisation certificate")
    client_fingerprints: list[Fingerprint] = Field(
        default_factory=list, max_length=1000,
        description="MSS-06: SHA-256 fingerprints of the organisation certificates allowed to relay "
                    "(`openssl x509 -noout -fingerprint -sha256`); remove one to revoke it",
    )
    next_hop: Annotated[str, AfterValidator(_next_hop)] | None = Field(
        default=None, description="Relay that receives every message, [host]:port (external-operator: the operator's relay, "
                                  "required; operator: optional, default MX of the domain)")
    queue_size: Size = Field(default="5Gi", description="Size of the mail queue volume")
    mailbox_purge_days: int = Field(default=365, ge=1, le=365, description="MSS-08")

    @model_validator(mode="after")
    def _mode(self) -> "Relay":
        if self.mode == "external-operator" and self.next_hop is None:
            raise ValueError("MSS-05: relay.mode external-operator sends every message to the operator's relay: set relay.next_hop")
        if self.enforce_operator_dn and self.next_hop is not None:
            raise ValueError("MSS-05: relay.enforce_operator_dn checks the servers of each listed domain, which only direct "
                             "delivery reaches (mode operator without next_hop)")
        return self

    @property
    def operator_dn(self) -> bool:
        """Whether each listed domain's operator certificate name is enforced (on by default for direct delivery)."""
        return self.enforce_operator_dn if self.enforce_operator_dn is not None else self.next_hop is None


class AuditLog(Strict):
    retention_days: int = Field(
        default=RETENTION_DEFAULT_DAYS, ge=1, le=36600,
        description=f"TRACE-01/MSS-07: days the audit records are kept; at least {RETENTION_FLOOR_DAYS} in production "
                    f"(CSP R.6113-9-2); above {RETENTION_CNIL_CEILING_DAYS} the CNIL asks for a documented "
                    "justification (`socle validate` warns)")
    storage_size: Size = Field(default="50Gi", description="TRACE-01: size of the audit log volume")


class Auditors(Strict):
    group: Annotated[str, AfterValidator(_auditors_group)] = Field(default="socle:auditors",
                       description="K8S-10: group (OIDC group or certificate O=) bound to the read-only socle-auditor role")
    live_checks: bool = Field(default=False, description="Also grant the group exec into the kit's pods for live host checks")


BLOCKS = ("gateway", "fhir", "mss", "audit", "authz")
# The gateway's own egress flows are NetworkPolicies `allow-gateway-to-<name>`: an external API may not take one.
RESERVED_API_NAMES = ("oauth2-proxy", "fhir", "auditlog", "crl")  # one namespace each: `<short_name>-<block>`


class CellParams(Strict):
    profile: Literal["dev", "production"] = Field(default="dev", description="dev or production: production refuses weaker settings, each refusal naming its requirement")
    organisation: Organisation = Field(description="The établissement: legal name, FINESS, short name, owner")
    hosting: Hosting = Field(description="HDS-01/03: regions and host of the health data", default_factory=Hosting)
    storage: Storage = Field(description="HDS-04: the encrypted health-data storage by provider profile", default_factory=Storage)
    backup: Backup = Field(description="BCK-01: Velero backups in a second region", default_factory=Backup)
    images: Images = Field(description="K8S-05: pinned images and allowed registries", default_factory=Images)
    tls: Tls = Field(description="TLS-01: lowest protocol offered", default_factory=Tls)
    pki: Pki = Field(description="PKI-01/02: certificates, trust bundle and CRLs", default_factory=Pki)
    gateway: Gateway = Field(description="The API gateway: its APIs, replicas, HSTS, sessions")
    psc: Psc = Field(description="PSC-*: the Pro Santé Connect client")
    authz: Authz = Field(description="API-02..04: the établissement's authorization server", default_factory=Authz)
    fhir: Fhir = Field(description="FHIR-*/INS-*: the FHIR store and its database", default_factory=Fhir)
    relay: Relay = Field(description="MSS-*: the MSSanté relay")
    audit: AuditLog = Field(description="TRACE-*: the audit log", default_factory=AuditLog)
    auditors: Auditors = Field(description="K8S-10: the auditors' group and access", default_factory=Auditors)

    @model_validator(mode="after")
    def _cross(self) -> "CellParams":
        hosts = [a.host for a in self.gateway.apis]
        dup = sorted({h for h in hosts if hosts.count(h) > 1})
        if dup:
            raise ValueError(f"GW-03: each API needs its own host name; shared: {', '.join(dup)}")
        names = [a.name for a in self.gateway.apis]
        if len(set(names)) != len(names):
            raise ValueError("API names must be unique")
        return self

    def namespace(self, block: str) -> str:
        return f"{self.organisation.short_name}-{block}"



"""Parameter model of the `plateforme-regionale` blueprint, version 1: a regional group (GRADeS) hosting its
établissements as tenants on one cluster.

The stack file holds the region's parameters; each tenant is one file, `stacks/<stack>/tenants/<id>.yaml`, named by
its FINESS juridique (or its SIRET when it has none), reviewable and delegable on its own. A `shared` tenant is a
partition of the regional FHIR store behind its own virtual host of the regional gateway; a `dedicated` tenant gets
a cell of its own (zones, gateway, authorization server, FHIR store, relay, audit log), with the region's settings.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from socle.blueprints.shared.groups import (
    Auditors,
    AuditLog,
    Authz,
    Backup,
    Fhir,
    Hosting,
    Images,
    Pki,
    Psc,
    Relay,
    Storage,
    Tls,
)
from socle.blueprints.shared.types import Cron, DnsLabel, Host, Size, Strict, Text, _full
from socle.constants import HSTS_MIN_MAX_AGE

VERSION = "1.0.0"
MAX_TENANTS = 1000  # the largest regions host about 300 établissements

FINESS_PATTERN = r"^(?:[0-9]{2}|2A|2B)[0-9]{7}$"
# A tenant's short name prefixes its namespaces (`<short_name>-gateway`) and its Pulumi names: short, so that every
# name of the region stays readable and within Kubernetes' 63 characters.
TenantShortName = Annotated[DnsLabel, Field(max_length=20)]
_DN = re.compile(r"[A-Za-z0-9 .,=@'()+/:_-]{3,500}")
SubjectDn = Annotated[str, _full(_DN, "must be an RFC 2253 DN (`openssl x509 -noout -subject -nameopt RFC2253`)", 500)]


def siret_checksum(v: str) -> str:
    """SIRET: 14 digits whose Luhn sum is a multiple of 10 (INSEE); La Poste's establishments (SIREN 356000000) use
    the sum of the digits, a multiple of 5."""
    if not re.fullmatch(r"[0-9]{14}", v):
        raise ValueError("a SIRET is 14 digits")
    if v.startswith("356000000"):
        ok = sum(int(c) for c in v) % 5 == 0
    else:
        total = 0
        for i, c in enumerate(reversed(v)):
            d = int(c) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        ok = total % 10 == 0
    if not ok:
        raise ValueError("not a valid SIRET: its check digit does not match (Luhn)")
    return v


Siret = Annotated[str, AfterValidator(siret_checksum)]


class RegionOrganisation(Strict):
    name: Text = Field(description="Legal name of the regional group (GRADeS)")
    finess: str = Field(pattern=FINESS_PATTERN, description="FINESS juridique of the regional group's structure")
    short_name: Annotated[DnsLabel, Field(max_length=20)] = Field(
        description="Prefix of the region's own namespaces (`<short_name>-gateway`, `<short_name>-fhir`, …)")
    owner_group: Text = Field(default="dsi", description="Group that owns the regional platform")


class RegionalGateway(Strict):
    replicas: int = Field(default=1, ge=1, le=20, description="K8S-09: gateway replicas (2 or more in production)")
    hsts_max_age: int = Field(default=HSTS_MIN_MAX_AGE, ge=0, le=10 * 366 * 86400, description="TLS-03: HSTS max-age")
    service_type: Literal["LoadBalancer", "ClusterIP"] = Field(default="LoadBalancer", description="Service type")
    domain: Host = Field(description="Domain of the tenants' hosts: a tenant's FHIR API is `<short_name>.<domain>` "
                                     "unless it names its own api_host")
    session_lifetime: str = Field(default="4h", pattern=r"^[0-9]{1,4}[hm]$",
                                  description="API-04: browser session cookie lifetime (PSC sessions: 4 h at most)")
    rate_per_second: int = Field(default=100, ge=1, le=100000, description="GW-06: requests per second per client, per tenant")


class Site(Strict):
    finess: str = Field(pattern=FINESS_PATTERN, description="FINESS géographique (ET) of the site")
    name: Text = Field(description="Name of the site")


class TenantMss(Strict):
    mode: Literal["regional-relay", "external-operator"] = Field(
        default="external-operator",
        description="MSS-05: regional-relay = the tenant's MSSanté domains are served by the region's relay (a "
                    "dedicated tenant: by its own cell's relay); external-operator = the tenant's MSSanté operator "
                    "serves them outside the platform")
    domains: list[Host] = Field(default_factory=list, max_length=50, description="MSS-05: the tenant's MSSanté domains")
    operator: Text | None = Field(default=None, description="external-operator: the MSSanté operator serving them")


class TenantQuota(Strict):
    cpu: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,3}$")] = Field(default="4", description="CPU cores the tenant's "
                                                                                           "namespaces may request")
    memory: Size = Field(default="8Gi", description="Memory the tenant's namespaces may request")
    storage: Size = Field(default="100Gi", description="Health-data storage the tenant's claims may request")


class TenantBackup(Strict):
    daily_schedule: Cron = Field(default="0 2 * * *", description="BCK-01: the tenant's daily backup (cron)")
    monthly_schedule: Cron = Field(default="0 3 1 * *", description="BCK-01: the tenant's monthly backup (cron)")


class Tenant(Strict):
    """One établissement hosted by the region (one file: `stacks/<stack>/tenants/<finess or siret>.yaml`)."""

    name: Text = Field(description="Legal name of the établissement (entité juridique)")
    finess: str | None = Field(default=None, pattern=FINESS_PATTERN,
                               description="FINESS juridique (EJ): the tenant's key and its file's name")
    siret: Siret | None = Field(default=None, description="SIRET, when the établissement has no FINESS: then the "
                                                          "tenant's key and its file's name")
    short_name: TenantShortName = Field(description="Prefix of the tenant's names; its FHIR partition's name")
    tier: Literal["shared", "dedicated"] = Field(
        default="shared", description="shared: a partition of the regional FHIR store behind the regional gateway; "
                                      "dedicated: a cell of its own (gateway, authorization server, FHIR, relay, audit)")
    partition_id: int | None = Field(default=None, ge=1, le=2_000_000_000,
                                     description="shared: the FHIR partition's number, stable for the tenant's lifetime "
                                                 "(never reused: resources are stored under it)")
    sites: list[Site] = Field(default_factory=list, max_length=200,
                              description="The établissement's sites (FINESS géographiques)")
    api_host: Host | None = Field(default=None, description="Host of the tenant's FHIR API (default: "
                                                            "`<short_name>.<gateway.domain>`)")
    org_certificates: list[SubjectDn] = Field(
        min_length=1, max_length=50,
        description="API-01: subject DNs (RFC 2253) of the tenant's IGC-Santé organisation certificates: the only "
                    "certificates its host accepts; the tenant of a request is resolved from them, never from a header")
    mss: TenantMss = Field(default_factory=TenantMss, description="MSS-05: the tenant's MSSanté domains")
    quota: TenantQuota = Field(default_factory=TenantQuota, description="K8S-07: the tenant's resource quota")
    backup: TenantBackup = Field(default_factory=TenantBackup, description="BCK-01: the tenant's backup schedule")
    fhir: Fhir | None = Field(default=None, description="dedicated: the tenant's own FHIR store (default: the region's "
                                                        "settings)")

    @model_validator(mode="after")
    def _identity(self) -> "Tenant":
        if (self.finess is None) == (self.siret is None):
            raise ValueError("a tenant is keyed by its FINESS juridique, or by its SIRET when it has none: give exactly one")
        if self.tier == "shared" and self.partition_id is None:
            raise ValueError("a shared tenant needs partition_id: the number of its partition of the regional FHIR store")
        if self.tier == "dedicated" and self.partition_id is not None:
            raise ValueError("partition_id is for shared tenants (a dedicated tenant has a FHIR store of its own)")
        if self.tier == "shared" and self.fhir is not None:
            raise ValueError("fhir is for dedicated tenants (a shared tenant is a partition of the regional store)")
        return self

    @property
    def key(self) -> str:
        return self.finess or self.siret or ""


class Params(Strict):
    """The regional platform's parameters (`socle:params`), with its tenants read from their files."""

    profile: Literal["dev", "production"] = Field(default="dev", description="production refuses weaker settings")
    region: RegionOrganisation = Field(description="The regional group (GRADeS) that runs the platform")
    hosting: Hosting = Field(default_factory=Hosting, description="HDS-01/03: regions and host of the health data")
    storage: Storage = Field(default_factory=Storage, description="HDS-04: the encrypted health-data storage")
    backup: Backup = Field(default_factory=Backup, description="BCK-01: the backup location in a second region")
    images: Images = Field(default_factory=Images, description="K8S-05: pinned images and allowed registries")
    tls: Tls = Field(default_factory=Tls, description="TLS-01: lowest protocol offered")
    pki: Pki = Field(default_factory=Pki, description="PKI-01/02: certificates and trust bundle")
    gateway: RegionalGateway = Field(description="The regional gateway: one virtual host per tenant")
    psc: Psc = Field(description="PSC-*: the region's Pro Santé Connect client")
    authz: Authz = Field(default_factory=Authz, description="The region's authorization server")
    fhir: Fhir = Field(default_factory=Fhir, description="The regional FHIR store (shared tenants' partitions) and "
                                                         "the defaults of dedicated tenants' stores")
    relay: Relay = Field(description="MSS-*: the regional MSSanté relay")
    audit: AuditLog = Field(default_factory=AuditLog, description="TRACE-01: the audit log")
    auditors: Auditors = Field(default_factory=Auditors, description="K8S-10: the auditors' group")
    tenants: dict[str, Tenant] = Field(default_factory=dict, max_length=MAX_TENANTS,
                                       description="The hosted établissements by key (read from stacks/<stack>/tenants/)")

    def tenant_host(self, t: Tenant) -> str:
        return t.api_host or f"{t.short_name}.{self.gateway.domain}"

    def namespace(self, block: str) -> str:
        return f"{self.region.short_name}-{block}"


__all__ = ["VERSION", "Params", "Tenant"]

"""One établissement's cell: its zones (namespace, quota, limits, default-deny and allowed flows), its PKI in demo
mode, its backup Schedules and its building blocks (gateway, authorization server, FHIR store, MSSanté relay, audit
log), wired together. Every Pulumi name of a cell starts with its tenant (none for the hospital blueprint, whose
names are those of kit 0.1); its Kubernetes names start with the organisation's short name."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pulumi
from pydantic import BaseModel

from socle.components import auditlog as auditlog_module
from socle.components import authz as authz_module
from socle.components import fhir as fhir_module
from socle.components import gateway as gateway_module
from socle.components import relay as relay_module
from socle.components.auditlog import SYSLOG_TLS_PORT, AuditLog, AuditLogArgs
from socle.components.authz import (
    CLUSTER_PORTS,
    KEYCLOAK_HTTP_PORT,
    ApiClient,
    AuthzArgs,
    AuthzDatabaseArgs,
    AuthzServer,
    psc_endpoints,
)
from socle.components.common import AuditTarget, Flow, selector
from socle.components.fhir import HAPI_PORT, PG_PORT, DatabaseArgs, FhirArgs, FhirStore, Partition
from socle.components.gateway import GATEWAY_SERVICE_PORTS, HTTP_PORT, HTTPS_PORT, OAUTH2_PORT, Gateway, GatewayArgs, Route
from socle.components.pki import BundleSpec, DemoPki, LeafSpec
from socle.components.relay import PSS_EXCEPTION, RELAY_SERVICE_PORTS, SMTP_PORT, Relay, RelayArgs
from socle.components.storage import HEALTH_DATA_CLASS, BackupPlan, BackupPlanArgs, BackupScheduleArgs, DatabaseBackupArgs
from socle.components.zone import Zone, ZoneArgs
from socle import __version__ as KIT_VERSION
from socle.constants import PSC_SANDBOX_HOST
from socle.secretvalue import SecretValue

from .groups import BLOCKS, CellParams
from .platform import Platform

OFFLINE_SECRET = "<encrypted in the stack file: only `socle up` decrypts it>"
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
INTERNET = ("0.0.0.0/0",)


def secret_input(value: SecretValue | None):
    """A secret parameter as the component takes it: its clear value when the engine decrypted the stack's
    configuration; offline (`socle render`), a marker that never leaves the render, which drops Secrets."""
    if value is None:
        return None
    return value.value if value.value is not None else OFFLINE_SECRET



def component_args(p: CellParams, tenancy: dict[str, tuple[str, list[str]]] | None = None,
                   partitions: Sequence[Partition] = ()) -> dict[str, BaseModel]:
    """The validated arguments of the four configured components, by block. `build` registers the components with
    them; the real-daemon harness renders the same configuration files from them (paths mapped)."""
    production = p.profile == "production"
    ns = {b: p.namespace(b) for b in ("gateway", "fhir", "mss", "audit")}
    regions = [r.name for r in p.hosting.regions]
    audit = AuditTarget(host=f"rsyslog.{ns['audit']}.svc.cluster.local", port=SYSLOG_TLS_PORT,
                        client_secret=p.pki.audit_client_secret)
    fhir_api = next((a for a in p.gateway.apis if a.backend == "fhir"), None)
    public_fhir_host = fhir_api.host if fhir_api else f"fhir.{p.organisation.short_name}.invalid"
    db = p.fhir.database
    auditlog = AuditLogArgs(
        kit_version=KIT_VERSION, namespace=ns["audit"], image=p.images.syslog, tools_image=p.images.tools,
        retention_days=p.audit.retention_days, storage_class=HEALTH_DATA_CLASS, storage_size=p.audit.storage_size,
        server_secret=p.pki.audit_server_secret, region_label=p.hosting.region_label, regions=regions, protect=production,
        seal_key_secret=p.pki.audit_seal_key_secret, generate_seal_key=p.pki.mode == "demo",
    )
    fhir = FhirArgs(
        kit_version=KIT_VERSION, namespace=ns["fhir"], image=p.images.fhir, syslog_image=p.images.syslog,
        replicas=p.fhir.replicas, public_host=public_fhir_host, validation=p.fhir.validation_fr_core,
        terminology_server=p.fhir.terminology_server, annuaire_api_key_secret=p.fhir.annuaire_api_key_secret,
        annuaire_api_key=secret_input(p.fhir.annuaire_api_key),
        database_password=secret_input(db.password) if db.mode == "external" else None,
        ins_systems=p.fhir.ins_systems, memory=p.fhir.memory,
        database=DatabaseArgs(
            mode=db.mode, host=db.host, port=db.port, name=db.name, user=db.user,
            credentials_secret=db.credentials_secret,
            ca_secret=db.ca_secret if db.mode == "external" else p.pki.database_server_secret,
            server_secret=p.pki.database_server_secret if db.mode == "in-cluster" else None,
            storage_class=HEALTH_DATA_CLASS, storage_size=db.storage_size, image=p.images.postgres,
        ),
        region_label=p.hosting.region_label, regions=regions, audit=audit, protect=production,
        partitioning=bool(tenancy), partitions=list(partitions), tools_image=p.images.tools,
    )
    routes = []
    for api in p.gateway.apis:
        if api.backend == "fhir":
            upstream = f"http://hapi-fhir.{ns['fhir']}.svc.cluster.local:{HAPI_PORT}"
        else:
            upstream = f"http://{api.service}.{api.namespace}.svc.cluster.local:{api.port}"
        partition, subjects = (tenancy or {}).get(api.name, (None, []))
        routes.append(Route(name=api.name, host=api.host, owner_group=api.owner_group, sensitivity=api.sensitivity,
                            tenant=partition, client_subjects=subjects,
                            mtls=api.requires_mtls, token_validation=api.token_validation, upstream=upstream,
                            rate_per_second=api.rate_per_second, burst=api.burst, max_body=api.max_body))
    gateway = GatewayArgs(
        kit_version=KIT_VERSION, organisation=p.organisation.name, namespace=ns["gateway"], image=p.images.gateway,
        oauth2_proxy_image=p.images.oauth2_proxy, syslog_image=p.images.syslog, replicas=p.gateway.replicas,
        routes=routes, hsts_max_age=p.gateway.hsts_max_age, tls_min_version=p.tls.min_version,
        service_type=p.gateway.service_type, server_secret=p.pki.gateway_server_secret,
        trust_bundle_secret=p.pki.trust_bundle_secret, crl_secret=p.pki.crl_secret, crl_urls=p.pki.crl_urls,
        crl_refresh_seconds=p.pki.crl_refresh_minutes * 60, tools_image=p.images.tools,
        psc_issuer=p.psc.issuer, psc_client_id=p.psc.client_id, psc_client_secret=p.psc.client_secret,
        psc_redirect_host=p.psc.redirect_host or p.gateway.apis[0].host, session_lifetime=p.gateway.session_lifetime,
        audit=audit, authz_host=authz_host(p), authz_realm=p.authz.realm,
        authz_upstream=f"http://keycloak.{p.namespace('authz')}.svc.cluster.local:{KEYCLOAK_HTTP_PORT}",
        authz_browser_secret=p.authz.browser_client_secret, authz_owner=p.organisation.owner_group,
    )
    authz = AuthzArgs(
        kit_version=KIT_VERSION, organisation=p.organisation.name, namespace=p.namespace("authz"), image=p.images.keycloak,
        syslog_image=p.images.syslog, realm=p.authz.realm, public_host=authz_host(p),
        psc=psc_endpoints(p.psc.issuer, p.psc.wallet_host or wallet_host(p.psc.issuer)),
        psc_client_id=p.psc.client_id, psc_client_secret=p.psc.client_secret,
        psc_client_secret_value=secret_input(p.psc.client_secret_value),
        browser_redirect_uris=[f"https://{gateway.psc_redirect_host}/oauth2/callback"],
        browser_client_secret=p.authz.browser_client_secret, browser_secret_namespaces=[ns["gateway"]],
        api_clients=[ApiClient(client_id=c.client_id, subject_dn=c.subject_dn, issuer_dn=c.issuer_dn) for c in p.authz.api_clients],
        access_token_lifespan=p.authz.access_token_minutes * 60, sso_idle=p.authz.session_idle_minutes * 60,
        sso_max=p.authz.session_max_hours * 3600, audit=audit, trust_bundle_secret=p.pki.trust_bundle_secret,
        replicas=p.authz.replicas,
        database=None if p.authz.database is None else AuthzDatabaseArgs(
            host=p.authz.database.host, port=p.authz.database.port, name=p.authz.database.name,
            credentials_secret=p.authz.database.credentials_secret, ca_secret=p.authz.database.ca_secret),
    )
    relay = RelayArgs(
        kit_version=KIT_VERSION, namespace=ns["mss"], image=p.images.relay,
        syslog_image=p.images.syslog, replicas=p.relay.replicas, hostname=p.relay.hostname,
        authorized_domains=p.relay.authorized_domains, domain_list_url=p.relay.domain_list_url,
        refresh_interval_seconds=p.relay.refresh_interval_hours * 3600, mailbox_purge_days=p.relay.mailbox_purge_days,
        require_client_certificate=p.relay.require_client_certificate, client_fingerprints=p.relay.client_fingerprints,
        next_hop=p.relay.next_hop, mode=p.relay.mode, operator_dn=p.relay.operator_dn,
        list_min_domains=p.relay.list_min_domains, list_max_shrink_percent=p.relay.list_max_shrink_percent,
        list_max_invalid_percent=p.relay.list_max_invalid_percent,
        tls_min_version=p.tls.min_version, server_secret=p.pki.relay_server_secret, client_secret=p.pki.relay_client_secret,
        trust_bundle_secret=p.pki.trust_bundle_secret, service_type=p.relay.service_type, storage_class=HEALTH_DATA_CLASS,
        queue_size=p.relay.queue_size, region_label=p.hosting.region_label, regions=regions, audit=audit, protect=production,
    )
    return {"auditlog": auditlog, "fhir": fhir, "gateway": gateway, "relay": relay, "authz": authz}


def authz_host(p: CellParams) -> str:
    """The authorization server's public host: authz.host, else `auth.` + the domain of the first API host."""
    return p.authz.host or "auth." + p.gateway.apis[0].host.split(".", 1)[1]


def wallet_host(issuer: str) -> str:
    """PSC's wallet (authorization endpoint) of the issuer's environment (DOMAIN-SOURCES.md, psc.properties)."""
    return "wallet.bas.psc.esante.gouv.fr" if PSC_SANDBOX_HOST in issuer else "wallet.esw.esante.gouv.fr"



def config_files(p: CellParams, tenancy: dict[str, tuple[str, list[str]]] | None = None,
                 partitions: Sequence[Partition] = ()) -> dict[str, str]:
    """Every configuration file the blueprint's pods read, `<block>/<file>`; each is checked against its grammar
    as it is rendered (components.grammar), so `socle validate` finds what `socle render` would refuse."""
    args = component_args(p, tenancy, partitions)
    modules = {"auditlog": auditlog_module, "fhir": fhir_module, "gateway": gateway_module, "relay": relay_module,
               "authz": authz_module}
    return {f"{block}/{name}": text for block, module in modules.items() for name, text in module.config_files(args[block]).items()}


def _lb_ports(service_type: str, ports: tuple) -> int:
    """Node ports a Service of that type allocates: one per port for a LoadBalancer, none for a ClusterIP."""
    return len(ports) if service_type == "LoadBalancer" else 0



@dataclass
class Cell:
    """One établissement's cell, built in two steps around the platform layer: `zones()` registers its namespaces
    (which the platform's auditor access and ordering need), `blocks(platform)` the rest."""

    p: CellParams
    blueprint: str  # "<name> <version>", stamped on every namespace
    tenant: str = ""  # prefix of every Pulumi name of the cell
    tenant_key: str | None = None  # the hosted établissement's FINESS or SIRET, labelled on the cell's namespaces
    quota: dict[str, str] = field(default_factory=dict)  # quota_cpu / quota_memory / quota_storage of every zone
    tenancy: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # API name -> (partition, client DNs)
    partitions: list[Partition] = field(default_factory=list)  # the shared tenants' partitions of the FHIR store
    zones_by_block: dict[str, Zone] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)

    def name(self, base: str) -> str:
        return f"{self.tenant}-{base}" if self.tenant else base

    @property
    def namespaces(self) -> dict[str, str]:
        """The namespaces of the blocks that run workloads, by block (gateway, fhir, mss, audit)."""
        return {b: self.p.namespace(b) for b in ("gateway", "fhir", "mss", "audit")}

    @property
    def zone_namespaces(self) -> list[pulumi.Resource]:
        return [z.namespace for z in self.zones_by_block.values()]

    def zones(self) -> dict[str, Zone]:
        p = self.p
        production = p.profile == "production"
        ns = self.namespaces
        gw_pods = selector("gateway", ns["gateway"])
        o2_pods = selector("oauth2-proxy", ns["gateway"])
        hapi_pods = selector("hapi-fhir", ns["fhir"])
        pg_pods = selector("postgres", ns["fhir"])
        relay_pods = selector("postfix", ns["mss"])
        rsyslog_pods = selector("rsyslog", ns["audit"])
        def to_audit(name: str, pods: dict[str, str]) -> Flow:
            return Flow(name, pods, "egress", [("TCP", SYSLOG_TLS_PORT)], ns["audit"], rsyslog_pods)

        external_backends = [a for a in p.gateway.apis if a.backend is None]
        gateway_flows = [
            Flow("allow-ingress-gateway", gw_pods, "ingress", [("TCP", HTTP_PORT), ("TCP", HTTPS_PORT)], peer_cidrs=INTERNET),
            Flow("allow-gateway-to-oauth2-proxy", gw_pods, "egress", [("TCP", OAUTH2_PORT)], ns["gateway"], o2_pods),
            Flow("allow-oauth2-proxy-from-gateway", o2_pods, "ingress", [("TCP", OAUTH2_PORT)], ns["gateway"], gw_pods),
            Flow("allow-oauth2-proxy-to-psc", o2_pods, "egress", [("TCP", 443)], peer_cidrs=INTERNET, peer_cidrs_except=PRIVATE_RANGES),
            Flow("allow-gateway-to-fhir", gw_pods, "egress", [("TCP", HAPI_PORT)], ns["fhir"], hapi_pods),
            to_audit("allow-gateway-to-auditlog", gw_pods),
        ]
        # the établissement's authorization server (its own zone): reached from the gateway only; it calls PSC
        authz_ns = p.namespace("authz")
        kc_pods = selector("keycloak", authz_ns)
        gateway_flows.append(Flow("allow-gateway-to-keycloak", gw_pods, "egress", [("TCP", KEYCLOAK_HTTP_PORT)], authz_ns, kc_pods))
        authz_flows = [
            Flow("allow-keycloak-from-gateway", kc_pods, "ingress", [("TCP", KEYCLOAK_HTTP_PORT)], ns["gateway"], gw_pods),
            Flow("allow-keycloak-to-psc", kc_pods, "egress", [("TCP", 443)], peer_cidrs=INTERNET, peer_cidrs_except=PRIVATE_RANGES),
        ]
        if p.authz.database is not None:
            authz_flows += [
                Flow("allow-keycloak-to-database", kc_pods, "egress", [("TCP", p.authz.database.port)],
                     peer_cidrs=[p.authz.database.network]),
                Flow("allow-keycloak-cluster-in", kc_pods, "ingress", [("TCP", port) for port in CLUSTER_PORTS], authz_ns, kc_pods),
                Flow("allow-keycloak-cluster-out", kc_pods, "egress", [("TCP", port) for port in CLUSTER_PORTS], authz_ns, kc_pods),
            ]
        if p.pki.crl_urls:
            gateway_flows.append(Flow("allow-gateway-to-crl", gw_pods, "egress", [("TCP", 80), ("TCP", 443)],
                                      peer_cidrs=INTERNET, peer_cidrs_except=PRIVATE_RANGES))
        gateway_flows.append(to_audit("allow-oauth2-proxy-to-auditlog", o2_pods))
        for api in external_backends:
            gateway_flows.append(Flow(f"allow-gateway-to-{api.name}", gw_pods, "egress", [("TCP", api.port)], api.namespace, None))
        db = p.fhir.database
        fhir_flows = [
            Flow("allow-fhir-from-gateway", hapi_pods, "ingress", [("TCP", HAPI_PORT)], ns["gateway"], gw_pods),
            Flow("allow-fhir-to-national-services", hapi_pods, "egress", [("TCP", 443)], peer_cidrs=INTERNET, peer_cidrs_except=PRIVATE_RANGES),
            to_audit("allow-fhir-to-auditlog", hapi_pods),
        ]
        fhir_accounts = ["fhir", "postgres"]
        if self.partitions:  # the Job that creates the tenants' partitions calls HAPI directly, inside the zone
            jobs = selector("fhir-partitions", ns["fhir"])
            fhir_flows += [
                Flow("allow-partitions-to-fhir", jobs, "egress", [("TCP", HAPI_PORT)], ns["fhir"], hapi_pods),
                Flow("allow-fhir-from-partitions", hapi_pods, "ingress", [("TCP", HAPI_PORT)], ns["fhir"], jobs),
                to_audit("allow-partitions-to-auditlog", jobs),
            ]
            fhir_accounts.append("fhir-partitions")
        if db.mode == "in-cluster":
            fhir_flows += [
                to_audit("allow-postgres-to-auditlog", pg_pods),
                Flow("allow-fhir-to-postgres", hapi_pods, "egress", [("TCP", PG_PORT)], ns["fhir"], pg_pods),
                Flow("allow-postgres-from-fhir", pg_pods, "ingress", [("TCP", PG_PORT)], ns["fhir"], hapi_pods),
            ]
        else:
            fhir_flows.append(Flow("allow-fhir-to-database", hapi_pods, "egress", [("TCP", db.port)], peer_cidrs=(db.network,)))
        relay_flows = [
            Flow("allow-ingress-smtp", relay_pods, "ingress", [("TCP", SMTP_PORT)], peer_cidrs=INTERNET),
            Flow("allow-relay-to-mssante", relay_pods, "egress", [("TCP", 25), ("TCP", 443)], peer_cidrs=INTERNET, peer_cidrs_except=PRIVATE_RANGES),
            to_audit("allow-relay-to-auditlog", relay_pods),
        ]
        # The aggregator accepts any pod of the kit's namespaces (mutual TLS does the authentication).
        audit_flows = [
            Flow(f"allow-auditlog-from-{b}", rsyslog_pods, "ingress", [("TCP", SYSLOG_TLS_PORT)], ns[b], None)
            for b in ("gateway", "fhir", "mss")
        ]

        stamp = dict(profile=p.profile, blueprint=self.blueprint, kit_version=KIT_VERSION,
                     allowed_registries=p.images.allowed_registries, **self.quota)
        if self.tenant_key:
            stamp["tenant"] = self.tenant_key
        zones = {
            "gateway": Zone(self.name("zone-gateway"), ZoneArgs(namespace=ns["gateway"], block="gateway", **stamp,
                                                     load_balancer_node_ports=_lb_ports(p.gateway.service_type, GATEWAY_SERVICE_PORTS),
                                                     service_accounts=["gateway", "oauth2-proxy"], flows=gateway_flows)),
            "fhir": Zone(self.name("zone-fhir"), ZoneArgs(namespace=ns["fhir"], block="fhir", **stamp,
                                               service_accounts=fhir_accounts, flows=fhir_flows, protect=production)),
            "mss": Zone(self.name("zone-mss"), ZoneArgs(namespace=ns["mss"], block="relay", **stamp, service_accounts=["relay"],
                                             load_balancer_node_ports=_lb_ports(p.relay.service_type, RELAY_SERVICE_PORTS),
                                             flows=relay_flows, pod_security="baseline", pod_security_exception=PSS_EXCEPTION,
                                             protect=production)),
            "audit": Zone(self.name("zone-audit"), ZoneArgs(namespace=ns["audit"], block="auditlog", **stamp, service_accounts=["auditlog"],
                                                 flows=audit_flows, protect=production)),
            "authz": Zone(self.name("zone-authz"), ZoneArgs(namespace=authz_ns, block="authz", **stamp, service_accounts=["keycloak"],
                                                 flows=authz_flows, protect=production)),
        }
        self.zones_by_block = zones
        return zones

    def blocks(self, platform: Platform) -> dict[str, Any]:
        """The cell's PKI (demo mode), backups and building blocks, after its zones and the platform layer."""
        p = self.p
        ns = self.namespaces
        db = p.fhir.database
        audit_host = f"rsyslog.{ns['audit']}.svc.cluster.local"
        authz_ns = p.namespace("authz")
        after_zones = pulumi.ResourceOptions(depends_on=self.zone_namespaces + [platform.admission])
        if p.pki.mode == "demo":
            k = p.pki
            leaves = [
                LeafSpec("gateway", f"gateway.{p.organisation.short_name}",
                         sorted([a.host for a in p.gateway.apis] + [authz_host(p)]), "server", "health",
                         [(ns["gateway"], k.gateway_server_secret)]),
                LeafSpec("relay", p.relay.hostname, [p.relay.hostname], "both", "health", [(ns["mss"], k.relay_server_secret)]),
                LeafSpec("relay-org-client", f"{p.organisation.name} (FINESS {p.organisation.finess})", [], "client", "health",
                         [(ns["mss"], k.relay_client_secret)]),
                LeafSpec("auditlog", audit_host, [audit_host], "server", "internal", [(ns["audit"], k.audit_server_secret)]),
                LeafSpec("auditlog-client", f"log-forwarder.{p.organisation.short_name}", [], "client", "internal",
                         [(ns["gateway"], k.audit_client_secret), (ns["fhir"], k.audit_client_secret), (ns["mss"], k.audit_client_secret)]),
            ]
            if db.mode == "in-cluster":
                pg_host = f"postgres.{ns['fhir']}.svc.cluster.local"
                leaves.append(LeafSpec("postgres", pg_host, [pg_host], "server", "internal", [(ns["fhir"], k.database_server_secret)]))
            bundles = [
                BundleSpec("health", [(ns["gateway"], k.trust_bundle_secret), (ns["mss"], k.trust_bundle_secret),
                                      (authz_ns, k.trust_bundle_secret)]),
                BundleSpec("health", [(ns["gateway"], k.crl_secret)], with_crl=True),
            ]
            DemoPki(self.name("demo-pki"), p.organisation.name, leaves, bundles, opts=after_zones)

        backups = None
        if p.backup.enabled:
            b = p.backup
            backups = BackupScheduleArgs(
                namespace=b.velero_namespace, included_namespaces=[ns["fhir"], ns["mss"], ns["audit"]],
                daily_schedule=b.daily_schedule, daily_ttl_days=b.daily_ttl_days,
                monthly_schedule=b.monthly_schedule, monthly_ttl_days=b.monthly_ttl_days, data_mover=b.data_mover,
                name_prefix=f"socle-{p.organisation.short_name}" if self.tenant else "socle",
            )
        pb = db.provider_backup if db.mode == "external" else None
        BackupPlan(self.name("hds-storage"), BackupPlanArgs(
            schedules=backups, database_namespace=ns["fhir"],
            external_database_host=db.host if db.mode == "external" else None,
            database_backup=None if pb is None else DatabaseBackupArgs(
                region=pb.region.name, region_country=pb.region.country, retention_days=pb.retention_days,
                monthly_retention_days=pb.monthly_retention_days, point_in_time_recovery=pb.point_in_time_recovery,
                evidence=pb.evidence)), opts=after_zones, former_parent=None if self.tenant else platform.storage)
        after_storage = pulumi.ResourceOptions(depends_on=self.zone_namespaces + [platform.storage.storage_class])

        args = component_args(p, self.tenancy, self.partitions)
        auditlog = AuditLog(self.name("auditlog"), args["auditlog"], opts=after_storage)
        fhir = FhirStore(self.name("fhir"), args["fhir"], opts=after_storage)
        gateway = Gateway(self.name("gateway"), args["gateway"], opts=after_zones)
        relay = Relay(self.name("relay"), args["relay"], opts=after_storage)
        authz = AuthzServer(self.name("authz"), args["authz"], opts=after_zones)

        self.components = {"zones": self.zones_by_block, "auditlog": auditlog, "fhir": fhir, "gateway": gateway,
                           "relay": relay, "authz": authz}
        return self.components


__all__ = ["BLOCKS", "Cell", "component_args", "config_files", "secret_input"]

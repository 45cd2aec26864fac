"""API gateway: NGINX (unprivileged) as the only entry point. API calls (mTLS routes) carry a token of the
établissement's authorization server bound to the client certificate, checked at Keycloak's userinfo endpoint;
browser routes hold an oauth2-proxy session opened through that server (Pro Santé Connect login)."""
from __future__ import annotations

import json
from typing import Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import BaseModel, ConfigDict, Field

from socle.constants import ANN_REQUIREMENTS, ANN_ROUTES, PSC_ACR, TLS12_AEAD_SUITES, TLS13_SUITES

from .grammar import GrammarError, render_checked, toml_document
from .common import (
    FORWARDER_UDP_PORT,
    AuditTarget,
    child,
    config_volume,
    container_security,
    empty_dir,
    forwarder_config,
    hashed_config_map,
    labels,
    log_forwarder,
    pdb,
    pod_identity,
    resources_spec,
    secret_env,
    secret_volume,
    selector,
    service,
    zone_spread,
)

# the headers by which the gateway hands Keycloak the client certificate it verified (x509 lookup provider `nginx`)
CLIENT_CERT_HEADER = "ssl-client-cert"
CLIENT_VERIFY_HEADER = "ssl-client-verify"
HTTP_PORT = 8080
HTTPS_PORT = 8443
OAUTH2_PORT = 4180
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
O2_LOG_DIR = "/var/log/oauth2-proxy"
O2_UID = 65532
NGINX_UID = 101
O2_LOG_FILES = ({"path": f"{O2_LOG_DIR}/oauth2-proxy.log", "tag": "oauth2-proxy"},)


# The ports of the gateway's Service (name, port, target port name): a LoadBalancer allocates one node port each.
GATEWAY_SERVICE_PORTS = (("http", 80, "http"), ("https", 443, "https"))

class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    host: str
    owner_group: str
    sensitivity: Literal["public", "restricted", "sensitive"]
    mtls: bool
    token_validation: bool
    upstream: str  # http://service.namespace.svc:port
    rate_per_second: int = 100
    burst: int = 200
    max_body: str = "10m"
    # Tenancy (regional platform): the tenant this host serves — its partition of the FHIR store, reached as
    # `<upstream>/fhir/<tenant>/`, never named by the client — and the subject DNs (RFC 2253) of its organisation
    # certificates: any other certificate of the health PKI is refused on this host.
    tenant: str | None = None
    client_subjects: Sequence[str] = ()


class GatewayArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kit_version: str
    organisation: str
    namespace: str
    image: str
    oauth2_proxy_image: str
    syslog_image: str
    replicas: int = Field(ge=1)
    routes: Sequence[Route]
    hsts_max_age: int
    tls_min_version: Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    service_type: Literal["LoadBalancer", "ClusterIP"] = "LoadBalancer"
    server_secret: str
    trust_bundle_secret: str
    crl_secret: str
    crl_urls: Sequence[str] = ()  # PKI-02: CRL distribution points; empty: the CRL Secret is used as is
    crl_refresh_seconds: int = 3600
    tools_image: str
    psc_issuer: str
    psc_client_id: str
    psc_client_secret: str
    psc_redirect_host: str
    session_lifetime: str = "4h"
    # API-04: how often oauth2-proxy re-validates a session at the authorization server (refresh token): an idle
    # session whose refresh token expired (30 min idle at Keycloak) ends at the next request
    session_refresh: str = "5m"
    # the établissement's authorization server (socle/components/authz.py): its public host on this gateway, its
    # in-cluster address, its realm, the Secret holding oauth2-proxy's client secret there
    authz_host: str | None = None
    authz_upstream: str = ""
    authz_realm: str = "etablissement"
    authz_browser_client: str = "oauth2-proxy"
    authz_browser_secret: str = "oauth2-proxy-keycloak-client"
    authz_owner: str = ""  # GW-01: the group that owns the authorization server's route
    audit: AuditTarget
    service_account: str = "gateway"
    oauth2_service_account: str = "oauth2-proxy"


def tls_protocols(min_version: str) -> str:
    return " ".join(TLS_VERSIONS[TLS_VERSIONS.index(min_version):])


NGINX_CONF_DIR = "/etc/socle/nginx"  # where the gateway's ConfigMap is mounted: nginx.conf and what it includes
TENANT_SERVER = "tenant-server.conf"  # included by every tenant host of nginx.conf (same ConfigMap)


def nginx_files(args: GatewayArgs, *, paths: dict[str, str] | None = None, listen_address: str = "",
                http_port: int = HTTP_PORT, https_port: int = HTTPS_PORT, auth_upstream: str | None = None,
                authz_upstream: str | None = None, access_logs: Sequence[str] | None = None, error_log: str = "stderr",
                upstreams: dict[str, str] | None = None) -> dict[str, str]:
    """nginx.conf for the gateway, and with tenant routes the file every tenant host includes (tenant-server.conf);
    paths and ports are parameters so the local harness runs the same files."""
    p = {
        "run": "/var/run/socle",
        "cache": "/var/cache/nginx",
        "server_tls": "/etc/socle/tls/server",
        "trust_bundle": "/etc/socle/tls/trust",
        "crl": "/etc/socle/tls/crl",
        "conf": NGINX_CONF_DIR,
    }
    p.update(paths or {})
    files = {
        "pid": f"{p['run']}/nginx.pid",
        **{f"{kind}_temp": f"{p['cache']}/{kind}_temp" for kind in ("client", "proxy", "fastcgi", "uwsgi", "scgi")},
        "server_cert": f"{p['server_tls']}/tls.crt",
        "server_key": f"{p['server_tls']}/tls.key",
        "trust_bundle": f"{p['trust_bundle']}/ca.crt",
        "crl": f"{p['crl']}/crl.pem",
        "tenant_server": f"{p['conf']}/{TENANT_SERVER}",
    }
    # Every NGINX argument is passed whole to its filter (a quoted piece inside a word would not be one argument).
    routes = [{**r.model_dump(), "zone_spec": f"zone=api_{r.name.replace('-', '_')}:10m",
               "zone_ref": f"zone=api_{r.name.replace('-', '_')}", "rate": f"rate={r.rate_per_second}r/s",
               "upstream": (upstreams or {}).get(r.name, r.upstream)} for r in args.routes]
    tenant_routes = [r for r in routes if r["tenant"]]
    tenant = None
    if tenant_routes:
        # One file serves every tenant host: they share the store, the limits and the body size.
        shared = {k: sorted({str(r[k]) for r in tenant_routes}) for k in ("upstream", "rate_per_second", "burst", "max_body")}
        uneven = [k for k, v in shared.items() if len(v) > 1]
        if uneven:
            raise GrammarError("nginx.conf", f"tenant routes differ in {', '.join(uneven)}: one tenant-server.conf "
                               "serves them all", [v for k in uneven for v in shared[k]])
        tenant = {k: tenant_routes[0][k] for k in shared}
        tenant["rate"] = f"rate={tenant_routes[0]['rate_per_second']}r/s"
    owners: dict[str, str] = {}
    for r in tenant_routes:
        for dn in r["client_subjects"]:
            if owners.setdefault(dn, r["tenant"]) != r["tenant"]:
                raise GrammarError("nginx.conf", f"the certificate subject {dn} is given to two tenants "
                                   f"({owners[dn]}, {r['tenant']})", [dn])
    auth = auth_upstream or f"http://oauth2-proxy.{args.namespace}.svc.cluster.local:{OAUTH2_PORT}"
    keycloak = authz_upstream or args.authz_upstream
    authz = None
    if args.authz_host:
        authz = {"host": args.authz_host, "realm": args.authz_realm, "upstream": keycloak,
                 "zone_spec": "zone=authz:10m", "zone_ref": "zone=authz",
                 "cert_header": CLIENT_CERT_HEADER, "verify_header": CLIENT_VERIFY_HEADER}
    context = dict(
        kit_version=args.kit_version,
        organisation=args.organisation,
        worker_processes="auto",
        files=files,
        error_log=error_log,
        access_logs=list(access_logs) if access_logs is not None else [
            "/dev/stdout",
            f"syslog:server=127.0.0.1:{FORWARDER_UDP_PORT},facility=local6,tag=gateway,severity=info",
        ],
        tls_protocols=tls_protocols(args.tls_min_version).split(),
        tls12_ciphers=":".join(TLS12_AEAD_SUITES),
        tls13_ciphers=":".join(TLS13_SUITES),
        listen_http=f"{listen_address}{http_port}",
        listen_https=f"{listen_address}{https_port}",
        hsts_max_age=args.hsts_max_age,
        auth_upstream=auth,
        auth_check=f"{auth}/oauth2/auth",
        authz=authz,
        authz_host=args.authz_host or "-",
        authz_userinfo=f"{keycloak or auth}/realms/{args.authz_realm}/protocol/openid-connect/userinfo",
        cert_header=CLIENT_CERT_HEADER,
        verify_header=CLIENT_VERIFY_HEADER,
        apis=routes,
        tenancy=bool(tenant_routes),
        tenant=tenant,
        tenant_subjects=sorted(owners.items()),
        map_bucket=map_hash_bucket_size(list(owners)),
    )
    out = {"nginx.conf": render_checked("nginx.conf", "nginx.conf.j2", "nginx", **context)}
    if tenant is not None:
        out[TENANT_SERVER] = render_checked(TENANT_SERVER, "tenant-server.conf.j2", "nginx", **context)
    return out


def nginx_conf(args: GatewayArgs, **kwargs) -> str:
    """The gateway's nginx.conf alone (see nginx_files)."""
    return nginx_files(args, **kwargs)["nginx.conf"]


def map_hash_bucket_size(keys: Sequence[str]) -> int:
    """NGINX's map hash bucket must hold its longest key (with its pointer and length: NGINX refuses to start with
    "could not build map_hash" otherwise): a power of two, at least the default 64."""
    need = max((len(k.encode()) for k in keys), default=0) + 32
    size = 64
    while size < need:
        size *= 2
    return size


OAUTH2_HEADER = "browser sessions through the établissement's authorization server (PSC-01..05, API-04)."


def authz_issuer(args: GatewayArgs) -> str:
    return f"https://{args.authz_host}/realms/{args.authz_realm}"


def oauth2_proxy_cfg(args: GatewayArgs, *, listen: str = f"0.0.0.0:{OAUTH2_PORT}", paths: dict[str, str] | None = None,
                     endpoints: dict[str, str] | None = None) -> str:
    """oauth2-proxy's TOML configuration, written by a TOML serialiser (every value a TOML string or number).
    Its OIDC provider is the établissement's authorization server (which brokers Pro Santé Connect and checks
    its acr); `endpoints` (login_url, redeem_url, oidc_jwks_url, backend_logout_url) replace discovery when the
    issuer's host is not reachable under its name (the local harness)."""
    p = {"client_secret": "/etc/socle/authz-client", "log": O2_LOG_DIR, **(paths or {})}
    iss = authz_issuer(args)
    discovery: list = [("skip_oidc_discovery", False)]
    if endpoints:
        discovery = [("skip_oidc_discovery", True), *sorted((k, v) for k, v in endpoints.items() if k != "backend_logout_url")]
    logout = (endpoints or {}).get("backend_logout_url") or f"{iss}/protocol/openid-connect/logout?id_token_hint={{id_token}}"
    return toml_document("oauth2-proxy.cfg", [f"Rendered by socle ({args.kit_version}) — {OAUTH2_HEADER}"], [
        ("http_address", listen),
        ("reverse_proxy", True),
        ("provider", "oidc"),
        ("provider_display_name", "Pro Santé Connect"),
        ("oidc_issuer_url", iss),
        ("client_id", args.authz_browser_client),
        "PSC-03: the client secret is read from a mounted Kubernetes Secret, never written here.",
        ("client_secret_file", f"{p['client_secret']}/client-secret"),
        ("scope", "openid"),
        "PSC-02: eidas1 is asked of Pro Santé Connect (forwarded by the authorization server, which checks the acr returned).",
        ("acr_values", PSC_ACR),
        ("code_challenge_method", "S256"),
        "PSC-02: state and nonce are checked.",
        ("insecure_oidc_skip_nonce", False),
        "PSC-04: the IdP's TLS certificate is always verified; ID tokens are checked against the issuer's keys.",
        ("ssl_insecure_skip_verify", False),
        *discovery,
        "API-03: no bearer token is accepted here; API calls carry certificate-bound tokens checked on mTLS routes.",
        ("skip_jwt_bearer_tokens", False),
        ("set_xauthrequest", True),
        ("upstreams", ["static://202"]),
        ("email_domains", ["*"]),
        "the user is the authorization server's subject (brokered PSC identities have no verified e-mail).",
        ("oidc_email_claim", "sub"),
        ("redirect_url", f"https://{args.psc_redirect_host}/oauth2/callback"),
        "API-04: tokens stay server-side; the browser only holds a Secure, HttpOnly cookie of bounded lifetime,",
        "re-validated at the authorization server (refresh) so that its 30-minute idle timeout ends the session.",
        ("cookie_name", "__Host-socle"),
        ("cookie_secure", True),
        ("cookie_httponly", True),
        ("cookie_samesite", "lax"),
        ("cookie_expire", args.session_lifetime),
        ("cookie_refresh", args.session_refresh),
        ("session_store_type", "cookie"),
        ("pass_access_token", False),
        ("pass_authorization_header", False),
        "PSC logout: signing out ends the authorization server's session, which ends the Pro Santé Connect session.",
        ("backend_logout_url", logout),
        "TRACE-01: requests and authentications go to a file that the log forwarder sends to the audit log.",
        ("logging_filename", f"{p['log']}/oauth2-proxy.log"),
        ("logging_max_size", 10),
        ("logging_max_age", 1),
        ("logging_local_time", False),
        ("request_logging", True),
        ("auth_logging", True),
    ])


CRL_URLS_FILE = "crl-urls"


def crl_refresh_script(args: GatewayArgs, *, crl_file: str = "/etc/socle/tls/crl/crl.pem",
                       pid_file: str = "/var/run/socle/nginx.pid") -> str:
    """The CRL refresher: a fixed script; the distribution points come from the file `crl-urls` beside it."""
    return render_checked("crl-refresh.sh", "crl-refresh.sh.j2", "sh", kit_version=args.kit_version,
                          urls_file=CRL_URLS_FILE, crl_file=crl_file, pid_file=pid_file,
                          interval_seconds=args.crl_refresh_seconds)


def crl_urls(args: GatewayArgs) -> str:
    """The distribution points, one URL a line, read by the refresher as data (never as shell code)."""
    return render_checked(CRL_URLS_FILE, "lines.j2", "lines", lines=list(args.crl_urls))


def config_files(args: GatewayArgs) -> dict[str, str]:
    """Every configuration file of the gateway's ConfigMaps, as the pods read them (the render checks each)."""
    files = {**nginx_files(args), "oauth2-proxy.cfg": oauth2_proxy_cfg(args),
             "gateway/rsyslog.conf": forwarder_config(args.kit_version, "gateway", args.audit),
             "oauth2-proxy/rsyslog.conf": forwarder_config(args.kit_version, "oauth2-proxy", args.audit, O2_LOG_FILES)}
    if args.crl_urls:
        files.update({"crl-refresh.sh": crl_refresh_script(args), CRL_URLS_FILE: crl_urls(args)})
    return files


def route_index(routes: Sequence[Route], args: GatewayArgs | None = None) -> str:
    """Machine-readable route list carried as an annotation (GW-01, API-01, GW-03 evidence); the authorization
    server's route is marked with its role (its endpoints authenticate clients themselves)."""
    extra = [{"name": "authz", "host": args.authz_host, "owner": args.authz_owner, "sensitivity": "sensitive",
              "mtls": "optional", "token_validation": False, "role": "authorization-server"}] if args and args.authz_host else []
    return json.dumps(
        [
            {"name": r.name, "host": r.host, "owner": r.owner_group, "sensitivity": r.sensitivity,
             "mtls": r.mtls, "token_validation": r.token_validation}
            for r in routes
        ] + extra,
        sort_keys=True,
        separators=(",", ":"),
    )


class Gateway(pulumi.ComponentResource):
    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:gateway:Gateway", name, None, opts)
        ns = args.namespace
        production = args.replicas >= 2

        # --- nginx -------------------------------------------------------------------------------
        conf = nginx_files(args)
        gw_labels = labels("gateway", "gateway", ns)
        gw_sel = selector("gateway", ns)
        conf_name = hashed_config_map(self, ns, "gateway-nginx", gw_labels, conf, {
            ANN_ROUTES: route_index(args.routes, args),
            ANN_REQUIREMENTS: "TLS-01 TLS-02 TLS-03 API-01 GW-01 GW-03 GW-04 GW-05 GW-06"})
        sidecar, sidecar_volumes = log_forwarder(self, ns, "gateway", gw_labels, args.kit_version, args.syslog_image, args.audit)
        nginx = {
            "name": "nginx",
            "image": args.image,
            "imagePullPolicy": "Always",
            "args": ["nginx", "-c", f"{NGINX_CONF_DIR}/nginx.conf", "-g", "daemon off;"],
            "ports": [
                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                {"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
            ],
            "securityContext": container_security(run_as_user=NGINX_UID),
            "resources": resources_spec("100m", "128Mi", "1", "256Mi"),
            "readinessProbe": {"tcpSocket": {"port": HTTPS_PORT}, "periodSeconds": 10},
            "livenessProbe": {"tcpSocket": {"port": HTTPS_PORT}, "periodSeconds": 20, "failureThreshold": 3},
            "volumeMounts": [
                {"name": "nginx-config", "mountPath": NGINX_CONF_DIR, "readOnly": True},
                {"name": "run", "mountPath": "/var/run/socle"},
                {"name": "cache", "mountPath": "/var/cache/nginx"},
                {"name": "server-tls", "mountPath": "/etc/socle/tls/server", "readOnly": True},
                {"name": "trust-bundle", "mountPath": "/etc/socle/tls/trust", "readOnly": True},
                {"name": "crl", "mountPath": "/etc/socle/tls/crl", "readOnly": True},
            ],
        }
        volumes = [
            config_volume("nginx-config", conf_name),
            empty_dir("run", "1Mi"),
            empty_dir("cache", "256Mi"),
            secret_volume("server-tls", args.server_secret, items=[("tls.crt", "tls.crt"), ("tls.key", "tls.key")]),
            secret_volume("trust-bundle", args.trust_bundle_secret, mode=0o444, items=[("ca.crt", "ca.crt")]),
            *sidecar_volumes,
        ]
        containers = [nginx, sidecar]
        pod_extra: dict = {}
        if args.crl_urls:
            # PKI-02: the CRL lives in an emptyDir seeded from the Secret; a sidecar refreshes it from the
            # distribution points and signals NGINX (same uid, shared process namespace) to reload it.
            refresh_name = hashed_config_map(self, ns, "gateway-crl-refresh", gw_labels,
                                             {"crl-refresh.sh": crl_refresh_script(args), CRL_URLS_FILE: crl_urls(args)}, {ANN_REQUIREMENTS: "PKI-02"})
            volumes += [
                secret_volume("crl-seed", args.crl_secret, mode=0o444, items=[("crl.pem", "crl.pem")]),
                empty_dir("crl", "16Mi"),
                config_volume("crl-refresh", refresh_name),
                empty_dir("crl-tmp", "16Mi"),
            ]
            pod_extra = {
                "shareProcessNamespace": True,
                "initContainers": [{
                    "name": "crl-seed",
                    "image": args.tools_image,
                    "imagePullPolicy": "Always",
                    "command": ["cp", "/etc/socle/tls/crl-seed/crl.pem", "/etc/socle/tls/crl/crl.pem"],
                    "securityContext": container_security(run_as_user=NGINX_UID),
                    "resources": resources_spec("10m", "16Mi", "100m", "32Mi"),
                    "volumeMounts": [
                        {"name": "crl-seed", "mountPath": "/etc/socle/tls/crl-seed", "readOnly": True},
                        {"name": "crl", "mountPath": "/etc/socle/tls/crl"},
                    ],
                }],
            }
            containers.append({
                "name": "crl-refresh",
                "image": args.tools_image,
                "imagePullPolicy": "Always",
                "command": ["sh", "/etc/socle/crl-refresh/crl-refresh.sh"],
                "securityContext": container_security(run_as_user=NGINX_UID),
                "resources": resources_spec("10m", "16Mi", "100m", "64Mi"),
                "volumeMounts": [
                    {"name": "crl-refresh", "mountPath": "/etc/socle/crl-refresh", "readOnly": True},
                    {"name": "crl", "mountPath": "/etc/socle/tls/crl"},
                    {"name": "run", "mountPath": "/var/run/socle", "readOnly": True},
                    {"name": "crl-tmp", "mountPath": "/tmp"},
                ],
            })
        else:
            volumes.append(secret_volume("crl", args.crl_secret, mode=0o444, items=[("crl.pem", "crl.pem")]))
        pod_spec = {
            **pod_identity(args.service_account, fs_group=NGINX_UID),
            **pod_extra,
            "containers": containers,
            "volumes": volumes,
            "topologySpreadConstraints": zone_spread(gw_sel),
        }
        self.deployment = k8s.apps.v1.Deployment(
            f"{ns}-gateway",
            metadata={"name": "gateway", "namespace": ns, "labels": gw_labels},
            spec={
                "replicas": args.replicas,
                "selector": {"matchLabels": gw_sel},
                "template": {"metadata": {"labels": gw_labels}, "spec": pod_spec},
            },
            opts=child(self),
        )
        service(self, ns, "gateway", gw_labels, gw_sel, list(GATEWAY_SERVICE_PORTS),
                args.service_type, {ANN_REQUIREMENTS: "K8S-07 TLS-03"})

        # --- oauth2-proxy (Pro Santé Connect) -----------------------------------------------------
        cookie = random.RandomPassword(f"{ns}-oauth2-cookie-secret", length=32, special=False, opts=child(self))
        cookie_secret_name = "oauth2-proxy-cookie"
        k8s.core.v1.Secret(
            f"{ns}-oauth2-cookie",
            metadata={"name": cookie_secret_name, "namespace": ns, "labels": labels("gateway", "oauth2-proxy", ns)},
            type="Opaque",
            string_data={"cookie-secret": cookie.result},
            opts=child(self),
        )
        o2 = {"oauth2-proxy.cfg": oauth2_proxy_cfg(args)}
        o2_labels = labels("gateway", "oauth2-proxy", ns)
        o2_sel = selector("oauth2-proxy", ns)
        o2_name = hashed_config_map(self, ns, "oauth2-proxy", o2_labels, o2, {
            ANN_REQUIREMENTS: "PSC-01 PSC-02 PSC-03 PSC-04 PSC-05 API-03 API-04"})
        o2_container = {
            "name": "oauth2-proxy",
            "image": args.oauth2_proxy_image,
            "imagePullPolicy": "Always",
            "args": ["--config=/etc/socle/oauth2-proxy/oauth2-proxy.cfg"],
            "env": [secret_env("OAUTH2_PROXY_COOKIE_SECRET", cookie_secret_name, "cookie-secret")],
            "ports": [{"name": "http", "containerPort": OAUTH2_PORT, "protocol": "TCP"}],
            "securityContext": container_security(run_as_user=O2_UID),
            "resources": resources_spec("50m", "64Mi", "500m", "128Mi"),
            "readinessProbe": {"httpGet": {"path": "/ready", "port": OAUTH2_PORT}, "periodSeconds": 10},
            "livenessProbe": {"httpGet": {"path": "/ping", "port": OAUTH2_PORT}, "periodSeconds": 20},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/socle/oauth2-proxy", "readOnly": True},
                {"name": "authz-client", "mountPath": "/etc/socle/authz-client", "readOnly": True},
                {"name": "logs", "mountPath": O2_LOG_DIR},
            ],
        }
        # TRACE-01: the forwarder runs as oauth2-proxy's uid to read its 0600 log file.
        o2_sidecar, o2_sidecar_volumes = log_forwarder(
            self, ns, "oauth2-proxy", o2_labels, args.kit_version, args.syslog_image, args.audit,
            files=O2_LOG_FILES,
            extra_mounts=[{"name": "logs", "mountPath": O2_LOG_DIR, "readOnly": True}], run_as_user=O2_UID)
        k8s.apps.v1.Deployment(
            f"{ns}-oauth2-proxy",
            metadata={"name": "oauth2-proxy", "namespace": ns, "labels": o2_labels},
            spec={
                "replicas": args.replicas,
                "selector": {"matchLabels": o2_sel},
                "template": {
                    "metadata": {"labels": o2_labels},
                    "spec": {
                        **pod_identity(args.oauth2_service_account, fs_group=O2_UID),
                        "containers": [o2_container, o2_sidecar],
                        "volumes": [
                            config_volume("config", o2_name),
                            secret_volume("authz-client", args.authz_browser_secret, items=[("client-secret", "client-secret")]),
                            empty_dir("logs", "256Mi"),
                            *o2_sidecar_volumes,
                        ],
                        "topologySpreadConstraints": zone_spread(o2_sel),
                    },
                },
            },
            opts=child(self),
        )
        service(self, ns, "oauth2-proxy", o2_labels, o2_sel, [("http", OAUTH2_PORT, "http")])
        if production:
            pdb("gateway", ns, gw_sel, gw_labels, self)
            pdb("oauth2-proxy", ns, o2_sel, o2_labels, self)
        self.register_outputs({"deployment": self.deployment.metadata["name"]})

"""APIs and gateway: sensitivity and mTLS, tokens, sessions, owners, authentication, hosts, health routes,
no body logging, limits (API-01..04, GW-01..06)."""
from __future__ import annotations

import json
import re
from typing import Iterator
from urllib.parse import urlparse

from .. import configs
from ..evidence import Evidence
from ..model import Context, Control, Finding, judge, not_applicable
from . import registrar
from ._common import (
    Parsed,
    api_servers,
    each,
    hapi_files,
    location_for,
    nginx_files,
    oauth2_files,
    oauth2_services,
    parsed,
    proxied_service,
    proxy_locations,
    routes,
    tls_directive,
)

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "API")
API = ("doctrine",)
SENSITIVITIES = ("public", "restricted", "sensitive")


# --- the établissement's authorization server (Keycloak realm file, socle/components/authz.py) ----------------------

BROWSER_CLIENT = "oauth2-proxy"
PSC_ALIAS = "psc"
CERT_HEADER = "ssl-client-cert"
VERIFY_HEADER = "ssl-client-verify"
ACR_DENY = "deny-access-authenticator"


def _realm(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise configs.ConfigError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not data.get("realm"):
        raise configs.ConfigError("no realm")
    return data


def realm_files(ev: Evidence) -> list[Parsed | Finding]:
    """The authorization server's realm files (imported by Keycloak at start)."""
    return list(parsed(ev, "realm.json", _realm, blocks=("authz",)))


def realms(ev: Evidence) -> list[Parsed]:
    return [p for p in realm_files(ev) if isinstance(p, Parsed)]


def api_clients(realm: dict) -> list[dict]:
    """The realm's API clients: every client but the browser sessions' and Keycloak's own management client."""
    return [c for c in realm.get("clients") or [] if c.get("clientId") not in (BROWSER_CLIENT, "realm-management")
            and not c.get("bearerOnly")]


def psc_idp(realm: dict) -> dict | None:
    return next((i for i in realm.get("identityProviders") or [] if i.get("alias") == PSC_ALIAS), None)


def exchange_clients(realm: dict) -> tuple[list[str] | None, str]:
    """The clients the realm lets exchange a PSC token (token-exchange:v1 permission on the PSC identity provider);
    None with the reason when no such permission is configured."""
    idp = psc_idp(realm)
    if idp is None or not idp.get("internalId"):
        return None, "no Pro Santé Connect identity provider (with a fixed internal id)"
    mgmt = next((c for c in realm.get("clients") or [] if c.get("clientId") == "realm-management"), {})
    settings = mgmt.get("authorizationSettings") or {}
    resource = f"idp.resource.{idp['internalId']}"
    if not any(r.get("name") == resource for r in settings.get("resources") or []):
        return None, "no token-exchange permission on the PSC identity provider"
    policies = {p.get("name"): p for p in settings.get("policies") or []}
    perm = policies.get(f"token-exchange.permission.idp.{idp['internalId']}")
    if perm is None:
        return None, "no token-exchange permission on the PSC identity provider"
    clients: list[str] = []
    for name in json.loads((perm.get("config") or {}).get("applyPolicies") or "[]"):
        pol = policies.get(name) or {}
        if pol.get("type") == "client" and pol.get("logic", "POSITIVE") == "POSITIVE":
            clients += json.loads((pol.get("config") or {}).get("clients") or "[]")
    return clients, ""


def _index(p: Parsed) -> list[dict]:
    """The route index the gateway declares next to its nginx.conf (none: every server lacks its labels)."""
    return routes(p.file.obj) or []


def _by_host(p: Parsed) -> dict[str, configs.Directive]:
    return {n: s for s in api_servers(p.data) for n in configs.server_names(s)}


def _business_locations(server: configs.Directive) -> list[configs.Directive]:
    """Proxying locations of an API, the login flow of oauth2-proxy (/oauth2/...) aside."""
    return [loc for loc in proxy_locations(server) if not (loc.args and loc.args[-1].startswith("/oauth2"))
            and loc.first("internal") is None]  # an internal location (a sub-request's) serves no client


def _authenticated(server: configs.Directive, loc: configs.Directive) -> tuple[bool, bool]:
    """(client certificate required, token checked) for one proxying location."""
    mtls = server.value("ssl_verify_client") == "on"
    token = loc.first("auth_request") is not None or server.first("auth_request") is not None
    if loc.value("auth_request") == "off":
        token = False
    return mtls, token


@control("API-01", "Sensitive health-data APIs require mutual TLS, client certificates verified against a trust bundle Secret",
         "critical",
         API + ("pgssi-s",), ("ci-sis-transport",),
         "Give every API a sensitivity; sensitive APIs need mtls (gateway.apis[].mtls) with the health PKI bundle.")
def api_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        index, hosts = _index(p), _by_host(p)
        declared = {r.get("host"): r for r in index}
        problems = [f"server {h} has no route entry, hence no sensitivity label" for h in sorted(hosts) if h not in declared]
        for r in index:
            sens = r.get("sensitivity")
            server = hosts.get(r.get("host", ""))
            if sens not in SENSITIVITIES:
                problems.append(f"route {r.get('name')}: sensitivity {sens!r} is not one of {', '.join(SENSITIVITIES)}")
            elif server is None:
                problems.append(f"route {r.get('name')}: no server for host {r.get('host')}")
            elif r.get("role") == "authorization-server":
                # browsers log in there without a certificate; API clients authenticate with theirs (API-02)
                problems += client_certificates(p, server, ("on", "optional"), f"authorization server {r.get('host')}",
                                                "does not verify client certificates")
            elif sens == "sensitive":
                problems += client_certificates(p, server, ("on",), f"sensitive route {r.get('name')}",
                                                f"({r.get('host')}) does not require client certificates")
        return judge(p.file.obj, problems, "every route labelled; sensitive routes require client certificates verified "
                     "against a trust bundle Secret", "nginx.conf")

    def client_certificates(p: Parsed, server, modes: tuple[str, ...], what: str, absent: str) -> list[str]:
        """A server block verifies client certificates (ssl_verify_client in `modes`) against CAs from a Secret."""
        ca = tls_directive(server, p.data.first("http"), "ssl_client_certificate")
        if server.value("ssl_verify_client") not in modes or not ca:
            return [f"{what} {absent}"]
        ok, why = ev.secret_backed(p.file.obj, ca)
        return [] if ok else [f"{what} verifies client certificates against CAs not from a Secret ({why})"]

    yield from each(nginx_files(ev), gateway)


@control("API-02", "Organisation clients authenticate to the authorization server with mTLS (RFC 8705); one subject, one client",
         "high", API, ("ci-sis-transport",),
         "Register each organisation client in authz.api_clients with the subject DN of its IGC-Santé certificate.")
def api_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def realm(p: Parsed) -> Finding:
        clients = api_clients(p.data)
        if not clients:
            return not_applicable(p.file.obj, "no API client registered at the authorization server", "realm.json")
        problems = []
        subjects: dict[str, list[str]] = {}
        for c in clients:
            cid, attrs = c.get("clientId", "?"), c.get("attributes") or {}
            dn = str(attrs.get("x509.subjectdn") or "")
            if c.get("clientAuthenticatorType") != "client-x509":
                problems.append(f"client {cid} authenticates with {c.get('clientAuthenticatorType') or 'a secret'}, "
                                "not its certificate (tls_client_auth)")
            if not dn:
                problems.append(f"client {cid} names no certificate subject (x509.subjectdn)")
            elif str(attrs.get("x509.allow.regex.pattern.comparison", "true")) != "false":
                problems.append(f"client {cid}: its subject is a pattern, not one DN (x509.allow.regex.pattern.comparison)")
            if not attrs.get("x509.casubjectdn"):
                problems.append(f"client {cid} names no issuing CA (x509.casubjectdn)")
            if str(attrs.get("tls.client.certificate.bound.access.tokens")) != "true":
                problems.append(f"client {cid}: access tokens not bound to the certificate "
                                "(tls.client.certificate.bound.access.tokens)")
            if c.get("publicClient") or c.get("directAccessGrantsEnabled") or c.get("standardFlowEnabled") \
                    or c.get("serviceAccountsEnabled") or c.get("implicitFlowEnabled"):
                problems.append(f"client {cid} may obtain tokens otherwise than by exchanging a PSC token")
            if dn:
                subjects.setdefault(dn.lower(), []).append(cid)
        problems += [f"clients {', '.join(ids)} share the certificate subject {dn}" for dn, ids in subjects.items() if len(ids) > 1]
        return judge(p.file.obj, problems, f"{len(clients)} API client(s), each identified by one certificate subject, "
                     "tls_client_auth, certificate-bound tokens", "realm.json")

    yield from each(realm_files(ev), realm)


@control("API-03", "Every token validated at the gateway (signature or introspection)", "critical", API + ("psc",),
         ("ci-sis-transport", "psc"),
         "Keep token_validation on; API routes (mTLS) accept only certificate-bound tokens of the établissement's "
         "authorization server (obtained by exchanging a PSC token), browser routes an oauth2-proxy session.")
def api_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    validators = oauth2_services(ev)
    proxies = {p.file.obj["metadata"].get("namespace"): p for p in oauth2_files(ev) if isinstance(p, Parsed)}
    servers = {p.file.obj["metadata"].get("namespace"): p for p in realms(ev)}

    def gateway(p: Parsed) -> Finding:
        hosts = _by_host(p)
        ns = p.file.obj["metadata"].get("namespace", "")
        token_routes = [r for r in _index(p) if r.get("token_validation")]
        if not token_routes:
            return not_applicable(p.file.obj, "no route validates tokens (mTLS-only routes)", "nginx.conf")
        problems = []
        for r in token_routes:
            server = hosts.get(r.get("host", ""))
            if server is None:
                problems.append(f"route {r.get('name')}: no server for host {r.get('host')}")
                continue
            mtls = server.value("ssl_verify_client") == "on"
            for loc in _business_locations(server):
                where = f"route {r.get('name')} location {' '.join(loc.args)}"
                if not _authenticated(server, loc)[1]:
                    problems.append(f"{where} has no auth_request")
                    continue
                uri = loc.value("auth_request") or server.value("auth_request") or ""
                target = location_for(server, uri)
                svc = proxied_service(target, ns)
                if not mtls:
                    if svc not in validators:
                        problems.append(f"{where}: the session check {uri} is not passed to oauth2-proxy "
                                        f"({'no location serves it' if target is None else 'its location does not proxy to an oauth2-proxy Service'})")
                    continue
                # API route: Keycloak's userinfo endpoint verifies signature, expiry and the cnf binding (RFC 8705)
                realm = servers.get(svc[1]) if svc else None
                path = urlparse(target.value("proxy_pass") or "").path if target is not None else ""
                headers = {(d.args[0].lower() if d.args else ""): d.args[1:] for d in (target.all("proxy_set_header") if target else [])}
                if realm is None:
                    problems.append(f"{where}: the token check {uri} does not reach the établissement's authorization server")
                    continue
                if path != f"/realms/{realm.data['realm']}/protocol/openid-connect/userinfo":
                    problems.append(f"{where}: the token check calls {path or '(nothing)'}, not the userinfo endpoint of "
                                    f"realm {realm.data['realm']}")
                if headers.get(CERT_HEADER) != ["$ssl_client_escaped_cert"] or headers.get(VERIFY_HEADER) != ["$ssl_client_verify"]:
                    problems.append(f"{where}: the client certificate is not handed to the token check: the binding "
                                    "(cnf) cannot be verified")
                clients, why = exchange_clients(realm.data)
                if clients is None:
                    problems.append(f"{where}: the authorization server does not exchange PSC tokens (RFC 8693): {why}")
                unbound = [c.get("clientId") for c in api_clients(realm.data)
                           if str((c.get("attributes") or {}).get("tls.client.certificate.bound.access.tokens")) != "true"]
                if unbound:
                    problems.append(f"{where}: tokens of client(s) {', '.join(map(str, unbound))} are not certificate-bound")
        proxy = proxies.get(ns)
        if proxy is not None and proxy.data.get("skip_jwt_bearer_tokens") is True:
            problems.append("oauth2-proxy accepts bearer tokens (skip_jwt_bearer_tokens): tokens bound to no certificate")
        return judge(p.file.obj, problems, "API routes: certificate-bound tokens of the établissement's authorization "
                     "server checked at its userinfo endpoint; browser routes: oauth2-proxy sessions", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _seconds(value: str) -> int | None:
    m = _DURATION.match(value or "")
    if not m or not any(m.groups()):
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


@control("API-04", "Tokens stay server-side; browser sessions use Secure, HttpOnly cookies with a bounded lifetime",
         "high", API + ("psc",), ("ci-sis-transport", "psc"),
         "Keep cookie_secure/cookie_httponly on, pass_access_token off, a session of at most 4 h re-validated at the "
         "authorization server (cookie_refresh), whose sessions end after 30 min idle and 4 h.")
def api_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    idle = [int(r.data.get("ssoSessionIdleTimeout") or 0) for r in realms(ev)]

    def proxy(p: Parsed) -> Finding:
        c = p.data
        life = _seconds(str(c.get("cookie_expire", "168h")))
        refresh = _seconds(str(c.get("cookie_refresh", "0")))
        problems = [msg for bad, msg in (
            (c.get("cookie_secure", True) is not True, "cookie_secure is off"),
            (c.get("cookie_httponly", True) is not True, "cookie_httponly is off"),
            (any(c.get(k) is True for k in ("pass_access_token", "pass_authorization_header", "set_authorization_header")),
             "tokens are passed on (pass_access_token / pass_authorization_header / set_authorization_header)"),
            (life is None or life == 0 or life > 4 * 3600,
             f"cookie_expire {c.get('cookie_expire', '168h (default)')} is not a lifetime of at most 4h"),
            (not refresh or (bool(idle) and refresh >= min(idle)),
             f"cookie_refresh {c.get('cookie_refresh', '0')}: the session is not re-validated at the authorization server "
             "within its idle timeout"),
            (not idle, "no authorization server realm: nothing ends an idle session"),
        ) if bad]
        return judge(p.file.obj, problems, f"Secure HttpOnly session cookie, lifetime {c.get('cookie_expire')}, "
                     f"re-validated every {c.get('cookie_refresh')}", "oauth2-proxy.cfg")

    def realm(p: Parsed) -> Finding:
        d = p.data
        problems = [msg for bad, msg in (
            (not 0 < int(d.get("ssoSessionIdleTimeout") or 0) <= 1800,
             f"ssoSessionIdleTimeout {d.get('ssoSessionIdleTimeout')}: sessions not ended after 30 min idle"),
            (not 0 < int(d.get("ssoSessionMaxLifespan") or 0) <= 4 * 3600,
             f"ssoSessionMaxLifespan {d.get('ssoSessionMaxLifespan')}: sessions longer than 4 h"),
            (not 3600 <= int(d.get("accessTokenLifespan") or 0) <= 4 * 3600,
             f"accessTokenLifespan {d.get('accessTokenLifespan')}: API tokens must live 1 to 4 h"),
        ) if bad]
        return judge(p.file.obj, problems, f"sessions end after {d.get('ssoSessionIdleTimeout')} s idle and "
                     f"{d.get('ssoSessionMaxLifespan')} s; tokens live {d.get('accessTokenLifespan')} s", "realm.json")

    yield from each(oauth2_files(ev), proxy)
    yield from each(realm_files(ev), realm)


@control("GW-01", "Each exposed API has an owner group", "medium", API, ("gravitee",),
         "Set gateway.apis[].owner_group.")
def gw_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        index = _index(p)
        declared = {r.get("host") for r in index}
        problems = [f"server {h} has no route entry (no owner)" for h in sorted(_by_host(p)) if h not in declared]
        problems += [f"route {r.get('name')} has no owner" for r in index if not str(r.get("owner") or "").strip()]
        return judge(p.file.obj, problems, "every API names its owner group", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


@control("GW-02", "No business API without authentication", "critical", API, ("gravitee",),
         "Every route needs mtls or token_validation.")
def gw_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    servers = {r.file.obj["metadata"].get("namespace") for r in realms(ev)}

    def gateway(p: Parsed) -> Finding:
        ns = p.file.obj["metadata"].get("namespace", "")
        roles = {r.get("host"): r.get("role") for r in _index(p)}

        def own_authentication(s: configs.Directive, loc: configs.Directive) -> bool:
            # the authorization server authenticates its clients itself (login, certificate, exchange)
            svc = proxied_service(loc, ns)
            return roles.get(s.value("server_name")) == "authorization-server" and svc is not None and svc[1] in servers

        problems = [f"{s.value('server_name')} location {' '.join(loc.args)} proxies without authentication"
                    for s in api_servers(p.data) for loc in _business_locations(s)
                    if not any(_authenticated(s, loc)) and not own_authentication(s, loc)]
        return judge(p.file.obj, problems, "every proxied location requires a client certificate or a token", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


@control("GW-03", "Each API is served on its own host name", "medium", API, ("gravitee",),
         "Give each API its own host; keep the default server rejecting unknown names.")
def gw_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        problems = []
        names = [n for s in api_servers(p.data) for n in configs.server_names(s)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"host names served twice: {', '.join(dup)}")
        hosts = [r.get("host") for r in _index(p)]
        shared = sorted({str(h) for h in hosts if hosts.count(h) > 1})
        if shared:
            problems.append(f"APIs sharing a host: {', '.join(shared)}")
        multi = [str(s.value("server_name")) for s in api_servers(p.data) if len(configs.server_names(s)) > 1]
        if multi:
            problems.append(f"servers answering several names: {', '.join(multi)}")
        default = [s for s in configs.nginx_servers(p.data) if configs.listens_tls(s)
                   and any("default_server" in d.args for d in s.all("listen"))]
        if not default or default[0].value("ssl_reject_handshake") != "on":
            problems.append("the default TLS server does not reject unknown host names (ssl_reject_handshake on)")
        return judge(p.file.obj, problems, "one host per API; unknown names rejected", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


@control("GW-04", "Backends probed; an external health route is GET-only, needs no token, limited to its path", "medium",
         API, ("gravitee",),
         "Keep the health route an exact-match GET-only location; give every serving container a readiness probe.")
def gw_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        problems = []
        for s in api_servers(p.data):
            for loc in s.all("location"):
                if "health" not in " ".join(loc.args):
                    continue
                where = f"{s.value('server_name')} location {' '.join(loc.args)}"
                lim = loc.first("limit_except")
                if loc.args[0] != "=":
                    problems.append(f"{where}: not an exact-match location, it also serves the paths below it")
                if lim is None or lim.args != ["GET"] or not any(d.name == "deny" and d.args == ["all"] for d in lim.children):
                    problems.append(f"{where}: methods other than GET allowed")
                token = loc.value("auth_request") or s.value("auth_request")
                if token not in (None, "off"):
                    problems.append(f"{where}: asks for a token (auth_request {token})")
        return judge(p.file.obj, problems, "health routes exact-match, GET-only, no token", "nginx.conf")

    yield from each(nginx_files(ev), gateway)
    for w in ev.workloads():
        serving = [c for c in w.containers(init=False) if c.get("ports")]
        missing = [str(c.get("name")) for c in serving if not c.get("readinessProbe")]
        if serving:
            yield judge(w.obj, [f"container {', '.join(missing)} serves a port without readiness probe"] if missing else [],
                        "serving containers have readiness probes")


_BODY_VARS = re.compile(r"\$(request_body|request_body_file|response_body|resp_body|upstream_http_\w*body)\b")


@control("GW-05", "No logging of request or response bodies", "high", API + ("pgssi-s",), ("gravitee",),
         "Remove body variables from log formats ($request_body, HAPI ${requestBodyFhir}).")
def gw_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        problems = [f"log_format {d.args[0]} logs {', '.join(hits)}" for d in p.data.walk() if d.name == "log_format"
                    if (hits := sorted({m.group(0) for a in d.args for m in _BODY_VARS.finditer(a)}))]
        return judge(p.file.obj, problems, "access log formats carry no body", "nginx.conf")

    def hapi(p: Parsed) -> Finding:
        logger = ((p.data.get("hapi") or {}).get("fhir") or {}).get("logger") or {}
        text = " ".join(str(logger.get(k, "")) for k in ("format", "error_format"))
        hits = sorted(set(re.findall(r"\$\{(\w*[Bb]ody\w*)\}", text)))
        return judge(p.file.obj, [f"HAPI access log logs {', '.join(hits)}"] if hits else [],
                     "FHIR access log carries no body", "application.yaml")

    yield from each(nginx_files(ev), gateway)
    yield from each(hapi_files(ev), hapi)


_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")


@control("GW-06", "Rate limiting and request body size limits on every route", "medium", API, ("socle", "gravitee"),
         "Set gateway.apis[].rate_per_second, burst and max_body.")
def gw_06(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def gateway(p: Parsed) -> Finding:
        http = p.data.first("http")
        zones = {a.split("=", 1)[1].split(":", 1)[0] for d in (http.all("limit_req_zone") if http else [])
                 for a in d.args if a.startswith("zone=")}
        problems = []
        for s in api_servers(p.data):
            name = s.value("server_name")
            server_size = s.value("client_max_body_size") or (http.value("client_max_body_size") if http else None)
            for where, size in [(name, server_size)] + [(f"{name} location {' '.join(loc.args)}", loc.value("client_max_body_size"))
                                                         for loc in _business_locations(s) if loc.first("client_max_body_size")]:
                m = _SIZE.match(size or "")
                if not m or int(m.group(1)) == 0:  # 0, 00, ...: NGINX reads any zero as "no limit"
                    problems.append(f"{where}: no request body limit (client_max_body_size {size or 'unset'})")
            for loc in _business_locations(s):
                lim = loc.first("limit_req") or s.first("limit_req") or (http.first("limit_req") if http else None)
                zone = next((a.split("=", 1)[1] for a in (lim.args if lim else []) if a.startswith("zone=")), None)
                if zone is None:
                    problems.append(f"{name} location {' '.join(loc.args)}: no rate limit")
                elif zone not in zones:
                    problems.append(f"{name} location {' '.join(loc.args)}: rate limit zone {zone} not defined")
        return judge(p.file.obj, problems, "every route rate-limited with a body size limit", "nginx.conf")

    yield from each(nginx_files(ev), gateway)

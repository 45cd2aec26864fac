"""APIs and gateway: sensitivity and mTLS, tokens, sessions, owners, authentication, hosts, health routes,
no body logging, limits (API-01..04, GW-01..06)."""
from __future__ import annotations

import re
from typing import Iterator

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
    proxied_service,
    proxy_locations,
    routes,
    tls_directive,
)

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "API")
API = ("doctrine",)
SENSITIVITIES = ("public", "restricted", "sensitive")


def _index(p: Parsed) -> list[dict]:
    """The route index the gateway declares next to its nginx.conf (none: every server lacks its labels)."""
    return routes(p.file.obj) or []


def _by_host(p: Parsed) -> dict[str, configs.Directive]:
    return {n: s for s in api_servers(p.data) for n in configs.server_names(s)}


def _business_locations(server: configs.Directive) -> list[configs.Directive]:
    """Proxying locations of an API, the login flow of oauth2-proxy (/oauth2/...) aside."""
    return [loc for loc in proxy_locations(server) if not (loc.args and loc.args[-1].startswith("/oauth2"))]


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
            elif sens == "sensitive":
                ca = tls_directive(server, p.data.first("http"), "ssl_client_certificate")
                if server.value("ssl_verify_client") != "on" or not ca:
                    problems.append(f"sensitive route {r.get('name')} ({r.get('host')}) does not require client certificates")
                else:
                    ok, why = ev.secret_backed(p.file.obj, ca)
                    if not ok:
                        problems.append(f"sensitive route {r.get('name')} verifies client certificates against CAs not "
                                        f"from a Secret ({why})")
        return judge(p.file.obj, problems, "every route labelled; sensitive routes require client certificates verified "
                     "against a trust bundle Secret", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


manual("API-02", "Organisation clients authenticate to the authorization server with mTLS (RFC 8705); one subject, one client",
       "high", API, ("ci-sis-transport",),
       "Register each organisation client with its certificate subject at the authorization server.",
       "The authorization server is outside the kit: record its client registry (certificate subject → client id) "
       "and a test showing a foreign certificate refused.")


@control("API-03", "Every token validated at the gateway (signature or introspection)", "critical", API + ("psc",),
         ("ci-sis-transport", "psc"),
         "Keep token_validation on for routes called for professionals; the gateway checks tokens with oauth2-proxy.")
def api_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    proxies = {p.file.obj["metadata"].get("namespace"): p for p in oauth2_files(ev) if isinstance(p, Parsed)}
    validators = oauth2_services(ev)

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
            for loc in _business_locations(server):
                where = f"route {r.get('name')} location {' '.join(loc.args)}"
                if not _authenticated(server, loc)[1]:
                    problems.append(f"{where} has no auth_request")
                    continue
                uri = loc.value("auth_request") or server.value("auth_request") or ""
                target = location_for(server, uri)
                if proxied_service(target, ns) not in validators:
                    problems.append(f"{where}: the token check {uri} is not passed to oauth2-proxy "
                                    f"({'no location serves it' if target is None else 'its location does not proxy to an oauth2-proxy Service'})")
        proxy = proxies.get(p.file.obj["metadata"].get("namespace"))
        if proxy is None:
            problems.append("no oauth2-proxy configuration in the gateway namespace")
        else:
            if not proxy.data.get("oidc_issuer_url"):
                problems.append("oauth2-proxy has no oidc_issuer_url")
            if proxy.data.get("skip_jwt_bearer_tokens") is not True:
                problems.append("oauth2-proxy does not validate bearer tokens (skip_jwt_bearer_tokens)")
        return judge(p.file.obj, problems, "tokens validated by auth_request against the issuer's keys", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _seconds(value: str) -> int | None:
    m = _DURATION.match(value or "")
    if not m or not any(m.groups()):
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


@control("API-04", "Tokens stay server-side; browser sessions use Secure, HttpOnly cookies with a bounded lifetime",
         "high", API + ("psc",), ("ci-sis-transport",),
         "Keep cookie_secure/cookie_httponly on, pass_access_token off and a session lifetime of at most 24 h.")
def api_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        c = p.data
        life = _seconds(str(c.get("cookie_expire", "168h")))
        problems = [msg for bad, msg in (
            (c.get("cookie_secure", True) is not True, "cookie_secure is off"),
            (c.get("cookie_httponly", True) is not True, "cookie_httponly is off"),
            (any(c.get(k) is True for k in ("pass_access_token", "pass_authorization_header", "set_authorization_header")),
             "tokens are passed on (pass_access_token / pass_authorization_header / set_authorization_header)"),
            (life is None or life == 0 or life > 24 * 3600,
             f"cookie_expire {c.get('cookie_expire', '168h (default)')} is not a lifetime of at most 24h"),
        ) if bad]
        return judge(p.file.obj, problems, f"Secure HttpOnly session cookie, lifetime {c.get('cookie_expire')}", "oauth2-proxy.cfg")

    yield from each(oauth2_files(ev), proxy)


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
    def gateway(p: Parsed) -> Finding:
        problems = [f"{s.value('server_name')} location {' '.join(loc.args)} proxies without authentication"
                    for s in api_servers(p.data) for loc in _business_locations(s) if not any(_authenticated(s, loc))]
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

"""The CI-SIS token chain run for real: Keycloak (the établissement's authorization server, with the Pro Santé
Connect double as a second realm), oauth2-proxy and NGINX, each on the configuration the kit renders for the
stack (paths, ports and the PSC endpoints mapped to 127.0.0.1, as the other daemons of the harness), then the
probes of API-02/03/04 and PSC-02/03:

- a PSC token presented directly to an API is refused;
- after the RFC 8693 exchange the API token is bound to the client certificate (RFC 8705): it works with that
  certificate, and is refused with another one of the same PKI;
- a PSC token whose `acr` is below eidas1 is refused, at the exchange and at the browser login;
- a browser session ends after the authorization server's idle timeout; logout reaches the PSC double;
- oauth2-proxy checks its rendered configuration itself (`--config-test`).
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

from socle.components.authz import (
    ENV_BROWSER_CLIENT_SECRET,
    ENV_PSC_CLIENT_SECRET,
    FEATURES,
    PSC_ALIAS,
    ApiClient,
    AuthzArgs,
    PscEndpoints,
    realm_json,
    start_options,
)
from socle.components.gateway import GatewayArgs, nginx_files, oauth2_proxy_cfg

from . import keycloak as kc
from .harness import LOCAL, HarnessError, _BackendHandler, _Double, free_port, require, run, terminate, wait_port
from .pki import TestPki
from .probes import Probe, https, probe

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ADMIN_USER = "socle-verify-admin"


def oauth2_proxy_binary() -> str | None:
    """The oauth2-proxy built by `python -m socle.cluster.build --group oauth2-proxy` (the folder of the current pin
    when go can tell, else the newest built), else one on PATH."""
    from socle.cluster.build import GROUPS, cache_root, group_key
    found = sorted(cache_root().glob("oauth2-proxy-*/bin/oauth2-proxy"), key=lambda p: p.stat().st_mtime)
    try:
        exact = cache_root() / f"oauth2-proxy-{group_key(GROUPS['oauth2-proxy'])}" / "bin" / "oauth2-proxy"
        if exact.exists():
            return str(exact)
    except Exception:  # noqa: BLE001 - no go toolchain to compute the key: take what was built
        pass
    if found:
        return str(found[-1])
    return shutil.which("oauth2-proxy")


def missing() -> list[str]:
    """What is missing to run the chain, each with the command that gets it."""
    out = []
    if not (kc.cache_dir() / f"keycloak-quarkus-dist-{kc.KEYCLOAK_VERSION}.zip").exists() and not any(
            kc.cache_dir().glob(f"keycloak-{kc.KEYCLOAK_VERSION}-*/.built")):
        out.append(f"Keycloak {kc.KEYCLOAK_VERSION} (run `{kc.get_command()}`)")
    if kc.java_home() is None and shutil.which("java") is None:
        out.append("a Java runtime (17 or later) for Keycloak")
    if oauth2_proxy_binary() is None:
        out.append("oauth2-proxy (run `python -m socle.cluster.build --group oauth2-proxy`)")
    if shutil.which("nginx") is None and not os.access("/usr/sbin/nginx", os.X_OK):
        out.append("nginx (Debian package nginx)")
    return out


def _jwt_claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Browser:
    """A minimal browser: follows redirects across the stack's host names (all served by the local NGINX, or
    Keycloak's own port for the PSC double's back-channel-free pages), keeps cookies per host, submits forms."""

    def __init__(self, chain: "AuthzChain"):
        self.chain = chain
        self.cookies: dict[tuple[str, str, str], str] = {}  # (host, path, name) -> value

    def _cookie_header(self, host: str, path: str) -> str:
        # the longest path first, as browsers send them (both realms share the host, their cookies differ by path)
        found = sorted(((p, n, v) for (h, p, n), v in self.cookies.items() if h == host and path.startswith(p)),
                       key=lambda c: -len(c[0]))
        return "; ".join(f"{n}={v}" for _, n, v in found)

    def _store(self, host: str, path: str, headers: list[tuple[str, str]]) -> None:
        for k, v in headers:
            if k.lower() != "set-cookie":
                continue
            c = SimpleCookie()
            c.load(v)
            for name, morsel in c.items():
                key = (host, morsel["path"] or path.rsplit("/", 1)[0] or "/", name)
                if morsel.value == "" or morsel["max-age"] in ("0", "-1") or "1970" in (morsel["expires"] or ""):
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = morsel.value

    def request(self, url: str, method: str = "GET", form: dict | None = None) -> tuple[int, dict, bytes, str]:
        u = urllib.parse.urlsplit(url)
        host = u.hostname or ""
        path = u.path + (f"?{u.query}" if u.query else "")
        body = urllib.parse.urlencode(form).encode() if form is not None else b""
        cookie = self._cookie_header(host, u.path or "/")
        headers = {"Cookie": cookie} if cookie else {}
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        raw: list[tuple[str, str]] = []
        status, hdrs, data = https(self.chain.gateway_https, host, self.chain.pki.health.cert_path, method, path or "/",
                                   headers, body, raw_headers=raw)
        self._store(host, u.path or "/", raw)
        return status, hdrs, data, url

    def follow(self, url: str, method: str = "GET", form: dict | None = None, limit: int = 20) -> tuple[int, dict, bytes, str]:
        status, hdrs, data, url = self.request(url, method, form)
        for _ in range(limit):
            if status not in (301, 302, 303, 307, 308) or "location" not in hdrs:
                break
            url = urllib.parse.urljoin(url, hdrs["location"])
            status, hdrs, data, url = self.request(url)
        return status, hdrs, data, url

    def submit_login(self, page: bytes, page_url: str, username: str, password: str) -> tuple[int, dict, bytes, str]:
        m = re.search(rb'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page) or re.search(rb'action="([^"]+)"', page)
        if not m:
            raise HarnessError(f"no login form at {page_url}")
        action = html.unescape(m.group(1).decode())
        return self.follow(urllib.parse.urljoin(page_url, action), "POST", {"username": username, "password": password})


@dataclass
class AuthzChain:
    gateway_args: GatewayArgs
    authz_args: AuthzArgs
    root: Path
    idle_seconds: int = 20  # the harness shortens the idle timeout (30 min in the stack) to prove its effect
    refresh_seconds: int = 3

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.pki = TestPki(self.root / "pki")
        self.kc_port, self.kc_mgmt = free_port(), free_port()
        self.o2_port = free_port()
        self.gateway_https, self.gateway_http = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.doubles: list[_Double] = []
        # the API client of the stack, its certificate issued by the test PKI with the stack's subject DN
        clients = list(self.authz_args.api_clients)
        if not clients:
            raise HarnessError("the stack registers no API client (authz.api_clients): nothing to exchange for")
        self.client = clients[0]
        dn = dict(part.split("=", 1) for part in self.client.subject_dn.split(","))
        self.client_cert = self.pki.health.issue("api-client", dn.get("CN", "client"), client=True, org=dn.get("O", "org"))
        self.other_cert = self.pki.health.issue("other-client", "Autre logiciel (FINESS 990000009)", client=True,
                                                org="Autre organisation")
        # the same subject on another key: admitted by the subject checks (a tenant host's too), refused by the binding
        self.twin_cert = self.pki.health.issue("twin-client", dn.get("CN", "client"), client=True, org=dn.get("O", "org"))
        self.subject_dn = self._rfc2253(self.client_cert.cert)
        issuer = self._rfc2253(self.pki.health.cert_path)
        self.base = f"http://{LOCAL}:{self.kc_port}"
        double = f"https://{self.authz_args.public_host}/realms/{kc.PSC_DOUBLE_REALM}/protocol/openid-connect"
        back = f"{self.base}/realms/{kc.PSC_DOUBLE_REALM}/protocol/openid-connect"
        self.psc = PscEndpoints(issuer=f"https://{self.authz_args.public_host}/realms/{kc.PSC_DOUBLE_REALM}",
                                authorization_url=f"{double}/auth", token_url=f"{back}/token",
                                userinfo_url=f"{back}/userinfo", jwks_url=f"{back}/certs", logout_url=f"{back}/logout")
        # the stack's client, with the DN of the certificate the test PKI issued (the CA is the test PKI's)
        self.authz_args = self.authz_args.model_copy(update={
            "api_clients": [ApiClient(client_id=self.client.client_id, subject_dn=self.subject_dn, issuer_dn=issuer)],
            # the local Keycloak keeps its data in memory (the stack's shared PostgreSQL is not run here)
            "sso_idle": self.idle_seconds, "database": None})
        self.gateway_args = self.gateway_args.model_copy(update={"session_refresh": f"{self.refresh_seconds}s"})
        self.realm_url = f"https://{self.authz_args.public_host}/realms/{self.authz_args.realm}"
        self.browser_secret = secrets.token_urlsafe(24)

    @staticmethod
    def _rfc2253(cert_path: Path) -> str:
        from cryptography import x509
        return x509.load_pem_x509_certificate(cert_path.read_bytes()).subject.rfc4514_string()

    # --- Keycloak ----------------------------------------------------------------------------------------------
    def start_keycloak(self, timeout: float = 300) -> None:
        home = kc.built_home(FEATURES)
        run_dir = self.root / "keycloak"
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run(["cp", "-al", str(home), str(run_dir)], check=True)
        imports = run_dir / "data" / "import"
        imports.mkdir(parents=True, exist_ok=True)
        (imports / "realm.json").write_text(realm_json(self.authz_args, psc=self.psc), encoding="utf-8")
        redirect = f"https://{self.authz_args.public_host}/realms/{self.authz_args.realm}/broker/{PSC_ALIAS}/endpoint"
        (imports / "psc-double.json").write_text(json.dumps(kc.psc_double_realm(
            self.authz_args.psc_client_id, [redirect, redirect + "/*"])), encoding="utf-8")
        self.admin_password = secrets.token_urlsafe(16)
        env = {**os.environ, ENV_PSC_CLIENT_SECRET: kc.PSC_DOUBLE_CLIENT_SECRET, ENV_BROWSER_CLIENT_SECRET: self.browser_secret,
               "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER, "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password}
        if kc.java_home():
            env["JAVA_HOME"] = kc.java_home()
        options = start_options(self.authz_args, http_host=LOCAL, http_port=self.kc_port, management_port=self.kc_mgmt,
                                truststore=str(self.pki.health.cert_path))
        self.kc_log = self.root / "keycloak.log"
        with self.kc_log.open("w") as out:
            proc = subprocess.Popen([str(run_dir / "bin" / "kc.sh"), *options], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.kc_proc = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HarnessError(f"Keycloak stopped: {self.kc_log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{LOCAL}:{self.kc_mgmt}/health/ready", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise HarnessError(f"Keycloak not ready after {timeout:.0f} s: {self.kc_log.read_text(errors='replace')[-3000:]}")

    def _kc(self, method: str, path: str, *, form: dict | None = None, body: object = None,
            token: str | None = None) -> tuple[int, object]:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
                text = r.read().decode()
                return r.status, json.loads(text) if text.strip()[:1] in ("{", "[") else text
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            return e.code, json.loads(text) if text.strip()[:1] in ("{", "[") else text

    def _admin(self) -> str:
        status, body = self._kc("POST", "/realms/master/protocol/openid-connect/token", form={
            "grant_type": "password", "client_id": "admin-cli", "username": ADMIN_USER, "password": self.admin_password})
        if status != 200:
            raise HarnessError(f"Keycloak admin login: {status} {body}")
        return body["access_token"]  # type: ignore[index]

    def set_psc_acr(self, acr: str) -> None:
        """The PSC double issues this `acr` from now on (the hard-coded claim of its client)."""
        t = self._admin()
        r = f"/admin/realms/{kc.PSC_DOUBLE_REALM}"
        _, clients = self._kc("GET", f"{r}/clients?clientId={urllib.parse.quote(self.authz_args.psc_client_id)}", token=t)
        cid = clients[0]["id"]  # type: ignore[index]
        _, mappers = self._kc("GET", f"{r}/clients/{cid}/protocol-mappers/models", token=t)
        m = next(m for m in mappers if m["name"] == "acr")  # type: ignore[union-attr]
        m["config"]["claim.value"] = acr
        status, body = self._kc("PUT", f"{r}/clients/{cid}/protocol-mappers/models/{m['id']}", body=m, token=t)
        if status != 204:
            raise HarnessError(f"PSC double: acr not changed: {status} {body}")

    def psc_sessions(self) -> list[str]:
        """The PSC double's sessions of its practitioner, oldest first."""
        t = self._admin()
        r = f"/admin/realms/{kc.PSC_DOUBLE_REALM}"
        _, users = self._kc("GET", f"{r}/users?username=praticien&exact=true", token=t)
        _, sessions = self._kc("GET", f"{r}/users/{users[0]['id']}/sessions", token=t)  # type: ignore[index]
        return [x["id"] for x in sorted(sessions, key=lambda x: x["start"])]  # type: ignore[union-attr]

    def psc_token(self) -> str:
        """A PSC access token of the double (2 minutes, `openid scope_all`), as the practitioner's software has."""
        status, body = self._kc("POST", f"/realms/{kc.PSC_DOUBLE_REALM}/protocol/openid-connect/token", form={
            "grant_type": "password", "client_id": self.authz_args.psc_client_id,
            "client_secret": kc.PSC_DOUBLE_CLIENT_SECRET, "username": "praticien", "password": "praticien",
            "scope": "openid scope_all"})
        if status != 200:
            raise HarnessError(f"PSC double token: {status} {body}")
        return body["access_token"]  # type: ignore[index]

    # --- oauth2-proxy and NGINX --------------------------------------------------------------------------------
    def oauth2_proxy_config(self) -> str:
        oidc = f"{self.base}/realms/{self.authz_args.realm}/protocol/openid-connect"
        return oauth2_proxy_cfg(self.gateway_args, listen=f"{LOCAL}:{self.o2_port}",
                                paths={"client_secret": str(self.root / "o2-secret"), "log": str(self.root / "o2-log")},
                                endpoints={"login_url": f"{self.realm_url}/protocol/openid-connect/auth",
                                           "redeem_url": f"{oidc}/token", "oidc_jwks_url": f"{oidc}/certs",
                                           "backend_logout_url": f"{oidc}/logout?id_token_hint={{id_token}}"})

    def start_oauth2_proxy(self) -> None:
        binary = oauth2_proxy_binary()
        if binary is None:
            raise HarnessError("oauth2-proxy is not built: python -m socle.cluster.build --group oauth2-proxy")
        secret_dir = self.root / "o2-secret"
        secret_dir.mkdir(exist_ok=True)
        fd = os.open(secret_dir / "client-secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.browser_secret)
        (self.root / "o2-log").mkdir(exist_ok=True)
        self.o2_conf = self.root / "oauth2-proxy.cfg"
        self.o2_conf.write_text(self.oauth2_proxy_config(), encoding="utf-8")
        env = {**os.environ, "OAUTH2_PROXY_COOKIE_SECRET": secrets.token_urlsafe(24)[:32]}
        run([binary, f"--config={self.o2_conf}", "--config-test"], "oauth2-proxy refused its rendered configuration", env=env)
        self.o2_log = self.root / "oauth2-proxy.out"
        with self.o2_log.open("w") as out:
            proc = subprocess.Popen([binary, f"--config={self.o2_conf}"], env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        wait_port(self.o2_port, "oauth2-proxy", proc, self.o2_log)

    def start_gateway(self) -> None:
        nginx = require("nginx")
        self.backend = _Double(_BackendHandler)
        self.doubles.append(self.backend)
        d = self.root / "gateway"
        for sub in ("run", "cache", "crl"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.pki.crl, d / "crl" / "crl.pem")
        hosts = sorted({r.host for r in self.gateway_args.routes} | {self.authz_args.public_host})
        server = self.pki.health.issue("gateway-server", f"gateway.{hosts[0]}", dns=hosts, server=True)
        paths = {"run": str(d / "run"), "cache": str(d / "cache"), "crl": str(d / "crl"),
                 "server_tls": str(server.directory), "trust_bundle": str(self.pki.health.dir), "conf": str(d)}
        self.nginx_error = d / "error.log"
        confs = nginx_files(self.gateway_args, paths=paths, listen_address=f"{LOCAL}:", http_port=self.gateway_http,
                          https_port=self.gateway_https, auth_upstream=f"http://{LOCAL}:{self.o2_port}",
                          authz_upstream=self.base, access_logs=[str(d / "access.log")], error_log=str(self.nginx_error),
                          upstreams={r.name: f"http://{LOCAL}:{self.backend.port}" for r in self.gateway_args.routes})
        self.nginx_conf = d / "nginx.conf"
        for name, text in confs.items():  # nginx.conf and what it includes (tenant hosts)
            (d / name).write_text(text, encoding="utf-8")
        run([nginx, "-t", "-c", str(self.nginx_conf)], "nginx refused the rendered nginx.conf")
        proc = subprocess.Popen([nginx, "-c", str(self.nginx_conf), "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(self.gateway_https, "nginx", proc, self.nginx_error)

    def start(self) -> "AuthzChain":
        try:
            self.start_keycloak()
            self.start_oauth2_proxy()
            self.start_gateway()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc is getattr(self, "kc_proc", None) and proc.poll() is None:
                # kc.sh runs java in the background and forwards the signal to it
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
            else:
                terminate(proc)
        for d in self.doubles:
            d.stop()

    # --- the calls a client makes ------------------------------------------------------------------------------
    def api_route(self):
        """The first API route with client certificates and tokens; on a regional gateway, the route of the tenant
        whose organisation certificate the API client holds (another tenant's host refuses it)."""
        routes = [r for r in self.gateway_args.routes if r.mtls and r.token_validation]
        return next((r for r in routes if self.client.subject_dn in r.client_subjects), routes[0])

    def browser_route(self):
        return next(r for r in self.gateway_args.routes if not r.mtls and r.token_validation)

    def exchange(self, subject_token: str, cert) -> tuple[int, dict]:
        """RFC 8693 at the authorization server, through the gateway, the client authenticated by its certificate."""
        body = urllib.parse.urlencode({"grant_type": TOKEN_EXCHANGE, "client_id": self.client.client_id,
                                       "subject_token": subject_token, "subject_issuer": PSC_ALIAS,
                                       "subject_token_type": ACCESS_TOKEN_TYPE, "scope": "openid"}).encode()
        status, _, data = https(self.gateway_https, self.authz_args.public_host, self.pki.health.cert_path, "POST",
                                f"/realms/{self.authz_args.realm}/protocol/openid-connect/token",
                                {"Content-Type": "application/x-www-form-urlencoded"}, body, client=cert)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"raw": data[:200].decode(errors="replace")}

    def call_api(self, token: str | None, cert) -> int:
        route = self.api_route()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            status, _, _ = https(self.gateway_https, route.host, self.pki.health.cert_path, "GET", "/fhir/Patient",
                                 headers, client=cert)
        except OSError:
            return 0  # the handshake was refused
        return status


def probes(chain: AuthzChain) -> list[Probe]:
    """Every sentence of the chain, each a probe of the running programs."""
    out: list[Probe] = []
    route = chain.api_route()
    psc = chain.psc_token()
    claims = _jwt_claims(psc)
    status = chain.call_api(psc, chain.client_cert)
    out.append(probe("API-03", "a PSC token presented directly to the API is refused", status == 401,
                     f"PSC token (iss {claims.get('iss')}) on {route.host} with the client's certificate: HTTP {status}"))
    status, body = chain.exchange(psc, chain.client_cert)
    token = body.get("access_token", "")
    bound = _jwt_claims(token).get("cnf", {}) if token else {}
    life = (_jwt_claims(token)["exp"] - _jwt_claims(token)["iat"]) if token else 0
    out.append(probe("API-03", "the PSC token is exchanged (RFC 8693) for a certificate-bound token (RFC 8705)",
                     status == 200 and "x5t#S256" in bound and 3600 <= life <= 4 * 3600,
                     f"exchange: HTTP {status}, cnf {sorted(bound)}, lifetime {life} s"))
    with_cert = chain.call_api(token, chain.client_cert) if token else 0
    out.append(probe("API-03", "the bound token works with its certificate", with_cert == 200,
                     f"GET {route.host}/fhir/Patient with the token and its certificate: HTTP {with_cert}"))
    other = chain.call_api(token, chain.twin_cert) if token else 0
    out.append(probe("API-03", "the bound token is refused with another certificate of the same PKI", other == 401,
                     f"same token, another valid certificate with the same subject (another key): HTTP {other}"))
    status, body = chain.exchange(psc, chain.other_cert)
    out.append(probe("API-02", "a certificate whose subject DN is not the client's cannot obtain a token",
                     status in (400, 401) and "access_token" not in body, f"exchange with another certificate: HTTP {status} {body.get('error')}"))
    browser = next((r for r in chain.gateway_args.routes if not r.mtls and r.token_validation), None)
    chain.set_psc_acr("eidas0")
    try:
        weak = chain.psc_token()
        status, body = chain.exchange(weak, chain.client_cert)
        out.append(probe("PSC-02", "a PSC token with an acr below eidas1 is not exchanged",
                         status == 400 and "access_token" not in body,
                         f"acr {_jwt_claims(weak).get('acr')}: HTTP {status} {body.get('error_description')}"))
        if browser is not None:
            b = Browser(chain)
            _, _, page, url = b.follow(f"https://{browser.host}/oauth2/start?rd=%2F")
            status, _, data, url = b.submit_login(page, url, "praticien", "praticien")
            session = b.follow(f"https://{browser.host}/")[0]
            out.append(probe("PSC-02", "a browser login whose PSC acr is below eidas1 is denied",
                             session == 401 and status == 401 and urllib.parse.urlsplit(url).path.endswith("/post-broker-login"),
                             f"login with acr eidas0 ended at {urllib.parse.urlsplit(url).path} (HTTP {status}); "
                             f"portal: HTTP {session}"))
    finally:
        chain.set_psc_acr("eidas1")
    if browser is None:
        return out  # the stack has no browser route: the session probes have nothing to run on
    b = Browser(chain)
    host = browser.host
    _, hdrs, page, url = b.follow(f"https://{host}/oauth2/start?rd=%2F")
    status, _, data, url = b.submit_login(page, url, "praticien", "praticien")
    first = b.follow(f"https://{host}/")[0]
    out.append(probe("PSC-01", "a browser logs in through the authorization server and Pro Santé Connect", first == 200,
                     f"after the PSC login: {urllib.parse.urlsplit(url).path} HTTP {status}; portal HTTP {first}"))
    time.sleep(chain.idle_seconds + chain.refresh_seconds + 2)
    idle = b.follow(f"https://{host}/")[0]
    out.append(probe("API-04", "an idle browser session ends with the authorization server's idle timeout", idle == 401,
                     f"after {chain.idle_seconds + chain.refresh_seconds + 2} s idle (idle timeout {chain.idle_seconds} s): HTTP {idle}"))
    b = Browser(chain)
    _, hdrs, page, url = b.follow(f"https://{host}/oauth2/start?rd=%2F")
    b.submit_login(page, url, "praticien", "praticien")
    before = chain.psc_sessions()
    logged_in = b.follow(f"https://{host}/")[0]
    b.follow(f"https://{host}/oauth2/sign_out")
    after_portal = b.follow(f"https://{host}/")[0]
    after = chain.psc_sessions()
    ended = [x for x in before if x not in after]
    out.append(probe("PSC-03", "logout ends the session at the gateway, the authorization server and PSC",
                     logged_in == 200 and after_portal == 401 and bool(before) and ended == before[-1:],
                     f"portal {logged_in} → sign_out → {after_portal}; the PSC double's session of this login "
                     f"{'ended' if ended == before[-1:] else 'still open'} ({len(before)} → {len(after)} sessions)"))
    return out


def versions() -> dict[str, str]:
    out = {"keycloak": kc.KEYCLOAK_VERSION}
    binary = oauth2_proxy_binary()
    if binary:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True)
        out["oauth2-proxy"] = (r.stdout or r.stderr).strip().split("\n")[0]
    return out

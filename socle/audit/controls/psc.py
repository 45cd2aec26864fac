"""Pro Santé Connect and administration (PSC-01..05, ADM-01)."""
from __future__ import annotations

from typing import Iterator
from urllib.parse import urlparse

from socle.constants import PSC_ACR, PSC_PRODUCTION_ISSUER, PSC_SANDBOX_HOST, PSC_SANDBOX_HOSTS

from .. import configs
from ..evidence import Evidence, dig, meta
from ..model import Context, Control, Finding, failed, judge, not_applicable
from . import registrar
from ._common import Parsed, api_servers, each, nginx_files, oauth2_files, oauth2_services, proxied_service, routes

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "PSC")
PSC = ("psc", "doctrine")
PSC_ISSUER_HOSTS = ("auth.esw.esante.gouv.fr", PSC_SANDBOX_HOST)


@control("PSC-01", "Services holding sensitive data offer Pro Santé Connect login", "high", PSC, ("psc", "doctrine"),
         "Configure the psc section (issuer, client id, client secret) so the gateway offers PSC login.")
def psc_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    proxies = {meta(p.file.obj).get("namespace"): p for p in oauth2_files(ev) if isinstance(p, Parsed)}
    validators = oauth2_services(ev)

    def gateway(p: Parsed) -> Iterator[Finding]:
        sensitive = [r for r in routes(p.file.obj) or [] if r.get("sensitivity") == "sensitive"]
        if not sensitive:
            yield not_applicable(p.file.obj, "no route carries sensitive data", "nginx.conf")
            return
        ns = meta(p.file.obj).get("namespace", "")
        # The login is offered where the sign-in flow (/oauth2/...) of each sensitive host reaches oauth2-proxy.
        hosts = {n: s for s in api_servers(p.data) for n in configs.server_names(s)}
        offered = []
        for r in sensitive:
            server = hosts.get(str(r.get("host", "")))
            flows = [loc for loc in (server.all("location") if server else []) if loc.args and loc.args[-1].startswith("/oauth2/")
                     and loc.first("internal") is None and proxied_service(loc, ns) in validators]
            if not flows:
                yield failed(p.file.obj, f"sensitive route {r.get('name')} ({r.get('host')}) offers no login: no /oauth2/ "
                                         "sign-in location passed to oauth2-proxy", "nginx.conf")
            else:
                offered.append(str(r.get("name", "?")))
        proxy = proxies.get(ns)
        if proxy is None:
            yield failed(p.file.obj, "sensitive routes but no OIDC login (oauth2-proxy) configuration in the namespace", "nginx.conf")
            return
        issuer = str(proxy.data.get("oidc_issuer_url", ""))
        problems = [msg for bad, msg in (
            (not ev.mounts_of(proxy.file.obj), "no workload runs this OIDC login (oauth2-proxy) configuration"),
            (proxy.data.get("provider") != "oidc", f"provider is {proxy.data.get('provider')!r}, not oidc"),
            (not any(f"//{h}/" in issuer for h in PSC_ISSUER_HOSTS), f"issuer {issuer or '(none)'} is not Pro Santé Connect"),
        ) if bad]
        yield judge(proxy.file.obj, problems, f"PSC login offered for {', '.join(offered) or 'no route'}", "oauth2-proxy.cfg")

    yield from each(nginx_files(ev), gateway)


@control("PSC-02", "Authorization-code flow, scope `openid scope_all`, acr_values eidas1, state and nonce checked", "high",
         PSC, ("psc",), "Use the kit's oauth2-proxy settings (scope, acr_values, nonce check).")
def psc_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        c = p.data
        scope = str(c.get("scope", "")).split()
        problems = [msg for bad, msg in (
            # oauth2-proxy's OIDC provider runs the authorization-code flow, and always checks `state` (its CSRF cookie).
            (c.get("provider") != "oidc", f"provider is {c.get('provider')!r}, not the OIDC authorization-code flow"),
            ("openid" not in scope or "scope_all" not in scope, f"scope is {c.get('scope')!r}, not `openid scope_all`"),
            (c.get("acr_values") != PSC_ACR, f"acr_values is {c.get('acr_values')!r}, not {PSC_ACR}"),
            (c.get("insecure_oidc_skip_nonce", True) is not False, "the nonce is not checked (insecure_oidc_skip_nonce not false)"),
        ) if bad]
        return judge(p.file.obj, problems, "code flow with openid scope_all, eidas1, state and nonce", "oauth2-proxy.cfg")

    yield from each(oauth2_files(ev), proxy)


@control("PSC-03", "Client authentication by secret or mTLS; the secret only in a Kubernetes Secret", "critical", PSC,
         ("psc",), "Reference the client secret through psc.client_secret (a Secret), never in the configuration.")
def psc_03(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        problems = ["client_secret written in the configuration file"] if p.data.get("client_secret") else []
        users = ev.mounts_of(p.file.obj)
        envs = [(w, env) for w, c, _ in users for env in c.get("env") or [] if env.get("name") == "OAUTH2_PROXY_CLIENT_SECRET"]
        problems += [f"{w.ref} sets OAUTH2_PROXY_CLIENT_SECRET " + ("as a literal" if "value" in env else "not from a Secret")
                     for w, env in envs if not dig(env, "valueFrom", "secretKeyRef")]
        path = p.data.get("client_secret_file")
        if path:
            ok, why = ev.secret_backed(p.file.obj, str(path))
            if not ok:
                problems.append(f"client_secret_file {why}")
        elif not users or not all(any(e.get("name") == "OAUTH2_PROXY_CLIENT_SECRET" and dig(e, "valueFrom", "secretKeyRef")
                                          for e in c.get("env") or []) for _w, c, _ in users):
            problems.append("the client does not authenticate: no client_secret_file (nor OAUTH2_PROXY_CLIENT_SECRET from a Secret)")
        return judge(p.file.obj, problems, "client secret read from a Secret", "oauth2-proxy.cfg")

    yield from each(oauth2_files(ev), proxy)


@control("PSC-04", "ID tokens verified against the issuer's keys; production issuer pinned; IdP TLS always verified",
         "critical", PSC, ("psc",), f"Production issuer is {PSC_PRODUCTION_ISSUER}; never skip TLS or token verification.")
def psc_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        c = p.data
        issuer = str(c.get("oidc_issuer_url", ""))
        jwks = str(c.get("oidc_jwks_url") or "")
        problems = [msg for bad, msg in (
            (c.get("ssl_insecure_skip_verify") is True, "ssl_insecure_skip_verify is on"),
            (c.get("skip_oidc_discovery") is True and not jwks,
             "discovery skipped without a JWKS URL: tokens cannot be checked against the issuer's keys"),
            (bool(jwks) and urlparse(jwks).hostname != urlparse(issuer).hostname,
             f"oidc_jwks_url {jwks}: tokens checked against keys not published by the issuer's host"),
            (bool(c.get("extra_jwt_issuers")), "extra_jwt_issuers: tokens checked against other issuers' keys are accepted"),
            (c.get("insecure_oidc_skip_issuer_verification") is True, "insecure_oidc_skip_issuer_verification is on"),
            (c.get("insecure_oidc_allow_unverified_email") is True, "insecure_oidc_allow_unverified_email is on"),
            (ctx.production and issuer != PSC_PRODUCTION_ISSUER, f"issuer {issuer or '(none)'} is not the production issuer"),
            (not issuer.startswith("https://"), f"issuer {issuer or '(none)'} is not an https URL"),
        ) if bad]
        return judge(p.file.obj, problems, f"issuer {issuer} verified (TLS and token signatures)", "oauth2-proxy.cfg")

    yield from each(oauth2_files(ev), proxy)


@control("PSC-05", "The PSC sandbox is never used by a production stack", "critical", PSC, ("psc",),
         f"Replace every {PSC_SANDBOX_HOST} reference by the production issuer.")
def psc_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def sandbox(text: str) -> list[str]:
        return [h for h in PSC_SANDBOX_HOSTS if h in text]

    for cm in ev.scoped("ConfigMap"):
        hits = {k: sandbox(v) for k, v in sorted((cm.get("data") or {}).items()) if isinstance(v, str) and sandbox(v)}
        if not ctx.production:
            if hits:
                yield not_applicable(cm, f"sandbox in {', '.join(hits)}: allowed outside production ({ctx.profile} profile)")
            continue
        yield judge(cm, [f"{k} names the PSC sandbox {', '.join(h)}" for k, h in hits.items()], "no sandbox reference")
    for w in ev.workloads():
        lits = [f"{c.get('name')}:{e.get('name')}" for c in w.containers() for e in c.get("env") or []
                if sandbox(str(e.get("value", "")))]
        if lits and ctx.production:
            yield failed(w.obj, f"environment names the PSC sandbox: {', '.join(lits)}")


manual("ADM-01", "Administrators use two-factor authentication; the Kubernetes API reachable only from declared networks",
       "high", ("pgssi-s", "k8s"), ("anssi-tls", "hds"),
       "Enforce MFA at the identity provider of the cluster and restrict the API server to the declared networks.",
       "The identity provider's MFA policy and the API server's allowed networks (cloud firewall / authorized "
       "networks) are outside the cluster objects: record the reference of that configuration.")

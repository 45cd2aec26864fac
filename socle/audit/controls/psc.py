"""Pro Santé Connect and administration (PSC-01..05, ADM-01)."""
from __future__ import annotations

from typing import Iterator

from socle.constants import PSC_ACR, PSC_PRODUCTION_ISSUER, PSC_SANDBOX_HOST

from ..evidence import Evidence, meta
from ..model import Context, Control, Finding, failed, judge, not_applicable
from . import registrar
from ._common import Parsed, each, nginx_files, oauth2_files, routes

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "PSC")
PSC = ("psc", "doctrine")
PSC_ISSUER_HOSTS = ("auth.esw.esante.gouv.fr", PSC_SANDBOX_HOST)


@control("PSC-01", "Services holding sensitive data offer Pro Santé Connect login", "high", PSC, ("psc", "doctrine"),
         "Configure the psc section (issuer, client id, client secret) so the gateway offers PSC login.")
def psc_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    proxies = {meta(p.file.obj).get("namespace"): p for p in oauth2_files(ev) if isinstance(p, Parsed)}

    def gateway(p: Parsed) -> Finding:
        sensitive = [r for r in routes(p.file.obj) or [] if r.get("sensitivity") == "sensitive"]
        if not sensitive:
            return not_applicable(p.file.obj, "no route carries sensitive data", "nginx.conf")
        proxy = proxies.get(meta(p.file.obj).get("namespace"))
        if proxy is None:
            return failed(p.file.obj, "sensitive routes but no OIDC (oauth2-proxy) configuration in the namespace", "nginx.conf")
        issuer = str(proxy.data.get("oidc_issuer_url", ""))
        problems = [msg for bad, msg in (
            (proxy.data.get("provider") != "oidc", f"provider is {proxy.data.get('provider')!r}, not oidc"),
            (not any(f"//{h}/" in issuer for h in PSC_ISSUER_HOSTS), f"issuer {issuer or '(none)'} is not Pro Santé Connect"),
        ) if bad]
        return judge(proxy.file.obj, problems, f"PSC login offered for {', '.join(r.get('name', '?') for r in sensitive)}",
                     "oauth2-proxy.cfg")

    yield from each(nginx_files(ev), gateway)


@control("PSC-02", "Authorization-code flow, scope `openid scope_all`, acr_values eidas1, state and nonce checked", "high",
         PSC, ("psc",), "Use the kit's oauth2-proxy settings (scope, acr_values, nonce check).")
def psc_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        c = p.data
        scope = str(c.get("scope", "")).split()
        problems = [msg for bad, msg in (
            ("openid" not in scope or "scope_all" not in scope, f"scope is {c.get('scope')!r}"),
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
        path = p.data.get("client_secret_file")
        ok, why = ev.secret_backed(p.file.obj, str(path)) if path else (False, "no client_secret_file")
        if not ok:
            problems.append(why)
        problems += [f"{w.ref} sets OAUTH2_PROXY_CLIENT_SECRET as a literal" for w, c, _ in ev.mounts_of(p.file.obj)
                     for env in c.get("env") or [] if env.get("name") == "OAUTH2_PROXY_CLIENT_SECRET" and "value" in env]
        return judge(p.file.obj, problems, "client secret read from a mounted Secret", "oauth2-proxy.cfg")

    yield from each(oauth2_files(ev), proxy)


@control("PSC-04", "ID tokens verified against the issuer's keys; production issuer pinned; IdP TLS always verified",
         "critical", PSC, ("psc",), f"Production issuer is {PSC_PRODUCTION_ISSUER}; never skip TLS or token verification.")
def psc_04(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        c = p.data
        issuer = str(c.get("oidc_issuer_url", ""))
        problems = [msg for bad, msg in (
            (c.get("ssl_insecure_skip_verify") is True, "ssl_insecure_skip_verify is on"),
            (c.get("skip_oidc_discovery") is True and not c.get("oidc_jwks_url"),
             "discovery skipped without a JWKS URL: tokens cannot be checked against the issuer's keys"),
            (c.get("insecure_oidc_allow_unverified_email") is True, "insecure_oidc_allow_unverified_email is on"),
            (ctx.production and issuer != PSC_PRODUCTION_ISSUER, f"issuer {issuer or '(none)'} is not the production issuer"),
            (not issuer.startswith("https://"), f"issuer {issuer or '(none)'} is not an https URL"),
        ) if bad]
        return judge(p.file.obj, problems, f"issuer {issuer} verified (TLS and token signatures)", "oauth2-proxy.cfg")

    yield from each(oauth2_files(ev), proxy)


@control("PSC-05", "The PSC sandbox is never used by a production stack", "critical", PSC, ("psc",),
         f"Replace every {PSC_SANDBOX_HOST} reference by the production issuer.")
def psc_05(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    for cm in ev.scoped("ConfigMap"):
        hits = sorted(k for k, v in (cm.get("data") or {}).items() if isinstance(v, str) and PSC_SANDBOX_HOST in v)
        if not ctx.production:
            if hits:
                yield not_applicable(cm, f"sandbox in {', '.join(hits)}: allowed outside production ({ctx.profile} profile)")
            continue
        yield judge(cm, [f"{k} names the PSC sandbox {PSC_SANDBOX_HOST}" for k in hits], "no sandbox reference")
    for w in ev.workloads():
        lits = [f"{c.get('name')}:{e.get('name')}" for c in w.containers() for e in c.get("env") or []
                if PSC_SANDBOX_HOST in str(e.get("value", ""))]
        if lits and ctx.production:
            yield failed(w.obj, f"environment names the PSC sandbox: {', '.join(lits)}")


manual("ADM-01", "Administrators use two-factor authentication; the Kubernetes API reachable only from declared networks",
       "high", ("pgssi-s", "k8s"), ("anssi-tls", "hds"),
       "Enforce MFA at the identity provider of the cluster and restrict the API server to the declared networks.",
       "The identity provider's MFA policy and the API server's allowed networks (cloud firewall / authorized "
       "networks) are outside the cluster objects: record the reference of that configuration.")

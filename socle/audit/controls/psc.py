"""Pro Santé Connect and administration (PSC-01..05, ADM-01)."""
from __future__ import annotations

import json
import re
from typing import Iterator
from urllib.parse import urlparse

from socle.constants import PSC_ACR, PSC_PRODUCTION_ISSUER, PSC_SANDBOX_HOST, PSC_SANDBOX_HOSTS

from .. import configs
from ..evidence import Evidence, dig, meta
from ..model import Context, Control, Finding, failed, judge, not_applicable
from . import registrar
from ._common import Parsed, api_servers, each, nginx_files, oauth2_files, oauth2_services, proxied_service, routes
from .api import ACR_DENY, exchange_clients, psc_idp, realm_files, realms

CONTROLS: list[Control] = []
control, manual = registrar(CONTROLS, "PSC")
PSC = ("psc", "doctrine")
PSC_ISSUER_HOSTS = ("auth.esw.esante.gouv.fr", PSC_SANDBOX_HOST)


def _issuer_is_psc(issuer: str) -> bool:
    return any(f"//{h}/" in issuer for h in PSC_ISSUER_HOSTS)


@control("PSC-01", "Services holding sensitive data offer Pro Santé Connect login", "high", PSC, ("psc", "doctrine"),
         "Configure the psc section (issuer, client id, client secret): the établissement's authorization server "
         "brokers Pro Santé Connect, for browser sessions and for the exchange of PSC tokens.")
def psc_01(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    servers = {meta(r.file.obj).get("namespace"): r for r in realms(ev)}
    proxies = {meta(p.file.obj).get("namespace"): p for p in oauth2_files(ev) if isinstance(p, Parsed)}
    validators = oauth2_services(ev)

    def gateway(p: Parsed) -> Iterator[Finding]:
        sensitive = [r for r in routes(p.file.obj) or [] if r.get("sensitivity") == "sensitive"
                     and r.get("role") != "authorization-server"]
        if not sensitive:
            yield not_applicable(p.file.obj, "no route carries sensitive data", "nginx.conf")
            return
        ns = meta(p.file.obj).get("namespace", "")
        hosts = {n: s for s in api_servers(p.data) for n in configs.server_names(s)}
        used: set[str] = set()
        for r in sensitive:
            server = hosts.get(str(r.get("host", "")))
            locs = server.all("location") if server else []
            # a browser login: /oauth2/ sign-in to oauth2-proxy, whose issuer is the authorization server
            browser = [loc for loc in locs if loc.args and loc.args[-1].startswith("/oauth2/") and loc.first("internal") is None
                       and proxied_service(loc, ns) in validators]
            # an API: tokens checked at the authorization server, which issues them only for a PSC token
            api = [proxied_service(loc, ns) for loc in locs if loc.first("internal") is not None
                   and proxied_service(loc, ns) and proxied_service(loc, ns)[1] in servers]
            if browser and proxies.get(ns) is not None:
                used.add(str(proxies[ns].data.get("oidc_issuer_url", "")))
            if api:
                used.update(f"realm:{svc[1]}" for svc in api if svc)
            if not browser and not api:
                yield failed(p.file.obj, f"sensitive route {r.get('name')} ({r.get('host')}) offers no PSC login: neither a "
                                         "/oauth2/ sign-in nor a token check at the authorization server", "nginx.conf")
        for ns_realm, realm in servers.items():
            idp = psc_idp(realm.data) or {}
            cfg = idp.get("config") or {}
            problems = [msg for bad, msg in (
                (not idp, "the realm has no Pro Santé Connect identity provider"),
                (bool(idp) and not idp.get("enabled", True), "the PSC identity provider is disabled"),
                (bool(idp) and not _issuer_is_psc(str(cfg.get("issuer", ""))), f"issuer {cfg.get('issuer') or '(none)'} is not Pro Santé Connect"),
                (not ev.scoped_in("Deployment", ns_realm), "no workload runs the authorization server"),
            ) if bad]
            yield judge(realm.file.obj, problems, f"Pro Santé Connect ({cfg.get('issuer')}) brokered by the "
                        f"authorization server for {', '.join(str(r.get('name')) for r in sensitive)}", "realm.json")
        if not servers:
            yield failed(p.file.obj, "sensitive routes but no authorization server brokering Pro Santé Connect", "nginx.conf")

    yield from each(nginx_files(ev), gateway)


@control("PSC-02", "Authorization-code flow, scope `openid scope_all`, acr_values eidas1, state and nonce checked", "high",
         PSC, ("psc",), "Use the kit's settings: the realm's PSC identity provider (scope, acr forwarded and checked on "
         "the returned token, PKCE) and oauth2-proxy's (code flow, acr_values, nonce).")
def psc_02(ev: Evidence, ctx: Context) -> Iterator[Finding]:
    def proxy(p: Parsed) -> Finding:
        c = p.data
        problems = [msg for bad, msg in (
            # oauth2-proxy's OIDC provider runs the authorization-code flow, and always checks `state` (its CSRF cookie).
            (c.get("provider") != "oidc", f"provider is {c.get('provider')!r}, not the OIDC authorization-code flow"),
            (c.get("acr_values") != PSC_ACR, f"acr_values is {c.get('acr_values')!r}, not {PSC_ACR}"),
            (c.get("insecure_oidc_skip_nonce", True) is not False, "the nonce is not checked (insecure_oidc_skip_nonce not false)"),
        ) if bad]
        return judge(p.file.obj, problems, f"code flow asking {PSC_ACR}, state and nonce checked", "oauth2-proxy.cfg")

    def realm(p: Parsed) -> Finding:
        d = p.data
        idp = psc_idp(d) or {}
        cfg = idp.get("config") or {}
        scope = str(cfg.get("defaultScope", "")).split()
        flows = {f.get("alias"): f for f in d.get("authenticationFlows") or []}
        configs_ = {a.get("alias"): a.get("config") or {} for a in d.get("authenticatorConfig") or []}
        # the role the PSC identity provider grants when (and only when) the returned token has acr=eidas1
        roles = {m.get("config", {}).get("role") for m in d.get("identityProviderMappers") or []
                 if m.get("identityProviderAlias") == idp.get("alias") and m.get("identityProviderMapper") == "oidc-advanced-role-idp-mapper"
                 and (m.get("config") or {}).get("syncMode") == "FORCE"
                 and json.loads((m.get("config") or {}).get("claims") or "[]") == [{"key": "acr", "value": PSC_ACR}]
                 and (m.get("config") or {}).get("are.claim.values.regex") == "false"}
        post = flows.get(idp.get("postBrokerLoginFlowAlias") or "")
        denies = False
        for e in (post or {}).get("authenticationExecutions") or []:
            sub = flows.get(e.get("flowAlias") or "") if e.get("authenticatorFlow") else None
            steps = (sub or {}).get("authenticationExecutions") or []
            cond = next((x for x in steps if x.get("authenticator") == "conditional-user-role"), None)
            deny = any(x.get("authenticator") == ACR_DENY and x.get("requirement") == "REQUIRED" for x in steps)
            cc = configs_.get((cond or {}).get("authenticatorConfig") or "") or {}
            if e.get("requirement") == "CONDITIONAL" and cond and deny and cc.get("negate") == "true" and cc.get("condUserRole") in roles:
                denies = True
        profiles = {pr.get("name"): pr for pr in (d.get("clientProfiles") or {}).get("profiles") or []}
        exchange_acr = any(
            pol.get("enabled", True) and any(c.get("condition") == "any-client" for c in pol.get("conditions") or [])
            and any(ex.get("executor") == "jwt-claim-enforcer" and (ex.get("configuration") or {}).get("claim-name") == "acr"
                    and (ex.get("configuration") or {}).get("allowed-value") == f"^{PSC_ACR}$"
                    for name in pol.get("profiles") or [] for ex in (profiles.get(name) or {}).get("executors") or [])
            for pol in (d.get("clientPolicies") or {}).get("policies") or [])
        clients, _ = exchange_clients(d)
        problems = [msg for bad, msg in (
            (not idp, "no Pro Santé Connect identity provider"),
            (bool(idp) and ("openid" not in scope or "scope_all" not in scope),
             f"the PSC identity provider asks scope {cfg.get('defaultScope')!r}, not `openid scope_all`"),
            (bool(idp) and "acr_values" not in str(cfg.get("forwardParameters", "")).split(","),
             "acr_values is not forwarded to Pro Santé Connect"),
            (bool(idp) and cfg.get("pkceEnabled") != "true", "PKCE is off towards Pro Santé Connect"),
            (bool(idp) and not denies, f"a PSC login whose token has no acr={PSC_ACR} is not denied (post-broker-login flow)"),
            (bool(clients) and not exchange_acr, f"a PSC token without acr={PSC_ACR} can be exchanged "
                                                 "(no jwt-claim-enforcer policy on the acr claim)"),
        ) if bad]
        return judge(p.file.obj, problems, f"PSC login with `openid scope_all`, acr {PSC_ACR} asked and checked on the "
                     "returned token (login and exchange), PKCE", "realm.json")

    yield from each(oauth2_files(ev), proxy)
    yield from each(realm_files(ev), realm)


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

    def realm(p: Parsed) -> Finding:
        idp = psc_idp(p.data) or {}
        cfg = idp.get("config") or {}
        secret = str(cfg.get("clientSecret") or "")
        problems: list[str] = []
        if not idp:
            return judge(p.file.obj, ["no Pro Santé Connect identity provider"], "", "realm.json")
        if cfg.get("clientAuthMethod") not in ("client_secret_basic", "client_secret_post", "private_key_jwt"):
            problems.append(f"the authorization server authenticates to PSC with {cfg.get('clientAuthMethod')!r}")
        m = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*)\}", secret)
        if cfg.get("clientAuthMethod", "").startswith("client_secret"):
            if not m:
                problems.append("the PSC client secret is written in the realm file" if secret else "no PSC client secret")
            else:
                users = ev.mounts_of(p.file.obj)
                envs = [(w, e) for w, c, _ in users for e in c.get("env") or [] if e.get("name") == m.group(1)]
                if not users:
                    problems.append("no workload imports this realm file")
                elif not envs or not all(dig(e, "valueFrom", "secretKeyRef") for _, e in envs):
                    problems.append(f"{m.group(1)} (the PSC client secret) does not come from a Secret")
        # every client secret of the realm (the browser sessions' client too) is an ${ENV} placeholder from a Secret
        for c in p.data.get("clients") or []:
            value = str(c.get("secret") or "")
            if not value:
                continue
            env = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*)\}", value)
            users = ev.mounts_of(p.file.obj)
            if not env:
                problems.append(f"the secret of client {c.get('clientId')} is written in the realm file")
            elif not all(dig(e, "valueFrom", "secretKeyRef") for _w, k, _ in users for e in k.get("env") or []
                         if e.get("name") == env.group(1)) or not any(e.get("name") == env.group(1) for _w, k, _ in users
                                                                      for e in k.get("env") or []):
                problems.append(f"{env.group(1)} (the secret of client {c.get('clientId')}) does not come from a Secret")
        return judge(p.file.obj, problems, f"the authorization server authenticates to PSC ({cfg.get('clientAuthMethod')}) "
                     "with a secret read from a Secret; every client secret of the realm from a Secret", "realm.json")

    yield from each(oauth2_files(ev), proxy)
    yield from each(realm_files(ev), realm)


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
            (not issuer.startswith("https://"), f"issuer {issuer or '(none)'} is not an https URL"),
        ) if bad]
        return judge(p.file.obj, problems, f"issuer {issuer} verified (TLS and token signatures)", "oauth2-proxy.cfg")

    def realm(p: Parsed) -> Finding:
        idp = psc_idp(p.data) or {}
        cfg = idp.get("config") or {}
        issuer = str(cfg.get("issuer", ""))
        jwks = str(cfg.get("jwksUrl") or "")
        problems = [msg for bad, msg in (
            (not idp, "no Pro Santé Connect identity provider"),
            (bool(idp) and cfg.get("validateSignature") != "true", "PSC tokens' signatures are not validated"),
            (bool(idp) and cfg.get("useJwksUrl") != "true", "PSC's keys are not read from its JWKS URL"),
            (bool(jwks) and urlparse(jwks).hostname != urlparse(issuer).hostname,
             f"jwksUrl {jwks}: PSC tokens checked against keys not published by the issuer's host"),
            (ctx.production and issuer != PSC_PRODUCTION_ISSUER, f"issuer {issuer or '(none)'} is not the production issuer"),
            (bool(idp) and not all(str(cfg.get(k, "")).startswith("https://") for k in
                                   ("issuer", "authorizationUrl", "tokenUrl", "userInfoUrl", "jwksUrl", "logoutUrl")),
             "a PSC endpoint is not an https URL"),
        ) if bad]
        return judge(p.file.obj, problems, f"PSC issuer {issuer}: signatures checked against its keys", "realm.json")

    yield from each(oauth2_files(ev), proxy)
    yield from each(realm_files(ev), realm)


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

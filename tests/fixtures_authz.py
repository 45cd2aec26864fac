"""Fixtures of the controls reworked for issue 11 (token chain): API-02 (now checked), API-03, API-04, PSC-01..05,
on the établissement's authorization server (Keycloak realm file `realm.json`, socle/components/authz.py), the gateway's
nginx.conf and oauth2-proxy.cfg. Each claim is violated alone in the real render of an example stack.
Entries replace tests/audit_fixtures.py's for the same control ID (its `_merge_areas`)."""
from __future__ import annotations

import json
from typing import Callable

from tests.audit_fixtures import (
    _HAPI_CONFIG_REF,
    Fixture,
    Objects,
    _claim,
    _delete,
    _env,
    _nginx,
    _o2,
    container,
    edit_file,
    find,
)

REALM_CM = ("ConfigMap", "keycloak-realm")
NGINX_CM = ("ConfigMap", "gateway-nginx")
O2_CM = ("ConfigMap", "oauth2-proxy")


def _realm(fn: Callable[[dict], None]) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        cm = find(objs, "ConfigMap", "keycloak-realm")
        data = json.loads(cm["data"]["realm.json"])
        fn(data)
        cm["data"]["realm.json"] = json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
    return mutate


def _client(data: dict, client_id: str = "dpi-partenaire") -> dict:
    return next(c for c in data["clients"] if c["clientId"] == client_id)


def _idp(data: dict) -> dict:
    return next(i for i in data["identityProviders"] if i["alias"] == "psc")


def _attr(key: str, value, client_id: str = "dpi-partenaire") -> Callable[[Objects], None]:
    return _realm(lambda d: _client(d, client_id)["attributes"].__setitem__(key, value))


def _idp_cfg(key: str, value) -> Callable[[Objects], None]:
    def fn(d: dict) -> None:
        if value is None:
            _idp(d)["config"].pop(key)
        else:
            _idp(d)["config"][key] = value
    return _realm(fn)


def _second_client_same_subject(d: dict) -> None:
    twin = json.loads(json.dumps(_client(d)))
    twin["clientId"] = "dpi-jumeau"
    d["clients"].append(twin)


def _exchange_permission_removed(d: dict) -> None:
    mgmt = _client(d, "realm-management")
    mgmt["authorizationSettings"]["policies"] = [p for p in mgmt["authorizationSettings"]["policies"]
                                                 if not p["name"].startswith("token-exchange.permission")]


def _acr_mapper_regex(d: dict) -> None:
    d["identityProviderMappers"][0]["config"]["claims"] = json.dumps([{"key": "acr", "value": "eidas.*"}])
    d["identityProviderMappers"][0]["config"]["are.claim.values.regex"] = "true"


def _post_broker_flow_dropped(d: dict) -> None:
    _idp(d).pop("postBrokerLoginFlowAlias")


def _exchange_acr_policy_off(d: dict) -> None:
    d["clientPolicies"]["policies"][0]["enabled"] = False


def _psc_secret_env_from_configmap(objs: Objects) -> None:
    env = container(find(objs, "Deployment", "keycloak"), "keycloak")["env"]
    for e in env:
        if e["name"] == "SOCLE_PSC_CLIENT_SECRET":
            e["valueFrom"] = dict(_HAPI_CONFIG_REF)


def _userinfo(old: str, new: str) -> Callable[[Objects], None]:
    return _nginx(old, new)


_USERINFO = "proxy_pass http://keycloak.chdemo-authz.svc.cluster.local:8080/realms/etablissement/protocol/openid-connect/userinfo;"

FAILING: dict[str, Fixture] = {
    "API-02": Fixture("demo", "an API client authenticated by a secret", _realm(lambda d: _client(d).update({"clientAuthenticatorType": "client-secret"})), REALM_CM),
    "API-03": Fixture("demo", "token not checked", _nginx("auth_request /oauth2/auth;", ""), NGINX_CM),
    "API-04": Fixture("demo", "session cookie readable by scripts", _o2("cookie_httponly = true", "cookie_httponly = false"), O2_CM),
    "PSC-01": Fixture("demo", "the identity provider is not Pro Santé Connect", _idp_cfg("issuer", "https://login.example.test/realms/x"), REALM_CM),
    "PSC-02": Fixture("demo", "acr_values not eidas1", _o2('acr_values = "eidas1"', 'acr_values = "eidas2"'), O2_CM),
    "PSC-03": Fixture("demo", "PSC client secret written in the realm file", _idp_cfg("clientSecret", "s3cr3t-value"), REALM_CM),
    "PSC-04": Fixture("demo", "IdP TLS verification off", _o2("ssl_insecure_skip_verify = false", "ssl_insecure_skip_verify = true"), O2_CM),
    "PSC-05": Fixture("chu-exemple-prod", "sandbox issuer in production", _idp_cfg("issuer", "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"), REALM_CM),
}

PASSING: dict[str, Fixture] = {
    "API-02": Fixture("demo", "the registered API client: certificate subject, tls_client_auth, bound tokens"),
    "PSC-05": Fixture("chu-exemple-prod", "production issuer"),
}


def _failing(cid: str, reason: str) -> Fixture:
    from dataclasses import replace
    return replace(FAILING[cid], reason=reason)


CLAIMS: dict[str, list[tuple[str, Fixture]]] = {
    "API-02": [
        ("organisation clients authenticate with mTLS (RFC 8705 tls_client_auth)", _failing("API-02", r"authenticates with client-secret, not its certificate")),
        ("organisation clients authenticate with mTLS (RFC 8705 tls_client_auth)", _claim("demo", "no certificate subject", _attr("x509.subjectdn", ""), REALM_CM, r"names no certificate subject")),
        ("organisation clients authenticate with mTLS (RFC 8705 tls_client_auth)", _claim("demo", "the subject a pattern", _attr("x509.allow.regex.pattern.comparison", "true"), REALM_CM, r"its subject is a pattern")),
        ("organisation clients authenticate with mTLS (RFC 8705 tls_client_auth)", _claim("demo", "no issuing CA", _attr("x509.casubjectdn", ""), REALM_CM, r"names no issuing CA")),
        ("organisation clients authenticate with mTLS (RFC 8705 tls_client_auth)", _claim("demo", "tokens not bound to the certificate", _attr("tls.client.certificate.bound.access.tokens", "false"), REALM_CM, r"access tokens not bound to the certificate")),
        ("organisation clients authenticate with mTLS (RFC 8705 tls_client_auth)", _claim("demo", "the client may use the password grant", _realm(lambda d: _client(d).update({"directAccessGrantsEnabled": True})), REALM_CM, r"may obtain tokens otherwise")),
        ("one subject, one client", _claim("demo", "two clients with one certificate subject", _realm(_second_client_same_subject), REALM_CM, r"share the certificate subject")),
    ],
    "API-03": [
        ("every token checked at the gateway (auth_request on every proxied location)", _failing("API-03", r"has no auth_request")),
        ("every token checked at the gateway (auth_request on every proxied location)", _claim("demo", "the API route checks no token", _nginx("auth_request /socle-authz/userinfo;", ""), NGINX_CM, r"route fhir location / has no auth_request")),
        ("validated by the établissement's authorization server (signature, expiry)", _claim("demo", "the token check answers 200 itself", _userinfo(_USERINFO, "return 200;"), NGINX_CM, r"does not reach the établissement's authorization server")),
        ("validated by the établissement's authorization server (signature, expiry)", _claim("demo", "the token check calls another endpoint", _userinfo(_USERINFO, _USERINFO.replace("/userinfo;", "/certs;")), NGINX_CM, r"not the userinfo endpoint")),
        ("bound to the presented certificate (RFC 8705)", _claim("demo", "the certificate not handed to the check", _nginx("proxy_set_header ssl-client-cert $ssl_client_escaped_cert;\n            proxy_set_header ssl-client-verify $ssl_client_verify;\n        }\n\n        location / {", "}\n\n        location / {"), NGINX_CM, r"the client certificate is not handed to the token check")),
        ("bound to the presented certificate (RFC 8705)", _claim("demo", "a client's tokens not bound", _attr("tls.client.certificate.bound.access.tokens", "false"), NGINX_CM, r"are not certificate-bound")),
        ("only tokens exchanged from PSC tokens (RFC 8693)", _claim("demo", "no exchange permission", _realm(_exchange_permission_removed), NGINX_CM, r"does not exchange PSC tokens")),
        ("browser routes: sessions of the token validator (oauth2-proxy)", _claim("demo", "the session sub-request answers 202 itself", _nginx("proxy_pass http://oauth2-proxy.chdemo-gateway.svc.cluster.local:4180/oauth2/auth;", "return 202;"), NGINX_CM, r"is not passed to oauth2-proxy")),
        ("no unbound bearer token accepted", _claim("demo", "oauth2-proxy accepts bearer tokens", _o2("skip_jwt_bearer_tokens = false", "skip_jwt_bearer_tokens = true"), NGINX_CM, r"accepts bearer tokens")),
    ],
    "API-04": [
        ("tokens stay server-side", _claim("demo", "access token passed on", _o2("pass_access_token = false", "pass_access_token = true"), O2_CM, r"tokens are passed on")),
        ("Secure cookies", _claim("demo", "cookie sent over plain HTTP", _o2("cookie_secure = true", "cookie_secure = false"), O2_CM, r"cookie_secure is off")),
        ("HttpOnly cookies", _failing("API-04", r"cookie_httponly is off")),
        ("bounded lifetime (4 h)", _claim("demo", "an 8-hour session", _o2('cookie_expire = "4h"', 'cookie_expire = "8h"'), O2_CM, r"not a lifetime of at most 4h")),
        ("bounded lifetime (30 min idle)", _claim("demo", "sessions never re-validated", _o2('cookie_refresh = "5m"', 'cookie_refresh = "0"'), O2_CM, r"not re-validated at the authorization server")),
        ("bounded lifetime (30 min idle)", _claim("demo", "idle timeout 8 h at the authorization server", _realm(lambda d: d.update({"ssoSessionIdleTimeout": 28800})), REALM_CM, r"not ended after 30 min idle")),
        ("bounded lifetime (4 h)", _claim("demo", "sessions of 10 h at the authorization server", _realm(lambda d: d.update({"ssoSessionMaxLifespan": 36000})), REALM_CM, r"sessions longer than 4 h")),
        ("bounded lifetime (tokens 1-4 h)", _claim("demo", "API tokens of one day", _realm(lambda d: d.update({"accessTokenLifespan": 86400})), REALM_CM, r"API tokens must live 1 to 4 h")),
    ],
    "PSC-01": [
        ("services holding sensitive data have a running PSC login", _claim("demo", "Keycloak not running", _delete("Deployment", "keycloak", "chdemo-authz"), REALM_CM, r"no workload runs the authorization server")),
        ("the login is Pro Santé Connect", _failing("PSC-01", r"is not Pro Santé Connect")),
        ("the login is Pro Santé Connect", _claim("demo", "no PSC identity provider", _realm(lambda d: d.update({"identityProviders": []})), REALM_CM, r"no Pro Santé Connect identity provider")),
        ("the login is offered on every sensitive route", _claim("demo", "the sensitive route reaches no authorization server", _userinfo(_USERINFO, "return 200;"), NGINX_CM, r"offers no PSC login")),
    ],
    "PSC-02": [
        ("authorization-code flow", _claim("demo", "not the OIDC provider", _o2('provider = "oidc"', 'provider = "github"'), O2_CM, r"not the OIDC authorization-code flow")),
        ("scope `openid scope_all`", _claim("demo", "PSC asked scope openid only", _idp_cfg("defaultScope", "openid"), REALM_CM, r"asks scope 'openid', not `openid scope_all`")),
        ("acr_values eidas1", _failing("PSC-02", r"acr_values is 'eidas2', not eidas1")),
        ("acr_values eidas1", _claim("demo", "acr_values not forwarded to PSC", _idp_cfg("forwardParameters", "login_hint"), REALM_CM, r"acr_values is not forwarded")),
        ("acr eidas1 checked on the returned token", _claim("demo", "no post-broker-login check", _realm(_post_broker_flow_dropped), REALM_CM, r"is not denied \(post-broker-login flow\)")),
        ("acr eidas1 checked on the returned token", _claim("demo", "the acr mapper accepts any eidas level", _realm(_acr_mapper_regex), REALM_CM, r"is not denied \(post-broker-login flow\)")),
        ("acr eidas1 checked on the returned token", _claim("demo", "the exchange does not check acr", _realm(_exchange_acr_policy_off), REALM_CM, r"can be exchanged")),
        ("state and nonce checked", _claim("demo", "nonce not checked", _o2("insecure_oidc_skip_nonce = false", "insecure_oidc_skip_nonce = true"), O2_CM, r"nonce is not checked")),
        ("state and nonce checked", _claim("demo", "no PKCE towards PSC", _idp_cfg("pkceEnabled", "false"), REALM_CM, r"PKCE is off")),
    ],
    "PSC-03": [
        ("client authentication by secret or mTLS", _claim("demo", "oauth2-proxy without client secret", _o2('client_secret_file = "/etc/socle/authz-client/client-secret"', ""), O2_CM, r"the client does not authenticate")),
        ("client authentication by secret or mTLS", _claim("demo", "no PSC client authentication", _idp_cfg("clientAuthMethod", "none"), REALM_CM, r"authenticates to PSC with 'none'")),
        ("the secret only in a Kubernetes Secret", _failing("PSC-03", r"the PSC client secret is written in the realm file")),
        ("the secret only in a Kubernetes Secret", _claim("demo", "PSC secret from a ConfigMap", _psc_secret_env_from_configmap, REALM_CM, r"SOCLE_PSC_CLIENT_SECRET \(the PSC client secret\) does not come from a Secret")),
        ("the secret only in a Kubernetes Secret", _claim("demo", "browser client secret written in the realm", _realm(lambda d: _client(d, "oauth2-proxy").update({"secret": "s3cr3t"})), REALM_CM, r"the secret of client oauth2-proxy is written")),
        ("the secret only in a Kubernetes Secret", _claim("demo", "oauth2-proxy secret from a ConfigMap", _env("Deployment", "oauth2-proxy", "oauth2-proxy", {"name": "OAUTH2_PROXY_CLIENT_SECRET", "valueFrom": _HAPI_CONFIG_REF}), O2_CM, r"OAUTH2_PROXY_CLIENT_SECRET not from a Secret")),
        ("the secret only in a Kubernetes Secret", _claim("demo", "oauth2-proxy secret file on the configuration volume", _o2('client_secret_file = "/etc/socle/authz-client/client-secret"', 'client_secret_file = "/etc/socle/oauth2-proxy/client-secret"'), O2_CM, r"client_secret_file .*is not a Secret")),
    ],
    "PSC-04": [
        ("ID tokens verified against the issuer's keys", _claim("demo", "PSC signatures not validated", _idp_cfg("validateSignature", "false"), REALM_CM, r"signatures are not validated")),
        ("ID tokens verified against the issuer's keys", _claim("demo", "PSC keys from another host", _idp_cfg("jwksUrl", "https://keys.example.test/certs"), REALM_CM, r"keys not published by the issuer's host")),
        ("ID tokens verified against the issuer's keys", _claim("demo", "oauth2-proxy: discovery skipped, no keys", _o2("skip_oidc_discovery = false", "skip_oidc_discovery = true"), O2_CM, r"discovery skipped without a JWKS URL")),
        ("production issuer pinned", _claim("chu-exemple-prod", "another realm of the production host", _idp_cfg("issuer", "https://auth.esw.esante.gouv.fr/auth/realms/other"), REALM_CM, r"is not the production issuer")),
        ("IdP TLS always verified", _failing("PSC-04", r"ssl_insecure_skip_verify is on")),
        ("IdP TLS always verified", _claim("demo", "a PSC endpoint over plain HTTP", _idp_cfg("tokenUrl", "http://auth.bas.psc.esante.gouv.fr/token"), REALM_CM, r"not an https URL")),
    ],
    "PSC-05": [
        ("the PSC sandbox never used by a production stack", _failing("PSC-05", r"names the PSC sandbox auth\.bas\.psc")),
        ("the PSC sandbox never used by a production stack", _claim("chu-exemple-prod", "sandbox in an environment variable", _env("Deployment", "hapi-fhir", "hapi-fhir", {"name": "PSC_URL", "value": "https://auth.bas.psc.esante.gouv.fr/"}), ("Deployment", "hapi-fhir"), r"environment names the PSC sandbox")),
        ("the PSC sandbox never used: its wallet host", _claim("chu-exemple-prod", "sandbox wallet as authorization URL", _idp_cfg("authorizationUrl", "https://wallet.bas.psc.esante.gouv.fr/auth"), REALM_CM, r"names the PSC sandbox wallet\.bas\.psc")),
    ],
}

__all__ = ["CLAIMS", "FAILING", "PASSING", "edit_file"]

"""The établissement's authorization server: Keycloak, the server ANS itself chose for Pro Santé Connect
(ansforge/keycloak-prosanteconnect), configured by one realm file imported at start.

The chain it carries (CI-SIS, API « Pro Santé Connectée »; DOMAIN-SOURCES.md):
- Pro Santé Connect is an OIDC identity provider of the realm: authorization on PSC's wallet endpoint, scope
  `openid scope_all`, `acr_values=eidas1` forwarded, the returned `acr` checked (a post-broker-login flow denies
  a login whose PSC token has no `acr=eidas1`), logout propagated to PSC (`backchannelSupported` off: front-channel
  redirect with `id_token_hint`).
- RFC 8693: a PSC access token is only the `subject_token` of a token exchange at this server
  (`token-exchange:v1`, external → internal; the only version of Keycloak 26.7 that exchanges an external token),
  allowed to the registered API clients only, and refused when the subject token's `acr` is not `eidas1`
  (client policy executor `jwt-claim-enforcer`).
- RFC 8705: API clients authenticate with their IGC-Santé ORG certificate (`tls_client_auth`: client authenticator
  `client-x509`, the certificate's subject DN is the client's) and get certificate-bound access tokens
  (`cnf`/`x5t#S256`, `tls.client.certificate.bound.access.tokens`). The gateway presents each API call's token
  and client certificate to the userinfo endpoint, which refuses a token whose binding does not match.
- Lifetimes: access token 1 h by default (1–4 h), SSO session 4 h maximum and 30 min idle (PSC's own limits).

Every value reaches the realm file through `json.dumps`; secrets are `${ENV}` placeholders that Keycloak resolves
from the environment at import (the environment comes from Kubernetes Secrets), never a value in the file.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import BaseModel, ConfigDict, Field

from socle.constants import ANN_REQUIREMENTS, PSC_ACR, PSC_SCOPE

from .common import (
    AuditTarget,
    child,
    config_secret,
    config_volume,
    container_security,
    empty_dir,
    hashed_config_map,
    labels,
    pdb,
    pod_identity,
    resources_spec,
    secret_env,
    secret_volume,
    selector,
    service,
    zone_spread,
)

KEYCLOAK_HTTP_PORT = 8080
KEYCLOAK_MANAGEMENT_PORT = 9000
PSC_ALIAS = "psc"
BROWSER_CLIENT = "oauth2-proxy"
ACR_FLOW = "psc-acr-eidas1"
BROWSER_FLOW = "psc-only"
FIRST_LOGIN_FLOW = "psc-first-login"
# Realm role given by the PSC identity provider's mapper when (and only when) the PSC token carries acr=eidas1;
# re-evaluated at every login (sync mode FORCE).
ACR_ROLE = "psc-acr-eidas1"
EXCHANGE_POLICY = "api-clients-may-exchange-psc-tokens"
ACR_CLIENT_POLICY = "psc-subject-token-acr-eidas1"
# The realm file's placeholders: Keycloak substitutes environment variables at import (`${VAR}`).
ENV_PSC_CLIENT_SECRET = "SOCLE_PSC_CLIENT_SECRET"
ENV_BROWSER_CLIENT_SECRET = "SOCLE_OAUTH2_PROXY_CLIENT_SECRET"
# The header by which the gateway hands the verified client certificate to Keycloak (x509 lookup provider `nginx`).
CLIENT_CERT_HEADER = "ssl-client-cert"
FEATURES = ("token-exchange:v1", "admin-fine-grained-authz:v1")


class ApiClient(BaseModel):
    """An API client (a software of another organisation) identified by its IGC-Santé ORG certificate."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    client_id: str
    subject_dn: str  # RFC 2253 form, as Keycloak's X509 client authenticator compares it
    issuer_dn: str  # the issuing CA's subject DN (RFC 2253): a certificate of another CA with the same DN is refused


class AuthzDatabaseArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str
    port: int = 5432
    name: str = "keycloak"
    credentials_secret: str  # keys username, password
    ca_secret: str  # key ca.crt


class PscEndpoints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    issuer: str
    authorization_url: str  # PSC's wallet
    token_url: str
    userinfo_url: str
    jwks_url: str
    logout_url: str


def psc_endpoints(issuer: str, wallet_host: str) -> PscEndpoints:
    """PSC's endpoints: the Keycloak realm `esante-wallet` of the issuer, authorization on the wallet host
    (`{issuer}/.well-known/wallet-openid-configuration`; DOMAIN-SOURCES.md)."""
    base = f"{issuer}/protocol/openid-connect"
    return PscEndpoints(issuer=issuer, authorization_url=f"https://{wallet_host}/auth", token_url=f"{base}/token",
                        userinfo_url=f"{base}/userinfo", jwks_url=f"{base}/certs", logout_url=f"{base}/logout")


class AuthzArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kit_version: str
    organisation: str
    namespace: str
    image: str
    replicas: int = Field(default=1, ge=1)
    realm: str = "etablissement"
    public_host: str  # the gateway's virtual host of the authorization server
    psc: PscEndpoints
    psc_client_id: str
    psc_client_secret: str  # Secret name (key client-secret)
    psc_client_secret_value: Any = None  # the secret from the stack's encrypted configuration, else a Secret you create
    psc_scope: str = PSC_SCOPE
    psc_acr: str = PSC_ACR
    browser_redirect_uris: Sequence[str]
    browser_client_secret: str = "oauth2-proxy-keycloak-client"  # Secret name (key client-secret)
    # the namespaces of the generated browser client secret besides this one (oauth2-proxy's, the gateway's)
    browser_secret_namespaces: Sequence[str] = ()
    api_clients: Sequence[ApiClient] = ()
    access_token_lifespan: int = Field(default=3600, ge=3600, le=4 * 3600)
    sso_idle: int = Field(default=1800, ge=60, le=1800)
    sso_max: int = Field(default=4 * 3600, ge=600, le=4 * 3600)
    auth_method: Literal["secret"] = "secret"
    syslog_image: str = ""
    database: AuthzDatabaseArgs | None = None  # None: in memory (one replica)
    audit: AuditTarget | None = None
    trust_bundle_secret: str = "igc-sante-trust-bundle"
    service_account: str = "keycloak"


def issuer(args: AuthzArgs) -> str:
    return f"https://{args.public_host}/realms/{args.realm}"


def _execution(authenticator: str, requirement: str, priority: int, config: str | None = None) -> dict:
    e = {"authenticator": authenticator, "authenticatorFlow": False, "requirement": requirement,
         "priority": priority, "userSetupAllowed": False}
    if config:
        e["authenticatorConfig"] = config
    return e


def psc_idp_id(args: AuthzArgs) -> str:
    """The PSC identity provider's internal id: fixed (derived from the realm), since the exchange permission names it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"socle:{args.realm}:idp:{PSC_ALIAS}"))


def exchange_permissions(args: AuthzArgs) -> dict:
    """RFC 8693 external → internal exchange of a PSC token: Keycloak 26.7 (token-exchange:v1) allows it to the
    clients a permission of the realm-management client grants on the identity provider (fine-grained admin
    permissions v1): here exactly the registered API clients."""
    idp = psc_idp_id(args)
    resource, scope = f"idp.resource.{idp}", "token-exchange"
    policies = [{"name": EXCHANGE_POLICY, "type": "client", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
                 "config": {"clients": json.dumps([c.client_id for c in args.api_clients])}}] if args.api_clients else []
    policies.append({"name": f"token-exchange.permission.idp.{idp}", "type": "scope", "logic": "POSITIVE",
                     "decisionStrategy": "UNANIMOUS",
                     "config": {"resources": json.dumps([resource]), "scopes": json.dumps([scope]),
                                "applyPolicies": json.dumps([EXCHANGE_POLICY] if args.api_clients else [])}})
    return {"clientId": "realm-management", "name": "${client_realm-management}", "bearerOnly": True,
            "enabled": True, "authorizationServicesEnabled": True,
            "authorizationSettings": {"allowRemoteResourceManagement": False, "policyEnforcementMode": "ENFORCING",
                                      "decisionStrategy": "UNANIMOUS", "scopes": [{"name": scope}],
                                      "resources": [{"name": resource, "type": "IdentityProvider", "ownerManagedAccess": False,
                                                     "scopes": [{"name": scope}]}],
                                      "policies": policies}}


def realm(args: AuthzArgs, *, psc: PscEndpoints | None = None) -> dict:
    """The realm representation Keycloak imports (`kc.sh start --import-realm`)."""
    psc = psc or args.psc
    api_ids = [c.client_id for c in args.api_clients]
    clients = [{
        "clientId": BROWSER_CLIENT,
        "name": "Gateway browser sessions (oauth2-proxy)",
        "enabled": True, "protocol": "openid-connect", "publicClient": False,
        "clientAuthenticatorType": "client-secret", "secret": "${" + ENV_BROWSER_CLIENT_SECRET + "}",
        "standardFlowEnabled": True, "implicitFlowEnabled": False, "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False, "frontchannelLogout": True, "fullScopeAllowed": False,
        "redirectUris": list(args.browser_redirect_uris),
        "attributes": {"pkce.code.challenge.method": "S256",
                       "post.logout.redirect.uris": "##".join(args.browser_redirect_uris),
                       "use.refresh.tokens": "true"},
        "defaultClientScopes": ["profile", "roles", "basic"], "optionalClientScopes": [],
    }]
    clients.append(exchange_permissions(args))
    for c in args.api_clients:
        clients.append({
            "clientId": c.client_id,
            "name": f"API client {c.client_id} (IGC-Santé ORG certificate)",
            "enabled": True, "protocol": "openid-connect", "publicClient": False, "bearerOnly": False,
            # RFC 8705 §2.1.1 tls_client_auth: the certificate's subject DN is the client's
            "clientAuthenticatorType": "client-x509",
            "standardFlowEnabled": False, "implicitFlowEnabled": False, "directAccessGrantsEnabled": False,
            "serviceAccountsEnabled": False, "fullScopeAllowed": False,
            "attributes": {"x509.subjectdn": c.subject_dn, "x509.allow.regex.pattern.comparison": "false",
                           "x509.casubjectdn": c.issuer_dn,
                           # RFC 8705 §3: access tokens bound to the certificate (cnf / x5t#S256)
                           "tls.client.certificate.bound.access.tokens": "true",
                           "access.token.lifespan": str(args.access_token_lifespan)},
            "defaultClientScopes": ["profile", "roles", "basic"], "optionalClientScopes": [],
        })
    return {
        "realm": args.realm,
        "displayName": args.organisation,
        "enabled": True,
        "sslRequired": "external",
        "registrationAllowed": False, "loginWithEmailAllowed": False, "resetPasswordAllowed": False,
        "rememberMe": False, "editUsernameAllowed": False, "bruteForceProtected": True,
        "revokeRefreshToken": True, "refreshTokenMaxReuse": 0,
        # API-04 / PSC sessions: 1 h access tokens (1-4 h), SSO session 30 min idle and 4 h at most
        "accessTokenLifespan": args.access_token_lifespan,
        "ssoSessionIdleTimeout": args.sso_idle,
        "ssoSessionMaxLifespan": args.sso_max,
        "clientSessionIdleTimeout": args.sso_idle,
        "clientSessionMaxLifespan": args.sso_max,
        "offlineSessionMaxLifespanEnabled": True, "offlineSessionMaxLifespan": args.sso_max,
        "roles": {"realm": [{"name": ACR_ROLE, "description": f"the last PSC login had acr={args.psc_acr}"}]},
        "clients": clients,
        "identityProviders": [{
            "alias": PSC_ALIAS, "internalId": psc_idp_id(args), "displayName": "Pro Santé Connect", "providerId": "oidc", "enabled": True,
            "trustEmail": False, "storeToken": False, "addReadTokenRoleOnCreate": False,
            "linkOnly": False, "hideOnLogin": False,
            "firstBrokerLoginFlowAlias": FIRST_LOGIN_FLOW,
            "postBrokerLoginFlowAlias": ACR_FLOW,
            "config": {
                "issuer": psc.issuer,
                "authorizationUrl": psc.authorization_url,
                "tokenUrl": psc.token_url,
                "userInfoUrl": psc.userinfo_url,
                "jwksUrl": psc.jwks_url, "useJwksUrl": "true", "validateSignature": "true",
                # PSC logout: ending a session here ends it at PSC (server to server, with id_token_hint)
                "logoutUrl": psc.logout_url, "backchannelSupported": "true", "sendIdTokenOnLogout": "true",
                "sendClientIdOnLogout": "true",
                "clientId": args.psc_client_id,
                "clientSecret": "${" + ENV_PSC_CLIENT_SECRET + "}",
                "clientAuthMethod": "client_secret_basic",
                "defaultScope": args.psc_scope,
                # the browser's acr_values (oauth2-proxy asks eidas1) is forwarded to PSC
                "forwardParameters": "acr_values",
                "pkceEnabled": "true", "pkceMethod": "S256",
                "syncMode": "FORCE", "disableUserInfo": "false", "isAccessTokenJWT": "true",
            },
        }],
        "identityProviderMappers": [{
            "name": "acr-eidas1", "identityProviderAlias": PSC_ALIAS, "identityProviderMapper": "oidc-advanced-role-idp-mapper",
            "config": {"syncMode": "FORCE", "are.claim.values.regex": "false", "role": ACR_ROLE,
                       "claims": json.dumps([{"key": "acr", "value": args.psc_acr}])},
        }],
        # PSC identities carry no e-mail: the profile is PSC's, never completed by hand here
        "requiredActions": [{"alias": "VERIFY_PROFILE", "name": "Verify Profile", "providerId": "VERIFY_PROFILE",
                             "enabled": False, "defaultAction": False, "priority": 90, "config": {}}],
        # no local login: the browser goes straight to Pro Santé Connect (or keeps its session here)
        "browserFlow": BROWSER_FLOW,
        "authenticationFlows": [
            {"alias": BROWSER_FLOW, "description": "PSC-01: Pro Santé Connect is the only way to log in",
             "providerId": "basic-flow", "topLevel": True, "builtIn": False, "authenticationExecutions": [
                 _execution("auth-cookie", "ALTERNATIVE", 10),
                 _execution("identity-provider-redirector", "ALTERNATIVE", 20, f"{BROWSER_FLOW}-psc")]},
            {"alias": FIRST_LOGIN_FLOW, "description": "a practitioner's first PSC login creates its account here "
                                                        "(PSC gives no e-mail: no profile review, no account linking)",
             "providerId": "basic-flow", "topLevel": True, "builtIn": False, "authenticationExecutions": [
                 _execution("idp-create-user-if-unique", "REQUIRED", 10)]},
            {"alias": ACR_FLOW, "description": f"PSC-02: deny a PSC login whose token has no acr={args.psc_acr}",
             "providerId": "basic-flow", "topLevel": True, "builtIn": False, "authenticationExecutions": [
                 {"flowAlias": f"{ACR_FLOW}-missing", "authenticatorFlow": True, "requirement": "CONDITIONAL",
                  "priority": 10, "userSetupAllowed": False},
                 # a flow succeeds only through a required step: this one lets the eidas1 login through
                 _execution("allow-access-authenticator", "REQUIRED", 20)]},
            {"alias": f"{ACR_FLOW}-missing", "description": f"the user lacks role {ACR_ROLE}",
             "providerId": "basic-flow", "topLevel": False, "builtIn": False, "authenticationExecutions": [
                 _execution("conditional-user-role", "REQUIRED", 10, f"{ACR_FLOW}-role"),
                 _execution("deny-access-authenticator", "REQUIRED", 20, f"{ACR_FLOW}-deny")]},
        ],
        "authenticatorConfig": [
            {"alias": f"{BROWSER_FLOW}-psc", "config": {"defaultProvider": PSC_ALIAS}},
            {"alias": f"{ACR_FLOW}-role", "config": {"condUserRole": ACR_ROLE, "negate": "true"}},
            {"alias": f"{ACR_FLOW}-deny", "config": {"denyErrorMessage": f"Pro Santé Connect: acr {args.psc_acr} required"}},
        ],
        "clientPolicies": {"policies": [{
            "name": ACR_CLIENT_POLICY, "enabled": True,
            "description": f"PSC-02 / API-03: the subject token of an exchange must carry acr={args.psc_acr}",
            # the executor acts only on token-exchange (and JWT authorization grant) requests; the `grant-type`
            # condition is not evaluated on the token-exchange event, hence any client
            "conditions": [{"condition": "any-client", "configuration": {}}],
            "profiles": [ACR_CLIENT_POLICY]}]},
        "clientProfiles": {"profiles": [{
            "name": ACR_CLIENT_POLICY, "description": f"acr={args.psc_acr} in the subject token",
            "executors": [{"executor": "jwt-claim-enforcer",
                           "configuration": {"claim-name": "acr", "allowed-value": f"^{args.psc_acr}$"}}]}]},
        "attributes": {"api.clients": json.dumps(api_ids)},
    }


def realm_json(args: AuthzArgs, *, psc: PscEndpoints | None = None) -> str:
    """The realm file: JSON by json.dumps, compact, sorted keys (same input, same bytes). Every secret in it is a
    `${ENV}` placeholder (PSC-03 checks each); K8S-08's line-based secret heuristic does not read JSON."""
    return json.dumps(realm(args, psc=psc), sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


KEYCLOAK_UID = 10001  # any uid: the distribution is copied into an emptyDir the pod owns
KC_HOME = "/opt/socle-keycloak"  # the pod's built copy of the distribution (an emptyDir)
REALM_FILE = "realm.json"
DB_CA_DIR = "/etc/socle/db-ca"
# JGroups between the replicas (Keycloak 26's default `jdbc-ping` stack: discovery through the database)
CLUSTER_PORTS = (7800, 57800)


def build_options(features: Sequence[str] = FEATURES, db: str = "dev-mem") -> list[str]:
    """`kc.sh build` options (build-time): the features of the chain, health, the certificate lookup of a server
    behind NGINX. The database is in memory: every setting comes from the realm file at each start, Keycloak
    keeps only sessions (lost on restart: users log in again through PSC)."""
    return [f"--db={db}", f"--features={','.join(features)}", "--health-enabled=true",
            "--spi-x509cert-lookup--provider=nginx"]


def db_options(args: AuthzArgs) -> list[str]:
    """The shared database (K8S-09): PostgreSQL over TLS verified against its CA (verify-full), the credentials
    from the environment (a Secret)."""
    if args.database is None:
        return []
    from .fhir import jdbc_url
    db = args.database
    return [f"--db-url={jdbc_url(db.host, db.port, db.name, f'{DB_CA_DIR}/ca.crt')}"]


def start_options(args: AuthzArgs, *, http_host: str = "0.0.0.0", http_port: int = KEYCLOAK_HTTP_PORT,
                  management_port: int = KEYCLOAK_MANAGEMENT_PORT, truststore: str = "/etc/socle/tls/trust/ca.crt",
                  hostname: str | None = None) -> list[str]:
    """`kc.sh start --optimized` options (run time), the same in the pod and in `socle verify`."""
    return [
        "start", "--optimized", "--import-realm",
        "--http-enabled=true", f"--http-host={http_host}", f"--http-port={http_port}",
        f"--http-management-port={management_port}",
        # the issuer is always the public URL, whatever host a request used
        f"--hostname={hostname or 'https://' + args.public_host}", "--hostname-backchannel-dynamic=false",
        "--proxy-headers=xforwarded",
        # API-02: the client certificate NGINX verified (against the health PKI and its CRL), URL-encoded PEM
        f"--spi-x509cert-lookup--nginx--ssl-client-cert={CLIENT_CERT_HEADER}",
        "--spi-x509cert-lookup--nginx--trust-proxy-verification=true",
        "--spi-x509cert-lookup--nginx--cert-is-url-encoded=true",
        # PKI-01: the client's chain is also built against the health PKI's CAs (x509.casubjectdn)
        f"--truststore-paths={truststore}",
        "--log-console-output=json",
        *db_options(args),
    ]


def config_files(args: AuthzArgs) -> dict[str, str]:
    return {REALM_FILE: realm_json(args)}


class AuthzServer(pulumi.ComponentResource):
    """Keycloak, one Deployment: an init container copies the image's distribution into an emptyDir and runs
    `kc.sh build` there (the root file system stays read-only), then `kc.sh start --optimized` imports the realm."""

    def __init__(self, name: str, args: AuthzArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:authz:AuthzServer", name, None, opts)
        ns = args.namespace
        lbl = labels("authz", "keycloak", ns)
        # PSC-03: the secret between oauth2-proxy and this server is generated, and reaches both only as a Secret
        browser = random.RandomPassword(f"{ns}-browser-client-secret", length=48, special=False, opts=child(self))
        for target in (ns, *args.browser_secret_namespaces):
            k8s.core.v1.Secret(f"{target}-{args.browser_client_secret}",
                               metadata={"name": args.browser_client_secret, "namespace": target,
                                         "labels": labels("authz", "keycloak", target)},
                               type="Opaque", string_data={"client-secret": browser.result}, opts=child(self))
        if args.psc_client_secret_value is not None:  # PSC-03: from the stack's encrypted configuration
            config_secret(self, ns, args.psc_client_secret, {"client-secret": args.psc_client_secret_value},
                          "psc.client_secret_value", lbl)
        sel = selector("keycloak", ns)
        realm_cm = hashed_config_map(self, ns, "keycloak-realm", lbl, config_files(args),
                                     {ANN_REQUIREMENTS: "API-02 API-03 API-04 PSC-01 PSC-02 PSC-03 PSC-04 PSC-05"})
        mounts = [{"name": "keycloak", "mountPath": KC_HOME}, {"name": "tmp", "mountPath": "/tmp"}]
        init = {
            "name": "keycloak-build", "image": args.image, "imagePullPolicy": "Always",
            "command": ["sh", "-c", f'cp -a /opt/keycloak/. {KC_HOME}/ && exec {KC_HOME}/bin/kc.sh build "$@"', "kc-build",
                        *build_options(db="postgres" if args.database else "dev-mem")],
            "securityContext": container_security(run_as_user=KEYCLOAK_UID),
            "resources": resources_spec("500m", "512Mi", "2", "1Gi"),
            "volumeMounts": mounts,
        }
        container = {
            "name": "keycloak", "image": args.image, "imagePullPolicy": "Always",
            "command": [f"{KC_HOME}/bin/kc.sh"], "args": start_options(args),
            "env": [secret_env(ENV_PSC_CLIENT_SECRET, args.psc_client_secret, "client-secret"),
                    secret_env(ENV_BROWSER_CLIENT_SECRET, args.browser_client_secret, "client-secret"),
                    *([secret_env("KC_DB_USERNAME", args.database.credentials_secret, "username"),
                       secret_env("KC_DB_PASSWORD", args.database.credentials_secret, "password")] if args.database else [])],
            "ports": [{"name": "http", "containerPort": KEYCLOAK_HTTP_PORT, "protocol": "TCP"},
                      {"name": "management", "containerPort": KEYCLOAK_MANAGEMENT_PORT, "protocol": "TCP"}],
            "securityContext": container_security(run_as_user=KEYCLOAK_UID),
            "resources": resources_spec("500m", "768Mi", "2", "1536Mi"),
            "readinessProbe": {"httpGet": {"path": "/health/ready", "port": KEYCLOAK_MANAGEMENT_PORT}, "periodSeconds": 10},
            "livenessProbe": {"httpGet": {"path": "/health/live", "port": KEYCLOAK_MANAGEMENT_PORT},
                              "periodSeconds": 20, "initialDelaySeconds": 120},
            "volumeMounts": [*mounts, {"name": "realm", "mountPath": f"{KC_HOME}/data/import", "readOnly": True},
                             {"name": "trust-bundle", "mountPath": "/etc/socle/tls/trust", "readOnly": True},
                             *([{"name": "db-ca", "mountPath": DB_CA_DIR, "readOnly": True}] if args.database else [])],
        }
        if args.database:
            container["ports"] += [{"name": f"jgroups-{i}", "containerPort": port, "protocol": "TCP"}
                                   for i, port in enumerate(CLUSTER_PORTS)]
        k8s.apps.v1.Deployment(
            f"{ns}-keycloak",
            metadata={"name": "keycloak", "namespace": ns, "labels": lbl},
            spec={"replicas": args.replicas, "selector": {"matchLabels": sel},
                  "template": {"metadata": {"labels": lbl}, "spec": {
                      **pod_identity(args.service_account, fs_group=KEYCLOAK_UID),
                      "initContainers": [init], "containers": [container],
                      "volumes": [empty_dir("keycloak", "1Gi"), empty_dir("tmp", "256Mi"),
                                  config_volume("realm", realm_cm),
                                  secret_volume("trust-bundle", args.trust_bundle_secret, mode=0o444, items=[("ca.crt", "ca.crt")]),
                                  *([secret_volume("db-ca", args.database.ca_secret, mode=0o444, items=[("ca.crt", "ca.crt")])]
                                    if args.database else [])],
                      "topologySpreadConstraints": zone_spread(sel),
                  }}},
            opts=child(self))
        if args.replicas >= 2:
            pdb("keycloak", ns, sel, lbl, self)
        service(self, ns, "keycloak", lbl, sel, [("http", KEYCLOAK_HTTP_PORT, "http")])
        self.register_outputs({})

"""Passing and failing fixtures of every checked control, built from the renders of the example stacks.

A failing fixture is one deliberate violation of the control's rule in one object of a render; the control
must fail on exactly that object. A passing fixture is a render (sometimes with the rule met where the example
stack waives it) on which the control passes.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Callable

from tests.conftest import rendered_stack

Objects = list[dict]


def objects_of(stack: str) -> Objects:
    return copy.deepcopy(rendered_stack(stack)[1].objects)


def find(objs: Objects, kind: str, name: str, namespace: str | None = None) -> dict:
    """The object of that kind whose name is `name` or starts with `name-` (hashed ConfigMap names)."""
    hits = [o for o in objs if o["kind"] == kind
            and (o["metadata"]["name"] == name or re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{10}}", o["metadata"]["name"]))
            and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} matches"
    return hits[0]


def edit_file(objs: Objects, cm_name: str, key: str, old: str, new: str, count: int = 1) -> None:
    """Replace text in a ConfigMap file; the text must be there (a fixture never silently does nothing)."""
    cm = find(objs, "ConfigMap", cm_name)
    text = cm["data"][key]
    assert old in text, f"{cm_name}/{key} has no {old!r}"
    cm["data"][key] = text.replace(old, new, count)


def edit_regex(objs: Objects, cm_name: str, key: str, pattern: str, new: str) -> None:
    cm = find(objs, "ConfigMap", cm_name)
    text, n = re.subn(pattern, new, cm["data"][key], flags=re.M)
    assert n, f"{cm_name}/{key}: {pattern!r} not found"
    cm["data"][key] = text


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container(obj: dict, name: str) -> dict:
    return next(c for c in pod_spec(obj)["containers"] if c["name"] == name)


def dmp_connector(secrets: list[str]) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "dmp-connector", "namespace": "chdemo-fhir", "labels": {"socle.esante.fr/block": "dmp"}},
        "spec": {"selector": {"matchLabels": {"app": "dmp"}}, "template": {
            "metadata": {"labels": {"app": "dmp"}},
            "spec": {"automountServiceAccountToken": False, "containers": [{"name": "dmp", "image": "docker.io/library/alpine:3.21.3"}],
                     "volumes": [{"name": f"cert-{i}", "secret": {"secretName": s}} for i, s in enumerate(secrets)]}}},
    }


@dataclass(frozen=True)
class Fixture:
    stack: str
    why: str
    mutate: Callable[[Objects], None] | None = None
    expect: tuple[str, str] | None = None  # (kind, name or name prefix) of the object that must fail
    reason: str = ""  # CLAIMS: a pattern the finding's reason matches (it names the claim violated)
    status: str = "fail"  # CLAIMS: the verdict on that object (evidence-missing, declared where that is the right one)


def _set(path_fn: Callable[[Objects], dict], key: str, value) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        path_fn(objs)[key] = value
    return mutate


def _chain(*fns: Callable[[Objects], None]) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        for fn in fns:
            fn(objs)
    return mutate


def _nginx(old: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_file(objs, "gateway-nginx", "nginx.conf", old, new)


def _o2(old: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_file(objs, "oauth2-proxy", "oauth2-proxy.cfg", old, new)


def _main_cf(pattern: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_regex(objs, "postfix", "main.cf", pattern, new)


def _hapi(old: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_file(objs, "hapi-fhir", "application.yaml", old, new)


def _aggregator(old: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_file(objs, "rsyslog-aggregator", "rsyslog.conf", old, new)


def _routes(objs: Objects) -> None:
    cm = find(objs, "ConfigMap", "gateway-nginx")
    routes = json.loads(cm["metadata"]["annotations"]["socle.esante.fr/routes"])
    routes[0]["owner"] = ""
    cm["metadata"]["annotations"]["socle.esante.fr/routes"] = json.dumps(routes)


def _literal_password(objs: Objects) -> None:
    env = container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir")["env"]
    i = next(i for i, e in enumerate(env) if e["name"] == "DB_PASSWORD")
    env[i] = {"name": "DB_PASSWORD", "value": "hunter2-in-clear"}


def _literal_api_key(objs: Objects) -> None:
    env = container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir")["env"]
    i = next(i for i, e in enumerate(env) if e["name"] == "ESANTE_API_KEY")
    env[i] = {"name": "ESANTE_API_KEY", "value": "0123456789abcdef"}


def _no_crl_refresher(objs: Objects) -> None:
    spec = pod_spec(find(objs, "Deployment", "gateway"))
    spec["containers"] = [c for c in spec["containers"] if c["name"] != "crl-refresh"]


def _trust_from_configmap(objs: Objects) -> None:
    spec = pod_spec(find(objs, "Deployment", "gateway"))
    vol = next(v for v in spec["volumes"] if v["name"] == "trust-bundle")
    vol.pop("secret")
    vol["configMap"] = {"name": "some-ca-bundle"}


def _harden_postfix(objs: Objects) -> None:
    c = container(find(objs, "StatefulSet", "postfix"), "postfix")
    c["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": 100,
                            "seccompProfile": {"type": "RuntimeDefault"}}
    pod_spec(find(objs, "StatefulSet", "postfix"))["securityContext"]["runAsNonRoot"] = True


def _no_limits(objs: Objects) -> None:
    container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir")["resources"].pop("limits")


def _privileged(objs: Objects) -> None:
    container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir")["securityContext"]["privileged"] = True


def _delete(kind: str, name: str, namespace: str | None) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        target = find(objs, kind, name, namespace)
        objs.remove(target)
    return mutate


def _ns_label(name: str, level: str) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        find(objs, "Namespace", name)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = level
    return mutate


def _add(obj: dict) -> Callable[[Objects], None]:
    return lambda objs: objs.append(copy.deepcopy(obj))


def _cluster_role_reads_secrets(objs: Objects) -> None:
    find(objs, "ClusterRole", "socle-auditor")["rules"][0]["resources"].append("secrets")


# One failing fixture per checked control: (stack, why, mutation, object that must fail).
FAILING: dict[str, Fixture] = {
    "TLS-01": Fixture("demo", "TLS 1.0 offered by the gateway", _nginx("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.2 TLSv1.3;"), ("ConfigMap", "gateway-nginx")),
    "TLS-02": Fixture("demo", "a CBC suite in the gateway list", _nginx("ssl_ciphers ECDHE", "ssl_ciphers AES128-SHA:ECDHE"), ("ConfigMap", "gateway-nginx")),
    "TLS-03": Fixture("demo", "no HSTS header", _nginx('add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;', ""), ("ConfigMap", "gateway-nginx")),
    "PKI-01": Fixture("demo", "client CAs from a ConfigMap, not the trust bundle Secret", _trust_from_configmap, ("ConfigMap", "gateway-nginx")),
    "PKI-02": Fixture("chu-exemple-prod", "CRL never refreshed (no refresher container)", _no_crl_refresher, ("Deployment", "gateway")),
    "API-01": Fixture("demo", "sensitive route without client certificate", _nginx("ssl_verify_client on;", "ssl_verify_client off;"), ("ConfigMap", "gateway-nginx")),
    "API-03": Fixture("demo", "token not checked", _nginx("auth_request /oauth2/auth;", ""), ("ConfigMap", "gateway-nginx")),
    "API-04": Fixture("demo", "session cookie readable by scripts", _o2("cookie_httponly = true", "cookie_httponly = false"), ("ConfigMap", "oauth2-proxy")),
    "GW-01": Fixture("demo", "route without owner", _routes, ("ConfigMap", "gateway-nginx")),
    "GW-02": Fixture("demo", "neither certificate nor token", _chain(_nginx("ssl_verify_client on;", "ssl_verify_client off;"), _nginx("auth_request /oauth2/auth;", "")), ("ConfigMap", "gateway-nginx")),
    "GW-03": Fixture("demo", "unknown host names answered", _nginx("ssl_reject_handshake on;", ""), ("ConfigMap", "gateway-nginx")),
    "GW-04": Fixture("demo", "health route accepts any method", _nginx("limit_except GET { deny all; }", ""), ("ConfigMap", "gateway-nginx")),
    "GW-05": Fixture("demo", "request bodies logged", _nginx('"user":"$socle_user"', '"user":"$socle_user","body":"$request_body"'), ("ConfigMap", "gateway-nginx")),
    "GW-06": Fixture("demo", "no rate limit", _nginx("limit_req zone=api_fhir burst=200 nodelay;", ""), ("ConfigMap", "gateway-nginx")),
    "PSC-01": Fixture("demo", "an OIDC issuer that is not Pro Santé Connect", _o2("https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet", "https://login.example.test/realms/x"), ("ConfigMap", "oauth2-proxy")),
    "PSC-02": Fixture("demo", "acr_values not eidas1", _o2('acr_values = "eidas1"', 'acr_values = "eidas2"'), ("ConfigMap", "oauth2-proxy")),
    "PSC-03": Fixture("demo", "client secret written in the file", _o2('client_id = "chdemo-sandbox"', 'client_id = "chdemo-sandbox"\nclient_secret = "s3cr3t-value"'), ("ConfigMap", "oauth2-proxy")),
    "PSC-04": Fixture("demo", "IdP TLS verification off", _o2("ssl_insecure_skip_verify = false", "ssl_insecure_skip_verify = true"), ("ConfigMap", "oauth2-proxy")),
    "PSC-05": Fixture("chu-exemple-prod", "sandbox issuer in production", _o2("https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet", "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"), ("ConfigMap", "oauth2-proxy")),
    "FHIR-01": Fixture("demo", "FHIR R5", _hapi("fhir_version: R4", "fhir_version: R5"), ("ConfigMap", "hapi-fhir")),
    "FHIR-02": Fixture("demo", "another terminology server", _hapi("url: https://smt.esante.gouv.fr/fhir", "url: https://tx.fhir.org/r4"), ("ConfigMap", "hapi-fhir")),
    "FHIR-03": Fixture("demo", "Annuaire Santé key as a literal", _literal_api_key, ("ConfigMap", "hapi-fhir")),
    "FHIR-04": Fixture("chu-exemple-prod", "validation off in production", _hapi("requests_enabled: true", "requests_enabled: false"), ("ConfigMap", "hapi-fhir")),
    "INS-01": Fixture("demo", "FR Core not loaded", _hapi("name: hl7.fhir.fr.core", "name: hl7.fhir.us.core"), ("ConfigMap", "hapi-fhir")),
    "INS-02": Fixture("chu-exemple-prod", "test INS system in production", _hapi("- urn:oid:1.2.250.1.213.1.4.8", "- urn:oid:1.2.250.1.213.1.4.8\n  - urn:oid:1.2.250.1.213.1.4.10"), ("ConfigMap", "hapi-fhir")),
    "DMP-01": Fixture("demo", "DMP connector with a single certificate", _add(dmp_connector(["dmp-auth"])), ("Deployment", "dmp-connector")),
    "MSS-01": Fixture("demo", "STARTTLS optional", _main_cf(r"^smtpd_tls_security_level = encrypt$", "smtpd_tls_security_level = may"), ("ConfigMap", "postfix")),
    "MSS-02": Fixture("demo", "TLS 1.0 allowed on SMTP", _main_cf(r"^smtpd_tls_mandatory_protocols = .*$", "smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3"), ("ConfigMap", "postfix")),
    "MSS-03": Fixture("demo", "a suite outside the MSSanté list", _main_cf(r"^tls_high_cipherlist = (.*)$", r"tls_high_cipherlist = \1:ECDHE-RSA-CHACHA20-POLY1305"), ("ConfigMap", "postfix")),
    "MSS-04": Fixture("demo", "outbound peers not verified", _main_cf(r"^smtp_tls_security_level = secure$", "smtp_tls_security_level = may"), ("ConfigMap", "postfix")),
    "MSS-05": Fixture("demo", "any recipient domain accepted", _main_cf(r"^smtpd_recipient_restrictions = .*$", "smtpd_recipient_restrictions = permit"), ("ConfigMap", "postfix")),
    "MSS-06": Fixture("demo", "no client certificate required", _main_cf(r"^smtpd_tls_req_ccert = yes$", "smtpd_tls_req_ccert = no"), ("ConfigMap", "postfix")),
    "MSS-07": Fixture("demo", "whole sessions logged", _main_cf(r"^debug_peer_list =$", "debug_peer_list = 0.0.0.0/0"), ("ConfigMap", "postfix")),
    "MSS-08": Fixture("demo", "mailboxes kept 400 days", lambda objs: find(objs, "StatefulSet", "postfix")["metadata"]["annotations"].update({"socle.esante.fr/mailbox-purge-days": "400"}), ("StatefulSet", "postfix")),
    "TRACE-01": Fixture("demo", "records kept 30 days", lambda objs: edit_file(objs, "audit-seal", "seal.sh", "RETENTION_DAYS=365", "RETENTION_DAYS=30"), ("ConfigMap", "audit-seal")),
    "TRACE-02": Fixture("demo", "records lose the sending peer", _aggregator('property(outname="peer" name="fromhost" format="jsonf")', ""), ("ConfigMap", "rsyslog-aggregator")),
    "TRACE-04": Fixture("demo", "audit files writable by anyone", _aggregator('fileCreateMode="0640"', 'fileCreateMode="0666"'), ("ConfigMap", "rsyslog-aggregator")),
    "TRACE-05": Fixture("demo", "senders not authenticated", _aggregator('streamDriver.authMode="x509/certvalid"', 'streamDriver.authMode="anon"'), ("ConfigMap", "rsyslog-aggregator")),
    "HDS-01": Fixture("demo", "backups in a region outside the EEA", lambda objs: find(objs, "BackupStorageLocation", "socle-second-region")["metadata"]["labels"].update({"socle.esante.fr/region-country": "US"}), ("BackupStorageLocation", "socle-second-region")),
    "HDS-04": Fixture("demo", "volumes deleted with their claims", _set(lambda objs: find(objs, "StorageClass", "socle-health-data"), "reclaimPolicy", "Delete"), ("StorageClass", "socle-health-data")),
    "BCK-01": Fixture("demo", "daily backups stay in the cluster's default location", lambda objs: find(objs, "Schedule", "socle-daily")["spec"]["template"].update({"storageLocation": "default"}), ("Schedule", "socle-daily")),
    "K8S-01": Fixture("demo", "namespace enforcing privileged", _ns_label("chdemo-fhir", "privileged"), ("Namespace", "chdemo-fhir")),
    "K8S-02": Fixture("demo", "default-deny policy missing", _delete("NetworkPolicy", "default-deny-all", "chdemo-fhir"), ("Namespace", "chdemo-fhir")),
    "K8S-03": Fixture("demo", "privileged container", _privileged, ("Deployment", "hapi-fhir")),
    "K8S-04": Fixture("demo", "container without limits", _no_limits, ("Deployment", "hapi-fhir")),
    "K8S-05": Fixture("demo", "image tag latest", lambda objs: container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir").update({"image": "docker.io/hapiproject/hapi:latest"}), ("Deployment", "hapi-fhir")),
    "K8S-06": Fixture("demo", "service account token mounted", _set(lambda objs: pod_spec(find(objs, "Deployment", "gateway")), "automountServiceAccountToken", True), ("Deployment", "gateway")),
    "K8S-07": Fixture("demo", "NodePort service", lambda objs: find(objs, "Service", "hapi-fhir")["spec"].update({"type": "NodePort"}), ("Service", "hapi-fhir")),
    "K8S-08": Fixture("demo", "database password as a literal env value", _literal_password, ("Deployment", "hapi-fhir")),
    "K8S-09": Fixture("chu-exemple-prod", "one replica in production", _set(lambda objs: find(objs, "Deployment", "gateway")["spec"], "replicas", 1), ("Deployment", "gateway")),
    "K8S-10": Fixture("demo", "auditors can read Secrets", _cluster_role_reads_secrets, ("ClusterRole", "socle-auditor")),
    "K8S-11": Fixture("demo", "the privileged-container policy unbound", _delete("ValidatingAdmissionPolicyBinding", "socle-k8s-03", None),
                      ("ValidatingAdmissionPolicy", "socle-k8s-03")),
}

def _encrypted_driver(objs: Objects) -> None:
    sc = find(objs, "StorageClass", "socle-health-data")
    sc["provisioner"], sc["parameters"] = "csi.scaleway.com", {"encrypted": "true", "type": "sbs-5k"}


# Where the control passes: the demo render unless said otherwise.
PASSING: dict[str, Fixture] = {
    "PKI-02": Fixture("chu-exemple-prod", "CRL refreshed beside NGINX"),
    "MSS-06": Fixture("chu-exemple-prod", "organisation certificate required and one allowed to relay"),
    "PSC-05": Fixture("chu-exemple-prod", "production issuer"),
    "K8S-09": Fixture("chu-exemple-prod", "2 replicas, PDBs, zone spread"),
    "DMP-01": Fixture("demo", "DMP connector with distinct authentication and signing certificates", _add(dmp_connector(["dmp-auth", "dmp-sign"]))),
    "K8S-01": Fixture("demo", "the relay namespace made restricted", _ns_label("chdemo-mss", "restricted")),
    "K8S-03": Fixture("demo", "the postfix container hardened", _harden_postfix),
    "HDS-04": Fixture("demo", "a driver whose encryption parameter the audit reads, set to true", _encrypted_driver),
}


def passing(control_id: str) -> Fixture:
    return PASSING.get(control_id, Fixture("demo", "the demo render"))


def build(fixture: Fixture) -> Objects:
    objs = objects_of(fixture.stack)
    if fixture.mutate:
        fixture.mutate(objs)
    return objs


# --- every claim of every checked control's title, each violated on its own (issue 9) ------------------------
#
# A control's title makes claims ("second region", "in the EEA", "daily kept 30 days"...); each one gets a fixture
# that violates that claim alone in the real render, the object that must fail and a pattern of the reason, which
# names the claim. A claim with several code paths (a listener, a master.cf override) has one fixture per path.

def _claim(stack: str, why: str, mutate: Callable[[Objects], None] | None, expect: tuple[str, str], reason: str,
           status: str = "fail") -> Fixture:
    return Fixture(stack, why, mutate, expect, reason, status)


def _failing(control_id: str, reason: str) -> Fixture:
    """The control's FAILING fixture, with the reason that names its claim."""
    from dataclasses import replace

    return replace(FAILING[control_id], reason=reason)


def _file(cm_name: str, key: str, old: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_file(objs, cm_name, key, old, new)


def _nginx_re(pattern: str, new: str) -> Callable[[Objects], None]:
    return lambda objs: edit_regex(objs, "gateway-nginx", "nginx.conf", pattern, new)


def _master_override(option: str) -> Callable[[Objects], None]:
    """A `-o` override of the relay's smtpd service in master.cf."""
    return _file("postfix", "master.cf", "  -o syslog_name=postfix/mssante", f"  -o syslog_name=postfix/mssante\n  -o {option}")


def _relay_forwarder(old: str, new: str) -> Callable[[Objects], None]:
    return _file("relay-log-forwarder", "rsyslog.conf", old, new)


def _seal(old: str, new: str) -> Callable[[Objects], None]:
    return _file("audit-seal", "seal.sh", old, new)


def _route(fn: Callable[[list[dict]], None]) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        cm = find(objs, "ConfigMap", "gateway-nginx")
        routes = json.loads(cm["metadata"]["annotations"]["socle.esante.fr/routes"])
        fn(routes)
        cm["metadata"]["annotations"]["socle.esante.fr/routes"] = json.dumps(routes)
    return mutate


def _workload(kind: str, name: str) -> Callable[[Objects], dict]:
    return lambda objs: find(objs, kind, name)


def _hapi_container(fn: Callable[[dict], None]) -> Callable[[Objects], None]:
    return lambda objs: fn(container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir"))


def _security(key: str, value) -> Callable[[Objects], None]:
    return _hapi_container(lambda c: c["securityContext"].update({key: value}))


def _env(kind: str, name: str, cname: str, entry: dict) -> Callable[[Objects], None]:
    """Set (or replace) one environment variable of a container."""
    def mutate(objs: Objects) -> None:
        env = container(find(objs, kind, name), cname).setdefault("env", [])
        env[:] = [e for e in env if e["name"] != entry["name"]] + [entry]
    return mutate


def _drop_container(kind: str, name: str, cname: str) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        spec = pod_spec(find(objs, kind, name))
        before = len(spec["containers"])
        spec["containers"] = [c for c in spec["containers"] if c["name"] != cname]
        assert len(spec["containers"]) == before - 1, f"{kind}/{name} has no container {cname}"
    return mutate


def _ns_annotations(fn: Callable[[dict], None]) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        for ns in (o for o in objs if o["kind"] == "Namespace"):
            fn(ns["metadata"].setdefault("annotations", {}))
    return mutate


def _sc(fn: Callable[[dict], None]) -> Callable[[Objects], None]:
    return lambda objs: fn(find(objs, "StorageClass", "socle-health-data"))


def _bsl(fn: Callable[[dict], None]) -> Callable[[Objects], None]:
    return lambda objs: fn(find(objs, "BackupStorageLocation", "socle-second-region"))


def _schedule(name: str, ttl: str) -> Callable[[Objects], None]:
    return lambda objs: find(objs, "Schedule", name)["spec"]["template"].update({"ttl": ttl})


def _no_readiness(objs: Objects) -> None:
    container(find(objs, "Deployment", "hapi-fhir"), "hapi-fhir").pop("readinessProbe")


def _second_route_same_host(routes: list[dict]) -> None:
    routes.append({**routes[0], "name": "fhir-bis"})


def _no_vct_class(objs: Objects) -> None:
    find(objs, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"][0]["spec"].pop("storageClassName")


def _seal_state_ephemeral(objs: Objects) -> None:
    sts = find(objs, "StatefulSet", "rsyslog")
    sts["spec"]["volumeClaimTemplates"] = [t for t in sts["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] != "seal-state"]
    pod_spec(sts)["volumes"].append({"name": "seal-state", "emptyDir": {"sizeLimit": "1Mi"}})


def _seal_key_in_writer(objs: Objects) -> None:
    container(find(objs, "StatefulSet", "rsyslog"), "rsyslog")["volumeMounts"].append(
        {"name": "seal-key", "mountPath": "/etc/socle/seal-key", "readOnly": True})


def _projected_token(objs: Objects) -> None:
    pod_spec(find(objs, "Deployment", "gateway"))["volumes"].append(
        {"name": "api-token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}})


def _declared_api_access(objs: Objects) -> None:
    gw = find(objs, "Deployment", "gateway")
    gw["metadata"].setdefault("annotations", {})["socle.esante.fr/api-access"] = "reads its own ConfigMaps"
    pod_spec(gw)["automountServiceAccountToken"] = True


def _auditors_also_admin(objs: Objects) -> None:
    objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": "auditors-admin"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin",
                                                                     "apiGroup": "rbac.authorization.k8s.io"},
                 "subjects": [{"kind": "Group", "name": "socle:auditors", "apiGroup": "rbac.authorization.k8s.io"}]})


def _pdb_min(value) -> Callable[[Objects], None]:
    return lambda objs: find(objs, "PodDisruptionBudget", "hapi-fhir")["spec"].update({"minAvailable": value})


def _ingress_in_fhir(objs: Objects) -> None:
    objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "fhir-direct", "namespace": "chdemo-fhir"},
                 "spec": {"rules": [{"host": "fhir-direct.chdemo.test"}]}})


def _binding(name: str, **spec) -> Callable[[Objects], None]:
    return lambda objs: find(objs, "ValidatingAdmissionPolicyBinding", name)["spec"].update(spec)


_HAPI_CONFIG_REF = {"configMapKeyRef": {"name": "hapi-settings", "key": "value"}}

CLAIMS: dict[str, list[tuple[str, Fixture]]] = {
    "TLS-01": [
        ("TLS 1.2 minimum", _claim("demo", "audit log listener accepts TLS 1.1", _aggregator("MinProtocol=TLSv1.2", "MinProtocol=TLSv1.1"), ("ConfigMap", "rsyslog-aggregator"), r"MinProtocol is TLSv1\.1")),
        ("1.3 preferred (offered)", _claim("demo", "gateway offers TLS 1.2 only", _nginx("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.2;"), ("ConfigMap", "gateway-nginx"), r"does not offer TLS 1\.3")),
        ("1.3 preferred (offered)", _claim("demo", "database capped at TLS 1.2", _file("postgres", "postgresql.conf", "ssl_min_protocol_version = 'TLSv1.2'", "ssl_min_protocol_version = 'TLSv1.2'\nssl_max_protocol_version = 'TLSv1.2'"), ("ConfigMap", "postgres"), r"TLS 1\.3 left out")),
        ("SSL never offered", _claim("demo", "SSLv3 allowed on outbound SMTP", _main_cf(r"^smtp_tls_protocols = .*$", "smtp_tls_protocols = !SSLv2, !TLSv1, !TLSv1.1"), ("ConfigMap", "postfix"), r"smtp_tls_protocols allows SSLv3")),
        ("TLS 1.0 and 1.1 never offered", _failing("TLS-01", r"offers TLSv1\b")),
        ("TLS 1.0 and 1.1 never offered", _claim("demo", "a master.cf override lets the SMTP listener take TLS 1.0", _master_override("smtpd_tls_protocols=!SSLv2,!SSLv3"), ("ConfigMap", "postfix"), r"master\.cf service 2525: smtpd_tls_protocols allows TLSv1")),
    ],
    "TLS-02": [
        ("TLS 1.2 suites: ECDHE key exchange only", _claim("demo", "static RSA key exchange in the gateway list", _nginx("ssl_ciphers ECDHE", "ssl_ciphers AES256-GCM-SHA384:ECDHE"), ("ConfigMap", "gateway-nginx"), r"AES256-GCM-SHA384 \(no ECDHE key exchange\)")),
        ("TLS 1.2 suites: AEAD only", _claim("demo", "an ECDHE CBC suite in the gateway list", _nginx("ssl_ciphers ECDHE", "ssl_ciphers ECDHE-RSA-AES128-SHA256:ECDHE"), ("ConfigMap", "gateway-nginx"), r"ECDHE-RSA-AES128-SHA256 \(not AEAD\)")),
        ("TLS 1.2 suites: AEAD only", _failing("TLS-02", r"AES128-SHA \(no ECDHE key exchange, not AEAD\)")),
        ("TLS 1.2 suites: AEAD only", _claim("demo", "an ECDHE CBC suite on SMTP", _main_cf(r"^tls_high_cipherlist = (.*)$", r"tls_high_cipherlist = \1:ECDHE-RSA-AES256-SHA384"), ("ConfigMap", "postfix"), r"ECDHE-RSA-AES256-SHA384 \(not AEAD\)")),
    ],
    "TLS-03": [
        ("the gateway serves nothing over cleartext HTTP", _claim("demo", "the plain-HTTP server proxies to the FHIR server", _nginx("return 308 https://$host$request_uri;", "proxy_pass http://hapi-fhir.chdemo-fhir.svc.cluster.local:8080;"), ("ConfigMap", "gateway-nginx"), r"plain-HTTP server _ serves content")),
        ("port 80 only redirects (to HTTPS)", _claim("demo", "the plain-HTTP server redirects to http://", _nginx("return 308 https://$host$request_uri;", "return 308 http://$host$request_uri;"), ("ConfigMap", "gateway-nginx"), r"does not only redirect to https://")),
        ("HSTS on every HTTPS response", _failing("TLS-03", r"no Strict-Transport-Security header")),
        ("HSTS on every HTTPS response", _claim("demo", "a location's own add_header drops the server's HSTS", _nginx("limit_req_status 429;", "limit_req_status 429;\n            add_header X-Frame-Options DENY always;"), ("ConfigMap", "gateway-nginx"), r"location /: no Strict-Transport-Security header")),
    ],
    "PKI-01": [
        ("mTLS listeners trust only CAs mounted from a Secret", _failing("PKI-01", r"ssl_client_certificate .*is not a Secret")),
        ("the relay trusts only CAs mounted from a Secret", _claim("demo", "relay verifies peers against a file of its image", _main_cf(r"^smtp_tls_CAfile = .*$", "smtp_tls_CAfile = /etc/ssl/certs/ca-certificates.crt"), ("ConfigMap", "postfix"), r"smtp_tls_CAfile .*not on any volume")),
        ("never the system CA store", _claim("demo", "relay adds the system CAs", _main_cf(r"^(smtp_tls_CAfile = .*)$", r"\1\ntls_append_default_CA = yes"), ("ConfigMap", "postfix"), r"adds the system CA store")),
        ("never the system CA store", _claim("demo", "gateway also trusts the image's CA store", _nginx("ssl_client_certificate /etc/socle/tls/trust/ca.crt;", "ssl_client_certificate /etc/socle/tls/trust/ca.crt;\n        ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;"), ("ConfigMap", "gateway-nginx"), r"ssl_trusted_certificate .*not on any volume")),
    ],
    "PKI-02": [
        ("peer certificates checked for revocation", _claim("chu-exemple-prod", "an mTLS listener without CRL", _nginx("ssl_crl /etc/socle/tls/crl/crl.pem;", ""), ("Deployment", "gateway"), r"no ssl_crl")),
        ("peer certificates checked for revocation", _claim("chu-exemple-prod", "relay accepts any certificate from the bundle, no allow-list", _main_cf(r"^smtpd_client_restrictions = .*$", "smtpd_client_restrictions = permit_mynetworks, permit_tls_clientcerts, reject"), ("ConfigMap", "postfix"), r"Postfix cannot check CRLs")),
        ("the CRL refreshed", _failing("PKI-02", r"is not refreshed \(no CRL refresher")),
        ("the CRL refreshed", _claim("chu-exemple-prod", "the refresher has no distribution point", _file("gateway-crl-refresh", "crl-urls", "http://crl.chu-exemple.fr/igc-sante/ac-igc-sante-elementaire-organisations.crl\nhttp://crl.chu-exemple.fr/igc-sante/ac-igc-sante-standard-organisations.crl", ""), ("Deployment", "gateway"), r"no CRL distribution point")),
        ("at least daily", _claim("chu-exemple-prod", "the CRL refreshed weekly", _file("gateway-crl-refresh", "crl-refresh.sh", "sleep 3600", "sleep 604800"), ("Deployment", "gateway"), r"less often than daily")),
    ],
    "API-01": [
        ("every API carries a sensitivity", _claim("demo", "a route without sensitivity", _route(lambda r: r[0].update({"sensitivity": ""})), ("ConfigMap", "gateway-nginx"), r"sensitivity '' is not one of")),
        ("sensitive APIs require mutual TLS", _failing("API-01", r"does not require client certificates")),
        ("client certificates verified against a trust bundle Secret", _claim("demo", "client CAs read from a ConfigMap", _trust_from_configmap, ("ConfigMap", "gateway-nginx"), r"against CAs not from a Secret")),
    ],
    "API-03": [
        ("every token checked at the gateway (auth_request on every proxied location)", _failing("API-03", r"has no auth_request")),
        ("the check is made by the token validator (oauth2-proxy)", _claim("demo", "the auth sub-request answers 202 itself", _nginx("proxy_pass http://oauth2-proxy.chdemo-gateway.svc.cluster.local:4180/oauth2/auth;", "return 202;"), ("ConfigMap", "gateway-nginx"), r"is not passed to oauth2-proxy")),
        ("signature verified against the issuer", _claim("demo", "bearer tokens not validated", _o2("skip_jwt_bearer_tokens = true", "skip_jwt_bearer_tokens = false"), ("ConfigMap", "gateway-nginx"), r"does not validate bearer tokens")),
    ],
    "API-04": [
        ("tokens stay server-side", _claim("demo", "access token passed on", _o2("pass_access_token = false", "pass_access_token = true"), ("ConfigMap", "oauth2-proxy"), r"tokens are passed on")),
        ("Secure cookies", _claim("demo", "cookie sent over plain HTTP", _o2("cookie_secure = true", "cookie_secure = false"), ("ConfigMap", "oauth2-proxy"), r"cookie_secure is off")),
        ("HttpOnly cookies", _failing("API-04", r"cookie_httponly is off")),
        ("bounded lifetime", _claim("demo", "a week-long session", _o2('cookie_expire = "8h"', 'cookie_expire = "168h"'), ("ConfigMap", "oauth2-proxy"), r"not a lifetime of at most 24h")),
    ],
    "GW-01": [
        ("each exposed API has a route entry", _claim("demo", "the served host has no route entry", _route(lambda r: r[0].update({"host": "other.chdemo.test"})), ("ConfigMap", "gateway-nginx"), r"server fhir\.chdemo\.test has no route entry")),
        ("each API names its owner group", _failing("GW-01", r"route fhir has no owner")),
    ],
    "GW-02": [
        ("no business API without authentication", _failing("GW-02", r"proxies without authentication")),
    ],
    "GW-03": [
        ("APIs do not share a host name", _claim("demo", "two APIs on one host", _route(_second_route_same_host), ("ConfigMap", "gateway-nginx"), r"APIs sharing a host")),
        ("a server answers one API host name", _claim("demo", "one server for two names", _nginx("server_name fhir.chdemo.test;", "server_name fhir.chdemo.test api.chdemo.test;"), ("ConfigMap", "gateway-nginx"), r"servers answering several names")),
        ("unknown host names get no API", _failing("GW-03", r"does not reject unknown host names")),
    ],
    "GW-04": [
        ("backends probed", _claim("demo", "FHIR server without readiness probe", _no_readiness, ("Deployment", "hapi-fhir"), r"without readiness probe")),
        ("health route GET-only", _failing("GW-04", r"methods other than GET allowed")),
        ("health route GET-only", _claim("demo", "limit_except that allows all", _nginx("limit_except GET { deny all; }", "limit_except GET { allow all; }"), ("ConfigMap", "gateway-nginx"), r"methods other than GET allowed")),
        ("health route needs no token", _claim("demo", "health route asks for a token", _nginx("limit_except GET { deny all; }", "limit_except GET { deny all; }\n            auth_request /oauth2/auth;"), ("ConfigMap", "gateway-nginx"), r"asks for a token")),
        ("health route limited to its path", _claim("demo", "prefix health location", _nginx("location = /health {", "location /health {"), ("ConfigMap", "gateway-nginx"), r"not an exact-match location")),
    ],
    "GW-05": [
        ("no request bodies logged", _failing("GW-05", r"logs \$request_body")),
        ("no request bodies logged", _claim("demo", "FHIR access log with the request body", _hapi("path[${servletPath}]", "path[${servletPath}] body[${requestBodyFhir}]"), ("ConfigMap", "hapi-fhir"), r"HAPI access log logs requestBodyFhir")),
        ("no response bodies logged", _claim("demo", "gateway logs a response body variable", _nginx('"user":"$socle_user"', '"user":"$socle_user","resp":"$resp_body"'), ("ConfigMap", "gateway-nginx"), r"logs \$resp_body")),
    ],
    "GW-06": [
        ("rate limiting on every route", _failing("GW-06", r"location /: no rate limit")),
        ("request body size limit on every route", _claim("demo", "server without body limit", _nginx("client_max_body_size 10m;", "client_max_body_size 0;"), ("ConfigMap", "gateway-nginx"), r"fhir\.chdemo\.test: no request body limit")),
        ("request body size limit on every route", _claim("demo", "a location lifts the server's body limit", _nginx("limit_req_status 429;", "limit_req_status 429;\n            client_max_body_size 0;"), ("ConfigMap", "gateway-nginx"), r"location /: no request body limit")),
    ],
    "PSC-01": [
        ("services holding sensitive data have a running OIDC login", _claim("demo", "oauth2-proxy not running", _delete("Deployment", "oauth2-proxy", "chdemo-gateway"), ("ConfigMap", "oauth2-proxy"), r"no workload runs this OIDC login")),
        ("the login is Pro Santé Connect", _failing("PSC-01", r"is not Pro Santé Connect")),
        ("the login is offered on every sensitive route", _claim("demo", "no sign-in location on the sensitive host", _nginx_re(r"^\s*location /oauth2/ \{[^}]*\}\n", ""), ("ConfigMap", "gateway-nginx"), r"offers no login")),
    ],
    "PSC-02": [
        ("authorization-code flow", _claim("demo", "not the OIDC provider", _o2('provider = "oidc"', 'provider = "github"'), ("ConfigMap", "oauth2-proxy"), r"not the OIDC authorization-code flow")),
        ("scope `openid scope_all`", _claim("demo", "scope openid only", _o2('scope = "openid scope_all"', 'scope = "openid"'), ("ConfigMap", "oauth2-proxy"), r"scope is 'openid', not `openid scope_all`")),
        ("acr_values eidas1", _failing("PSC-02", r"acr_values is 'eidas2', not eidas1")),
        ("state and nonce checked", _claim("demo", "nonce not checked", _o2("insecure_oidc_skip_nonce = false", "insecure_oidc_skip_nonce = true"), ("ConfigMap", "oauth2-proxy"), r"nonce is not checked")),
    ],
    "PSC-03": [
        ("client authentication by secret or mTLS", _claim("demo", "no client secret at all", _o2('client_secret_file = "/etc/socle/psc/client-secret"', ""), ("ConfigMap", "oauth2-proxy"), r"the client does not authenticate")),
        ("the secret only in a Kubernetes Secret", _failing("PSC-03", r"client_secret written in the configuration file")),
        ("the secret only in a Kubernetes Secret", _claim("demo", "client secret from a ConfigMap", _env("Deployment", "oauth2-proxy", "oauth2-proxy", {"name": "OAUTH2_PROXY_CLIENT_SECRET", "valueFrom": _HAPI_CONFIG_REF}), ("ConfigMap", "oauth2-proxy"), r"OAUTH2_PROXY_CLIENT_SECRET not from a Secret")),
        ("the secret only in a Kubernetes Secret", _claim("demo", "client secret file on the configuration volume", _o2('client_secret_file = "/etc/socle/psc/client-secret"', 'client_secret_file = "/etc/socle/oauth2-proxy/client-secret"'), ("ConfigMap", "oauth2-proxy"), r"client_secret_file .*is not a Secret")),
    ],
    "PSC-04": [
        ("ID tokens verified against the issuer's keys", _claim("demo", "discovery skipped, no keys", _o2("skip_oidc_discovery = false", "skip_oidc_discovery = true"), ("ConfigMap", "oauth2-proxy"), r"discovery skipped without a JWKS URL")),
        ("ID tokens verified against the issuer's keys", _claim("demo", "tokens of another issuer accepted", _o2("skip_jwt_bearer_tokens = true", 'skip_jwt_bearer_tokens = true\nextra_jwt_issuers = ["https://login.example.test/=socle"]'), ("ConfigMap", "oauth2-proxy"), r"extra_jwt_issuers")),
        ("production issuer pinned", _claim("chu-exemple-prod", "another realm of the production host", _o2("https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet", "https://auth.esw.esante.gouv.fr/auth/realms/other"), ("ConfigMap", "oauth2-proxy"), r"is not the production issuer")),
        ("IdP TLS always verified", _failing("PSC-04", r"ssl_insecure_skip_verify is on")),
    ],
    "PSC-05": [
        ("the PSC sandbox never used by a production stack", _failing("PSC-05", r"names the PSC sandbox auth\.bas\.psc")),
        ("the PSC sandbox never used by a production stack", _claim("chu-exemple-prod", "sandbox in an environment variable", _env("Deployment", "hapi-fhir", "hapi-fhir", {"name": "PSC_URL", "value": "https://auth.bas.psc.esante.gouv.fr/"}), ("Deployment", "hapi-fhir"), r"environment names the PSC sandbox")),
        ("the PSC sandbox never used: its wallet host", _claim("chu-exemple-prod", "sandbox wallet as login URL", _o2("https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet", "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet\"\nlogin_url = \"https://wallet.bas.psc.esante.gouv.fr/auth"), ("ConfigMap", "oauth2-proxy"), r"names the PSC sandbox wallet\.bas\.psc")),
        ("the PSC sandbox never used: its legacy host", _claim("chu-exemple-prod", "legacy sandbox issuer", _o2("https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet", "https://auth.bas.esw.esante.gouv.fr/auth/realms/esante-wallet"), ("ConfigMap", "oauth2-proxy"), r"names the PSC sandbox auth\.bas\.esw")),
    ],
    "FHIR-01": [
        ("FHIR R4 (4.0.1)", _failing("FHIR-01", r"fhir_version is 'R5', not R4")),
    ],
    "FHIR-02": [
        ("national terminologies from the ANS terminology server", _failing("FHIR-02", r"tx\.fhir\.org/r4 is not smt\.esante\.gouv\.fr")),
        ("national terminologies from the ANS terminology server", _claim("demo", "no remote terminology service", _hapi("    remote_terminology_service:\n      all:\n        system: '*'\n        url: https://smt.esante.gouv.fr/fhir\n", ""), ("ConfigMap", "hapi-fhir"), r"no remote terminology service")),
    ],
    "FHIR-03": [
        ("the Annuaire Santé API key held in a Secret", _claim("demo", "key from a ConfigMap", _env("Deployment", "hapi-fhir", "hapi-fhir", {"name": "ESANTE_API_KEY", "valueFrom": _HAPI_CONFIG_REF}), ("ConfigMap", "hapi-fhir"), r"ESANTE_API_KEY not from a Secret")),
        ("never a literal", _failing("FHIR-03", r"ESANTE_API_KEY as a literal")),
        ("never a literal", _claim("demo", "key written in application.yaml", _hapi("api_key_env: ESANTE_API_KEY", "api_key_env: ESANTE_API_KEY\n    api_key: 0123456789abcdef"), ("ConfigMap", "hapi-fhir"), r"API key written as a literal in the configuration file")),
    ],
    "FHIR-04": [
        ("incoming resources validated (on in production)", _failing("FHIR-04", r"request validation is off")),
        ("against FR Core", _claim("chu-exemple-prod", "validation on, FR Core not loaded", _hapi("name: hl7.fhir.fr.core", "name: hl7.fhir.us.core"), ("ConfigMap", "hapi-fhir"), r"hl7\.fhir\.fr\.core is not loaded")),
    ],
    "INS-01": [
        ("the FR Core Patient-INS profile is loaded", _failing("INS-01", r"Patient-INS profile\) is not loaded")),
        ("incoming resources are validated", _claim("demo", "request validation off", _hapi("requests_enabled: true", "requests_enabled: false"), ("ConfigMap", "hapi-fhir"), r"request validation is off")),
    ],
    "INS-02": [
        ("INS identifier systems are the national ones", _claim("demo", "an unknown identifier system", _hapi("- urn:oid:1.2.250.1.213.1.4.9", "- urn:oid:1.2.250.1.213.1.4.9\n  - urn:oid:1.2.3.4"), ("ConfigMap", "hapi-fhir"), r"unknown INS system urn:oid:1\.2\.3\.4")),
        ("test and demo systems never in production", _failing("INS-02", r"test/demo INS system urn:oid:1\.2\.250\.1\.213\.1\.4\.10 in production")),
    ],
    "DMP-01": [
        ("an authentication certificate", _claim("demo", "DMP connector without certificate", _add(dmp_connector([])), ("Deployment", "dmp-connector"), r"mounts no certificate Secret")),
        ("a separate signing certificate", _failing("DMP-01", r"no separate signing certificate")),
        ("a separate signing certificate", _claim("demo", "the same Secret mounted twice", _add(dmp_connector(["dmp-auth", "dmp-auth"])), ("Deployment", "dmp-connector"), r"no separate signing certificate")),
    ],
    "MSS-01": [
        ("every inbound SMTP connection encrypted", _failing("MSS-01", r"smtpd_tls_security_level is may, not encrypt")),
        ("no cleartext fallback", _claim("demo", "outbound TLS opportunistic", _main_cf(r"^smtp_tls_security_level = secure$", "smtp_tls_security_level = may"), ("ConfigMap", "postfix"), r"outbound mail falls back to cleartext")),
        ("no cleartext fallback", _claim("demo", "a master.cf service lowers inbound TLS", _master_override("smtpd_tls_security_level=may"), ("ConfigMap", "postfix"), r"master\.cf service 2525: smtpd_tls_security_level is may")),
        ("auth only over TLS", _claim("demo", "authentication before STARTTLS", _main_cf(r"^smtpd_tls_auth_only = yes$", "smtpd_tls_auth_only = no"), ("ConfigMap", "postfix"), r"smtpd_tls_auth_only is no")),
    ],
    "MSS-02": [
        ("TLS 1.2 minimum on SMTP", _failing("MSS-02", r"smtpd_tls_mandatory_protocols allows TLSv1")),
        ("TLS 1.2 minimum on SMTP", _claim("demo", "outbound TLS 1.0", _main_cf(r"^smtp_tls_mandatory_protocols = .*$", "smtp_tls_mandatory_protocols = >=TLSv1"), ("ConfigMap", "postfix"), r"smtp_tls_mandatory_protocols allows TLSv1")),
        ("TLS 1.2 minimum on SMTP", _claim("demo", "a master.cf override of the listener", _master_override("smtpd_tls_mandatory_protocols=!SSLv2,!SSLv3"), ("ConfigMap", "postfix"), r"master\.cf service 2525: smtpd_tls_mandatory_protocols allows TLSv1")),
    ],
    "MSS-03": [
        ("TLS 1.2 suites only from the MSSanté list", _failing("MSS-03", r"ECDHE-RSA-CHACHA20-POLY1305 not in the MSSanté list")),
        ("TLS 1.2 suites only from the MSSanté list", _claim("demo", "the list not applied (mandatory grade medium)", _main_cf(r"^smtpd_tls_mandatory_ciphers = high$", "smtpd_tls_mandatory_ciphers = medium"), ("ConfigMap", "postfix"), r"smtpd_tls_mandatory_ciphers is medium, not high")),
    ],
    "MSS-04": [
        ("a server certificate from a Secret presented", _claim("demo", "no server certificate", _main_cf(r"^smtpd_tls_chain_files = .*\n", ""), ("ConfigMap", "postfix"), r"no server certificate presented")),
        ("peers verified", _claim("demo", "outbound peers not verified", _main_cf(r"^smtp_tls_security_level = secure$", "smtp_tls_security_level = encrypt"), ("ConfigMap", "postfix"), r"outbound smtp_tls_security_level is encrypt, peers not verified")),
        ("against a trust bundle Secret", _claim("demo", "peers verified against a file of the image", _main_cf(r"^smtp_tls_CAfile = .*$", "smtp_tls_CAfile = /etc/ssl/certs/ca-certificates.crt"), ("ConfigMap", "postfix"), r"peers verified against smtp_tls_CAfile .*not on any volume")),
    ],
    "MSS-05": [
        ("mail exchanged only with authorized domains", _failing("MSS-05", r"do not end with `reject`")),
        ("mail exchanged only with authorized domains", _claim("demo", "any network may relay", _main_cf(r"^mynetworks = .*$", "mynetworks = 0.0.0.0/0"), ("ConfigMap", "postfix"), r"lets networks relay")),
        ("the list refreshed automatically", _claim("demo", "no refresher beside Postfix", _drop_container("StatefulSet", "postfix", "domain-refresh"), ("ConfigMap", "postfix"), r"is not rewritten by a domain-list refresher")),
    ],
    "MSS-06": [
        ("application mailboxes present a client certificate", _claim("chu-exemple-prod", "client certificate not required", _main_cf(r"^smtpd_tls_req_ccert = yes$", "smtpd_tls_req_ccert = no"), ("ConfigMap", "postfix"), r"client certificates are not required")),
        ("the organisation's certificate (allow-listed)", _claim("chu-exemple-prod", "no allow-list", _main_cf(r"^relay_clientcerts = .*\n", ""), ("ConfigMap", "postfix"), r"no relay_clientcerts list")),
        ("the organisation's certificate (allow-listed)", _claim("chu-exemple-prod", "an empty allow-list", lambda objs: find(objs, "ConfigMap", "postfix-maps")["data"].update({"client_certs": ""}), ("ConfigMap", "postfix"), r"relay_clientcerts list is empty")),
    ],
    "MSS-07": [
        ("per-mailbox traces forwarded to the audit log", _claim("demo", "maillog written where no forwarder reads", _main_cf(r"^maillog_file = .*$", "maillog_file = /var/log/postfix/other.log"), ("ConfigMap", "postfix"), r"other\.log is not forwarded to the audit log")),
        ("without message content", _failing("MSS-07", r"debug_peer_list logs whole sessions")),
        ("without message content", _claim("demo", "header_checks log message lines", _main_cf(r"^debug_peer_list =$", "debug_peer_list =\nheader_checks = regexp:/etc/postfix/header_checks"), ("ConfigMap", "postfix"), r"header_checks set")),
        ("kept at least 183 days", _claim("demo", "records kept 100 days", _seal("RETENTION_DAYS=365", "RETENTION_DAYS=100"), ("ConfigMap", "audit-seal"), r"records kept 100 days, below the floor of 183")),
    ],
    "MSS-08": [
        ("unused mailboxes deleted within a year", _failing("MSS-08", r"purge after 400 days, more than 365")),
        ("deleted after notice: only the stack declares it (declared, never a pass), so no declaration fails",
         _claim("demo", "no purge period declared", lambda objs: find(objs, "StatefulSet", "postfix")["metadata"]["annotations"].pop("socle.esante.fr/mailbox-purge-days"), ("StatefulSet", "postfix"), r"no socle\.esante\.fr/mailbox-purge-days annotation")),
    ],
    "TRACE-01": [
        ("accesses through the gateway recorded in the audit log", _claim("demo", "gateway access log on stdout only", _nginx_re(r"^\s*access_log syslog:.*\n", ""), ("Deployment", "gateway"), r"access log not sent to the log forwarder")),
        ("accesses through the FHIR server recorded in the audit log", _claim("demo", "FHIR access log sent to a port no forwarder listens on", _file("hapi-fhir", "logback.xml", "<port>5140</port>", "<port>5141</port>"), ("Deployment", "hapi-fhir"), r"FHIR access log fhir\.access is not sent to the log forwarder")),
        ("accesses through the FHIR server recorded in the audit log", _claim("demo", "no FHIR access logger", _hapi("      name: fhir.access\n", ""), ("Deployment", "hapi-fhir"), r"writes no access log")),
        ("every source workload wired to the audit log", _claim("demo", "oauth2-proxy without log forwarder", _drop_container("Deployment", "oauth2-proxy", "log-forwarder"), ("Deployment", "oauth2-proxy"), r"no log forwarder to the audit log")),
        ("records kept ≥ 183 days", _failing("TRACE-01", r"records kept 30 days, below the floor of 183")),
    ],
    "TRACE-02": [
        ("gateway records attributable (client certificate or user)", _claim("demo", "gateway log format without client identity", _nginx('"client_s_dn":"$ssl_client_s_dn","user":"$socle_user"', '"n":"-"'), ("ConfigMap", "gateway-nginx"), r"log_format socle_json has no client identity")),
        ("FHIR records attributable (caller)", _claim("demo", "FHIR log format without caller", _hapi("client_dn[${requestHeader.x-ssl-client-s-dn}] ", ""), ("ConfigMap", "hapi-fhir"), r"FHIR access log has no caller identity")),
        ("aggregated records attributable (sending system)", _failing("TRACE-02", r"records do not keep the sending peer")),
    ],
    "TRACE-04": [
        ("logs centralised on the aggregator's persistent volume", _claim("demo", "aggregator on no persistent volume", lambda objs: find(objs, "StatefulSet", "rsyslog")["spec"].pop("volumeClaimTemplates"), ("ConfigMap", "rsyslog-aggregator"), r"keeps records on no persistent volume")),
        ("append-only files", _failing("TRACE-04", r"fileCreateMode 0666 lets others write or read")),
        ("sealed by a keyed hash chain", _claim("demo", "seal without key", _seal("KEY_FILE=/etc/socle/seal-key/key\n", ""), ("ConfigMap", "rsyslog-aggregator"), r"seal\.sh has no key")),
        ("sealed by a keyed hash chain", _claim("demo", "seal container never runs the seal", lambda objs: container(find(objs, "StatefulSet", "rsyslog"), "seal").update({"command": ["sh", "-c", "sleep infinity"]}), ("ConfigMap", "rsyslog-aggregator"), r"mounts seal\.sh but does not run it")),
        ("sealed by a keyed hash chain", _claim("demo", "the writer can read the seal key", _seal_key_in_writer, ("ConfigMap", "rsyslog-aggregator"), r"container rsyslog can read the seal key Secret")),
        ("tamper-evident: truncation detected after a restart", _claim("demo", "the seal's memory on an emptyDir", _seal_state_ephemeral, ("ConfigMap", "rsyslog-aggregator"), r"keeps the seal's last link .* on no persistent volume")),
    ],
    "TRACE-05": [
        ("log transport is TLS", _claim("demo", "a forwarder sends in cleartext", _relay_forwarder('streamDriverMode="1"', 'streamDriverMode="0"'), ("ConfigMap", "relay-log-forwarder"), r"omfwd without TLS")),
        ("log transport is TLS", _claim("demo", "the aggregator input without TLS", _aggregator('streamDriver.mode="1"', 'streamDriver.mode="0"'), ("ConfigMap", "rsyslog-aggregator"), r"streamDriver\.mode is not 1")),
        ("mutual authentication: the aggregator authenticates senders", _failing("TRACE-05", r"authMode anon does not authenticate senders")),
        ("mutual authentication: forwarders authenticate the aggregator", _claim("demo", "aggregator certificate not checked", _relay_forwarder('streamDriverAuthMode="x509/name"', 'streamDriverAuthMode="anon"'), ("ConfigMap", "relay-log-forwarder"), r"authMode anon does not check the aggregator")),
        ("mutual authentication: forwarders present a client certificate", _claim("demo", "forwarder without client certificate", _relay_forwarder('  defaultNetstreamDriverCertFile="/etc/socle/tls/audit-client/tls.crt"\n', ""), ("ConfigMap", "relay-log-forwarder"), r"presents no client certificate: cert file not set")),
    ],
    "HDS-01": [
        ("nodes in allowed regions", _claim("demo", "FHIR server schedulable anywhere", lambda objs: pod_spec(find(objs, "Deployment", "hapi-fhir")).pop("affinity"), ("Deployment", "hapi-fhir"), r"no required node affinity on a region label")),
        ("volumes in allowed regions", _claim("demo", "volumes provisioned anywhere", _sc(lambda sc: sc.pop("allowedTopologies")), ("StorageClass", "socle-health-data"), r"provisioned in any region")),
        ("backups in allowed regions", _failing("HDS-01", r"backup region fr-srr is in US, outside the EEA")),
        ("only in the EEA", _claim("demo", "the volumes' region declared outside the EEA", _sc(lambda sc: sc["metadata"]["annotations"].update({"socle.esante.fr/region-countries": '{"fr-par":"US"}'})), ("StorageClass", "socle-health-data"), r"volume region fr-par is in US, outside the EEA")),
        ("only in the EEA", _claim("demo", "backup region without declared country", _bsl(lambda b: b["metadata"]["labels"].pop("socle.esante.fr/region-country")), ("BackupStorageLocation", "socle-second-region"), r"has no declared country")),
    ],
    "HDS-04": [
        ("health-data volumes encrypted at rest", _claim("chu-exemple-prod", "driver's encryption parameter off", _sc(lambda sc: sc["parameters"].update({"encrypted": "false"})), ("StorageClass", "socle-health-data"), r'parameter encrypted is not "true"')),
        ("kept on delete (reclaimPolicy Retain)", _failing("HDS-04", r"reclaimPolicy Delete")),
        ("kept on delete (reclaimPolicy Retain)", _claim("demo", "claims deleted with the StatefulSet", lambda objs: find(objs, "StatefulSet", "postgres")["spec"]["persistentVolumeClaimRetentionPolicy"].update({"whenDeleted": "Delete"}), ("StatefulSet", "postgres"), r"claims deleted with the StatefulSet")),
        ("every health-data volume on that class", _claim("demo", "a claim on the cluster's default class", _no_vct_class, ("StatefulSet", "postgres"), r"default storage class")),
    ],
    "BCK-01": [
        ("backups go to a second region", _claim("demo", "backups in the primary region", _bsl(lambda b: b["spec"]["config"].update({"region": "fr-par"})), ("Schedule", "socle-daily"), r"primary region fr-par, not a second region")),
        ("backups go to a second region", _failing("BCK-01", r"storage location default is not a backup location of the kit")),
        ("also in the EEA", _claim("demo", "second region outside the EEA", _bsl(lambda b: b["metadata"]["labels"].update({"socle.esante.fr/region-country": "CH"})), ("BackupStorageLocation", "socle-second-region"), r"is in CH, outside the EEA")),
        ("daily kept 30 days", _claim("demo", "daily backups kept 10 days", _schedule("socle-daily", "240h0m0s"), ("Schedule", "socle-daily"), r"daily backups kept 10 days, less than 30 days")),
        ("monthly kept 180 days", _claim("demo", "monthly backups kept 30 days", _schedule("socle-monthly", "720h0m0s"), ("Schedule", "socle-monthly"), r"monthly backups kept 30 days, less than 180 days")),
    ],
    "K8S-01": [
        ("every namespace enforces Pod Security restricted", _failing("K8S-01", r"enforces privileged")),
        ("every namespace of the kit (a stripped label does not take it out)", _claim("demo", "kit namespace without its label", lambda objs: find(objs, "Namespace", "chdemo-fhir")["metadata"]["labels"].pop("app.kubernetes.io/part-of"), ("Namespace", "chdemo-fhir"), r"without the label app\.kubernetes\.io/part-of=socle")),
    ],
    "K8S-02": [
        ("default-deny ingress and egress in every namespace", _failing("K8S-02", r"no default-deny policy")),
        ("default-deny ingress and egress in every namespace", _claim("demo", "default deny of ingress only", lambda objs: find(objs, "NetworkPolicy", "default-deny-all", "chdemo-fhir")["spec"].update({"policyTypes": ["Ingress"]}), ("Namespace", "chdemo-fhir"), r"no default-deny policy for both ingress and egress")),
        ("only declared flows allowed", _claim("demo", "a rule allowing everything", lambda objs: find(objs, "NetworkPolicy", "allow-fhir-from-gateway", "chdemo-fhir")["spec"]["ingress"].append({}), ("NetworkPolicy", "allow-fhir-from-gateway"), r"ingress\[1\] allows all traffic")),
        ("only declared flows allowed", _claim("demo", "a peer selecting every namespace", lambda objs: find(objs, "NetworkPolicy", "allow-fhir-from-gateway", "chdemo-fhir")["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}}), ("NetworkPolicy", "allow-fhir-from-gateway"), r"peer selecting every namespace")),
    ],
    "K8S-03": [
        ("non-root", _claim("demo", "container running as root", _hapi_container(lambda c: c["securityContext"].update({"runAsNonRoot": False, "runAsUser": 0})), ("Deployment", "hapi-fhir"), r"hapi-fhir: may run as root")),
        ("no privilege escalation", _claim("demo", "privilege escalation allowed", _security("allowPrivilegeEscalation", True), ("Deployment", "hapi-fhir"), r"hapi-fhir: privilege escalation allowed")),
        ("no privilege escalation", _failing("K8S-03", r"hapi-fhir: privileged")),
        ("read-only root filesystem", _claim("demo", "writable root filesystem", _security("readOnlyRootFilesystem", False), ("Deployment", "hapi-fhir"), r"hapi-fhir: writable root filesystem")),
        ("capabilities dropped", _claim("demo", "capabilities kept", _security("capabilities", {"drop": []}), ("Deployment", "hapi-fhir"), r"hapi-fhir: capabilities not all dropped")),
        ("capabilities dropped", _claim("demo", "a capability added", _security("capabilities", {"drop": ["ALL"], "add": ["NET_ADMIN"]}), ("Deployment", "hapi-fhir"), r"hapi-fhir: adds capabilities NET_ADMIN")),
        ("seccomp", _claim("demo", "unconfined container", _security("seccompProfile", {"type": "Unconfined"}), ("Deployment", "hapi-fhir"), r"hapi-fhir: no seccomp profile")),
    ],
    "K8S-04": [
        ("requests on every container", _claim("demo", "container without requests", _hapi_container(lambda c: c["resources"].pop("requests")), ("Deployment", "hapi-fhir"), r"hapi-fhir: no requests\.cpu, requests\.memory")),
        ("limits on every container", _failing("K8S-04", r"hapi-fhir: no limits\.cpu, limits\.memory")),
        ("ResourceQuota per namespace", _claim("demo", "namespace without quota", _delete("ResourceQuota", "socle-quota", "chdemo-fhir"), ("Namespace", "chdemo-fhir"), r"no ResourceQuota")),
        ("LimitRange per namespace", _claim("demo", "namespace without limit range", _delete("LimitRange", "socle-limits", "chdemo-fhir"), ("Namespace", "chdemo-fhir"), r"no LimitRange")),
    ],
    "K8S-05": [
        ("images from allowed registries", _claim("demo", "an image from a registry not allowed", _hapi_container(lambda c: c.update({"image": "ghcr.io/hapiproject/hapi:v8.0.0"})), ("Deployment", "hapi-fhir"), r"registry ghcr\.io not allowed")),
        ("images from allowed registries", _claim("demo", "no list of allowed registries: cannot be judged", _ns_annotations(lambda a: a.pop("socle.esante.fr/allowed-registries", None)), ("Deployment", "hapi-fhir"), r"cannot be judged: no list of allowed registries", status="evidence-missing")),
        ("pinned to an exact version or digest", _claim("demo", "a major-version tag", _hapi_container(lambda c: c.update({"image": "docker.io/hapiproject/hapi:v8"})), ("Deployment", "hapi-fhir"), r"hapi:v8 is not pinned to an exact version or a digest")),
        ("never `latest`", _failing("K8S-05", r"hapi:latest is `latest`")),
    ],
    "K8S-06": [
        ("service account tokens not mounted", _failing("K8S-06", r"service account token mounted")),
        ("service account tokens not mounted", _claim("demo", "token mounted by a projected volume", _projected_token, ("Deployment", "gateway"), r"mounted by projected volume api-token")),
        ("unless the workload calls the API: only the stack says so, declared (never a pass)", _claim("demo", "token mounted, API use declared by annotation", _declared_api_access, ("Deployment", "gateway"), r"calls the API by its annotation", status="declared")),
    ],
    "K8S-07": [
        ("only the gateway and the relay reachable from outside", _claim("demo", "FHIR server behind a LoadBalancer", lambda objs: find(objs, "Service", "hapi-fhir")["spec"].update({"type": "LoadBalancer"}), ("Service", "hapi-fhir"), r"LoadBalancer in the fhir block")),
        ("only the gateway and the relay reachable from outside", _claim("demo", "FHIR server on a host port", _hapi_container(lambda c: c["ports"][0].update({"hostPort": 8080})), ("Deployment", "hapi-fhir"), r"hostPort 8080 reachable")),
        ("only the gateway and the relay reachable from outside", _claim("demo", "an Ingress in the FHIR block", _ingress_in_fhir, ("Ingress", "fhir-direct"), r"Ingress in the fhir block")),
        ("no NodePort", _failing("K8S-07", r"NodePort service")),
    ],
    "K8S-08": [
        ("never literal env values", _failing("K8S-08", r"DB_PASSWORD is a literal value")),
        ("never in ConfigMap contents", _claim("demo", "database password written in application.yaml", _hapi("password: ${DB_PASSWORD}", "password: hunter2-in-clear"), ("ConfigMap", "hapi-fhir"), r"password has a literal value")),
        ("never in ConfigMap contents", _claim("demo", "a ConfigMap key holding a password", lambda objs: find(objs, "ConfigMap", "hapi-fhir")["data"].update({"DB_PASSWORD": "hunter2-in-clear"}), ("ConfigMap", "hapi-fhir"), r"DB_PASSWORD holds a secret value")),
        ("only through Secret references", _claim("demo", "password from a ConfigMap reference", _env("Deployment", "hapi-fhir", "hapi-fhir", {"name": "DB_PASSWORD", "valueFrom": _HAPI_CONFIG_REF}), ("Deployment", "hapi-fhir"), r"DB_PASSWORD comes from ConfigMap hapi-settings, not a Secret")),
    ],
    "K8S-09": [
        ("production: ≥ 2 replicas of stateless services", _failing("K8S-09", r"1 replica\(s\)")),
        ("PodDisruptionBudgets", _claim("chu-exemple-prod", "no budget for the FHIR server", _delete("PodDisruptionBudget", "hapi-fhir", "chuex-fhir"), ("Deployment", "hapi-fhir"), r"no PodDisruptionBudget")),
        ("PodDisruptionBudgets", _claim("chu-exemple-prod", "a budget that protects nothing", _pdb_min(0), ("Deployment", "hapi-fhir"), r"lets every pod be evicted at once")),
        ("spread across zones", _claim("chu-exemple-prod", "no zone spread", lambda objs: pod_spec(find(objs, "Deployment", "hapi-fhir")).pop("topologySpreadConstraints"), ("Deployment", "hapi-fhir"), r"not spread across zones")),
    ],
    "K8S-10": [
        ("a read-only role (get/list/watch)", _claim("demo", "auditors may create", lambda objs: find(objs, "ClusterRole", "socle-auditor")["rules"][0]["verbs"].append("create"), ("ClusterRole", "socle-auditor"), r"rules\[0\] grants create")),
        ("no Secret contents", _failing("K8S-10", r"rules\[0\] reads Secrets")),
        ("auditors get the role", _claim("demo", "the role bound to no one", _delete("ClusterRoleBinding", "socle-auditor", None), ("ClusterRole", "socle-auditor"), r"not bound to any auditor")),
        ("auditors get nothing more (read-only)", _claim("demo", "auditors also cluster-admin", _auditors_also_admin, ("ClusterRole", "socle-auditor"), r"also bound to ClusterRole cluster-admin")),
    ],
    "K8S-11": [
        ("admission policies present", _claim("demo", "the image policy deleted", _delete("ValidatingAdmissionPolicy", "socle-k8s-05", None), ("ValidatingAdmissionPolicy", "socle-k8s-05"), r"is not in the cluster")),
        ("bound", _failing("K8S-11", r"not bound: it judges nothing")),
        ("to deny", _claim("demo", "the NodePort policy only warns", _binding("socle-k8s-07", validationActions=["Warn"]), ("ValidatingAdmissionPolicy", "socle-k8s-07"), r"bound without Deny \(Warn\)")),
        ("in its namespaces", _claim("demo", "the limits policy bound to other namespaces", _binding("socle-k8s-04", matchResources={"namespaceSelector": {"matchLabels": {"team": "other"}}}), ("ValidatingAdmissionPolicy", "socle-k8s-04"), r"does not select the kit's namespaces")),
        ("to deny (a policy that errors must not admit)", _claim("demo", "the storage policy errors open", lambda objs: find(objs, "ValidatingAdmissionPolicy", "socle-hds-04")["spec"].update({"failurePolicy": "Ignore"}), ("ValidatingAdmissionPolicy", "socle-hds-04"), r"failurePolicy Ignore")),
    ],
}


# The fixtures of some areas live in their own module (tests/fixtures_<area>.py: the authorization server, the
# MSSanté relay, backups, FHIR): each may define FAILING, PASSING, CLAIMS and RENDER_VERDICTS; an entry replaces this
# file's entry for the same control ID.
AREA_MODULES = ("tests.fixtures_authz", "tests.fixtures_mss", "tests.fixtures_backup", "tests.fixtures_fhir",
                "tests.fixtures_tenancy")


def _merge_areas() -> None:
    import importlib
    for name in AREA_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        FAILING.update(getattr(mod, "FAILING", {}))
        PASSING.update(getattr(mod, "PASSING", {}))
        CLAIMS.update(getattr(mod, "CLAIMS", {}))


_merge_areas()

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


def _delete(kind: str, name: str, namespace: str) -> Callable[[Objects], None]:
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

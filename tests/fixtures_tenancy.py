"""Fixtures of the tenant-isolation controls (TEN-01, TEN-02) on the regional platform's demo render
(stacks/Pulumi.region-demo.yaml: the region's own cell 990000100, three shared tenants on the regional gateway and
in partitions of its FHIR store, two dedicated tenants with cells of their own). Each claim is violated alone in
that real render. Merged into tests/audit_fixtures.py by its `_merge_areas`."""
from __future__ import annotations

from typing import Callable

from tests.audit_fixtures import Fixture, Objects, _claim, edit_file, find

STACK = "region-demo"
GATEWAY_NS, FHIR_NS = "grdemo-gateway", "grdemo-fhir"
NGINX_CM = ("ConfigMap", "gateway-nginx")
HAPI_CM = ("ConfigMap", "hapi-fhir")
CHVAL_DN = "CN=CH Val-Demo (FINESS 990000201),O=Centre Hospitalier de Val-Demo,C=FR"
TILLEULS_DN = "CN=Clinique des Tilleuls (FINESS 990000301),O=Clinique des Tilleuls Demo,C=FR"
GUARD = "    if ($socle_cert_tenant != $socle_tenant) {\n        return 403;\n    }\n"
REWRITE = "rewrite ^/fhir/(.*)$ /fhir/$socle_tenant/$1 break;"
STORE = "proxy_pass http://hapi-fhir.grdemo-fhir.svc.cluster.local:8080;"


def _gateway(key: str, old: str, new: str) -> Callable[[Objects], None]:
    """Edit a file of the regional gateway's ConfigMap (nginx.conf, or tenant-server.conf: what every tenant host does)."""
    def mutate(objs: Objects) -> None:
        cm = find(objs, "ConfigMap", "gateway-nginx", GATEWAY_NS)
        assert old in cm["data"][key], f"{key} has no {old!r}"
        cm["data"][key] = cm["data"][key].replace(old, new, 1)
    return mutate


def _hapi(old: str, new: str) -> Callable[[Objects], None]:
    def mutate(objs: Objects) -> None:
        cm = find(objs, "ConfigMap", "hapi-fhir", FHIR_NS)
        assert old in cm["data"]["application.yaml"], old
        cm["data"]["application.yaml"] = cm["data"]["application.yaml"].replace(old, new, 1)
    return mutate


def _peer(namespace: str, policy: str, direction: str, peer: dict) -> Callable[[Objects], None]:
    """Add a peer to the first rule of a NetworkPolicy of a tenant's namespace."""
    side = "from" if direction == "ingress" else "to"

    def mutate(objs: Objects) -> None:
        find(objs, "NetworkPolicy", policy, namespace)["spec"][direction][0][side].append(peer)
    return mutate


def _unlabel(namespace: str) -> Callable[[Objects], None]:
    return lambda objs: find(objs, "Namespace", namespace)["metadata"]["labels"].pop("socle.esante.fr/tenant")


def _tilleuls_own_map_admitting_chval(objs: Objects) -> None:
    """The tilleuls host guarded by a map of its own (a copy of what every tenant host does, another variable) that
    also lists CH Val-Demo's certificate: NGINX loads it, and chval's certificate opens both hosts."""
    cm = find(objs, "ConfigMap", "gateway-nginx", GATEWAY_NS)
    cm["data"]["tenant-server-tilleuls.conf"] = cm["data"]["tenant-server.conf"].replace("$socle_cert_tenant", "$socle_cert_tilleuls")
    conf = cm["data"]["nginx.conf"]
    server = "set $socle_tenant 990000301;\n        include /etc/socle/nginx/tenant-server.conf;"
    anchor = "    proxy_http_version 1.1;\n"
    assert server in conf and anchor in conf
    conf = conf.replace(server, server.replace("tenant-server.conf", "tenant-server-tilleuls.conf"))
    cm["data"]["nginx.conf"] = conf.replace(anchor, "    map $ssl_client_s_dn $socle_cert_tilleuls {\n        default \"\";\n"
                                            f"        \"{TILLEULS_DN}\" 990000301;\n        \"{CHVAL_DN}\" 990000301;\n    }}\n\n" + anchor)


_TO_OTHER_TENANT = _peer("chudemo-fhir", "allow-fhir-from-gateway", "ingress",
                         {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ccdemo-gateway"}}})

FAILING: dict[str, Fixture] = {
    "TEN-01": Fixture(STACK, "a dedicated tenant's FHIR server open to another tenant's gateway", _TO_OTHER_TENANT,
                      ("NetworkPolicy", "allow-fhir-from-gateway")),
    "TEN-02": Fixture(STACK, "a tenant host without the certificate's tenant check", _gateway("tenant-server.conf", GUARD, ""),
                      NGINX_CM),
}

PASSING: dict[str, Fixture] = {
    "TEN-01": Fixture(STACK, "the regional render: every namespace peer is a namespace of the same tenant"),
    "TEN-02": Fixture(STACK, "the regional render: three tenant hosts, each its certificates and its partition"),
}


def _failing(cid: str, reason: str) -> Fixture:
    from dataclasses import replace
    return replace(FAILING[cid], reason=reason)


CLAIMS: dict[str, list[tuple[str, Fixture]]] = {
    "TEN-01": [
        ("no traffic with another tenant's namespaces (a peer naming one)",
         _failing("TEN-01", r"ingress\[0\]\.from\[1\] selects: namespaces of another tenant than 990000401 "
                            r"\(tenant 990000501: ccdemo-gateway\)")),
        ("no traffic with another tenant's namespaces (an empty namespaceSelector selects them all)",
         _claim(STACK, "the regional gateway may reach every namespace",
                _peer(GATEWAY_NS, "allow-gateway-to-fhir", "egress", {"namespaceSelector": {}}),
                ("NetworkPolicy", "allow-gateway-to-fhir"), r"egress\[0\]\.to\[1\] selects every namespace: namespaces of "
                r"another tenant than 990000100 \(tenant 990000401: chudemo-audit.*tenant 990000501: ccdemo-audit")),
        ("no traffic with another tenant's namespaces (matchExpressions)",
         _claim(STACK, "the regional gateway may reach every FHIR block",
                _peer(GATEWAY_NS, "allow-gateway-to-fhir", "egress", {"namespaceSelector": {"matchExpressions": [
                    {"key": "socle.esante.fr/block", "operator": "In", "values": ["fhir"]}]}}),
                ("NetworkPolicy", "allow-gateway-to-fhir"),
                r"selects: namespaces of another tenant than 990000100 \(tenant 990000401: chudemo-fhir; tenant 990000501: ccdemo-fhir\)")),
        ("no traffic with another tenant's namespaces (matchExpressions)",
         _claim(STACK, "a tenant's audit log open to every other tenant",
                _peer("chudemo-audit", "allow-auditlog-from-gateway", "ingress", {"namespaceSelector": {"matchExpressions": [
                    {"key": "socle.esante.fr/tenant", "operator": "NotIn", "values": ["990000401"]}]}}),
                ("NetworkPolicy", "allow-auditlog-from-gateway"), r"namespaces of another tenant than 990000401 "
                r"\(tenant 990000100: grdemo-audit.*tenant 990000501: ccdemo-audit")),
        ("a tenant's namespaces (every namespace of the kit has its tenant)",
         _claim(STACK, "a dedicated tenant's gateway without its tenant label", _unlabel("ccdemo-gateway"),
                ("Namespace", "ccdemo-gateway"), r"a namespace of the kit without its tenant")),
    ],
    "TEN-02": [
        ("admits only that tenant's organisation certificates (a certificate required)",
         _claim(STACK, "client certificates optional on the tenant hosts",
                _gateway("tenant-server.conf", "ssl_verify_client on;", "ssl_verify_client optional;"), NGINX_CM,
                r"host chval\.sante-demo\.test \(tenant 990000201\): ssl_verify_client is optional, not on")),
        ("admits only that tenant's organisation certificates (403 for another tenant's)",
         _failing("TEN-02", r"host chval\.sante-demo\.test \(tenant 990000201\) location /fhir/: no 403 when the "
                            r"certificate's tenant is not the host's")),
        ("admits only that tenant's organisation certificates (the map reads the verified certificate's subject)",
         _claim(STACK, "the tenant map reads a header the client writes",
                _gateway("nginx.conf", "map $ssl_client_s_dn $socle_cert_tenant", "map $http_x_client_dn $socle_cert_tenant"),
                NGINX_CM, r"map \$socle_cert_tenant reads \$http_x_client_dn, not the verified certificate's subject")),
        ("admits only that tenant's organisation certificates (no tenant by default)",
         _claim(STACK, "unlisted certificates default to a tenant",
                _gateway("nginx.conf", 'map $ssl_client_s_dn $socle_cert_tenant {\n        default "";',
                         'map $ssl_client_s_dn $socle_cert_tenant {\n        default 990000201;'),
                NGINX_CM, r"map \$socle_cert_tenant: default '990000201' admits certificates of no listed subject")),
        ("admits only that tenant's organisation certificates (one subject, not a pattern)",
         _claim(STACK, "a tenant's certificates matched by a pattern",
                _gateway("nginx.conf", f'"{CHVAL_DN}" 990000201;', '"~^CN=CH Val-Demo" 990000201;'),
                NGINX_CM, r"map \$socle_cert_tenant: ~\^CN=CH Val-Demo is a pattern, not one certificate subject")),
        ("no two tenants' hosts admit one certificate subject",
         _claim(STACK, "CH Val-Demo's certificate also listed for the tilleuls host", _tilleuls_own_map_admitting_chval,
                NGINX_CM, r"certificate subject CN=CH Val-Demo \(FINESS 990000201\),O=Centre Hospitalier de Val-Demo,C=FR admitted by the hosts of several "
                r"tenants: chval\.sante-demo\.test \(990000201\), tilleuls\.sante-demo\.test \(990000301\)")),
        ("reaches only its partition (nothing but /fhir/: location / refuses)",
         _claim(STACK, "location / passes to the store",
                _gateway("tenant-server.conf", "location / {\n    return 404;", f"location / {{\n    {STORE}"),
                NGINX_CM, r"tenant 990000201\): location / does not refuse \(404\) what is not the FHIR API")),
        ("reaches only its partition (the path rewritten under /fhir/<tenant>/)",
         _claim(STACK, "the tenant no longer written into the path",
                _gateway("tenant-server.conf", REWRITE, "rewrite ^/fhir/(.*)$ /fhir/$1 break;"),
                NGINX_CM, r"location /fhir/: rewrites to /fhir/\$1, not /fhir/990000201/\$1")),
        ("reaches only its partition (the path rewritten under /fhir/<tenant>/)",
         _claim(STACK, "no rewrite: the client's path passed as sent", _gateway("tenant-server.conf", REWRITE, ""),
                NGINX_CM, r"location /fhir/: proxy_pass http://hapi-fhir\.grdemo-fhir\.svc\.cluster\.local:8080 passes "
                r"the client's path as sent: any partition")),
        ("reaches only its partition (every path of the location rewritten)",
         _claim(STACK, "a rewrite that leaves some paths as sent",
                _gateway("tenant-server.conf", REWRITE, "rewrite ^/fhir/(Patient.*)$ /fhir/$socle_tenant/$1 break;"),
                NGINX_CM, r"rewrite \^/fhir/\(Patient\.\*\)\$ does not take every path of the location")),
        ("reaches only its partition (partition management never forwarded)",
         _claim(STACK, "HAPI's partition management reachable through a tenant host",
                _gateway("tenant-server.conf", "location ~ /[$]partition-management- {\n    return 403;\n}\n", ""),
                NGINX_CM, r"location /fhir/: /fhir/\$partition-management-list-partitions is passed to the store")),
        ("reaches only its partition (the store partitioned by the request's tenant)",
         _claim(STACK, "the store ignores the tenant in the path",
                _hapi("request_tenant_partitioning_mode: true", "request_tenant_partitioning_mode: false"), HAPI_CM,
                r"request_tenant_partitioning_mode is not true")),
        ("reaches only its partition (no reference across partitions)",
         _claim(STACK, "references across partitions allowed",
                _hapi("allow_references_across_partitions: false", "allow_references_across_partitions: true"), HAPI_CM,
                r"allow_references_across_partitions is not false")),
        ("reaches only its partition (ids assigned by the server)",
         _claim(STACK, "client-assigned ids", _hapi("client_id_strategy: NOT_ALLOWED", "client_id_strategy: ALPHANUMERIC"),
                HAPI_CM, r"client_id_strategy is ALPHANUMERIC, not NOT_ALLOWED")),
    ],
}

# The hospital stacks host no tenant: both controls are not applicable there. The regional render's verdicts are in
# tests/test_control_claims.py (a stack's entry must exist there before an area overrides it).
RENDER_VERDICTS: dict[str, dict[str, str]] = {
    "demo": {"TEN-01": "not-applicable", "TEN-02": "not-applicable"},
    "chu-exemple-prod": {"TEN-01": "not-applicable", "TEN-02": "not-applicable"},
}

__all__ = ["CLAIMS", "FAILING", "PASSING", "RENDER_VERDICTS", "edit_file"]

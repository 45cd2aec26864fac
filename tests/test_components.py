"""Each component under the SDK's mocks: what a platform engineer and an auditor would look for."""
from __future__ import annotations

import pytest

from socle.components.access import AuditorAccess, AuditorAccessArgs
from socle.components.auditlog import AuditLog, AuditLogArgs, seal_script
from socle.components.common import AuditTarget, Flow
from socle.components.fhir import DatabaseArgs, FhirArgs, FhirStore
from socle.components.gateway import Gateway, GatewayArgs, Route
from socle.components.pki import BundleSpec, DemoPki, LeafSpec
from socle.components.relay import Relay, RelayArgs
from socle.components.storage import (
    BACKUP_LOCATION,
    BackupLocationArgs,
    BackupPlan,
    BackupPlanArgs,
    BackupScheduleArgs,
    HdsStorage,
    StorageArgs,
    ceph_rbd_profile,
    scaleway_profile,
)
from socle.components.zone import Zone, ZoneArgs
from socle.render import run_under_mocks

AUDIT = AuditTarget(host="rsyslog.t-audit.svc.cluster.local", port=6514, client_secret="auditlog-client-tls")


def objects(program):
    return run_under_mocks(program).objects


def one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, [o["metadata"]["name"] for o in objs if o["kind"] == kind]
    return found[0]


def containers(obj):
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def assert_hardened(obj, allow_root=False):
    pod = obj["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    for c in containers(obj):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]
        if not allow_root:
            assert sc["runAsNonRoot"] is True
        assert ":" in c["image"] and not c["image"].endswith(":latest")


STAMP = dict(profile="production", blueprint="etablissement 9.9.9", kit_version="t", allowed_registries=["docker.io"])


def test_zone_namespace_is_restricted_with_default_deny_and_quota():
    flows = [Flow("allow-x", {"app": "x"}, "egress", [("TCP", 443)], peer_cidrs=("0.0.0.0/0",), peer_cidrs_except=("10.0.0.0/8",))]
    objs = objects(lambda: Zone("z", ZoneArgs(namespace="t-zone", block="test", service_accounts=["a"], flows=flows, **STAMP)))
    ns = one(objs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # What an audit of a snapshot or a live cluster reads to know the profile and versions it judges.
    assert ns["metadata"]["labels"]["socle.esante.fr/profile"] == "production"
    assert ns["metadata"]["annotations"]["socle.esante.fr/blueprint"] == "etablissement 9.9.9"
    assert ns["metadata"]["annotations"]["socle.esante.fr/allowed-registries"] == "docker.io"
    deny = one(objs, "NetworkPolicy", "default-deny-all")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allow = one(objs, "NetworkPolicy", "allow-x")
    assert allow["spec"]["egress"][0]["to"][0]["ipBlock"] == {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}
    assert one(objs, "ResourceQuota")["spec"]["hard"]["services.nodeports"] == "0"
    assert one(objs, "LimitRange")
    assert one(objs, "ServiceAccount", "a")["automountServiceAccountToken"] is False


def test_zone_refuses_a_weaker_pod_security_level_without_a_stated_exception():
    with pytest.raises(Exception, match="K8S-01"):
        objects(lambda: Zone("z", ZoneArgs(namespace="t-zone", block="test", pod_security="baseline", **STAMP)))


def _gateway_args(**kw):
    routes = [
        Route(name="dossier", host="dossier.example.test", owner_group="dsi", sensitivity="sensitive", mtls=True,
              token_validation=True, upstream="http://hapi:8080"),
        Route(name="annuaire", host="annuaire.example.test", owner_group="dsi", sensitivity="public", mtls=False,
              token_validation=True, upstream="http://annuaire:8080", max_body="1m"),
    ]
    base = dict(kit_version="t", organisation="CH Test", namespace="t-gw", image="docker.io/nginxinc/nginx-unprivileged:1.27.4-alpine",
                oauth2_proxy_image="quay.io/oauth2-proxy/oauth2-proxy:v7.8.1", syslog_image="docker.io/rsyslog/rsyslog:2025-06",
                replicas=2, routes=routes, hsts_max_age=31536000, server_secret="gw-tls", trust_bundle_secret="trust",
                crl_secret="crl", psc_issuer="https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet", psc_client_id="c",
                psc_client_secret="psc-client", psc_redirect_host="dossier.example.test", audit=AUDIT,
                tools_image="docker.io/library/alpine:3.21.3")
    base.update(kw)
    return GatewayArgs(**base)


def test_gateway_renders_tls_mtls_hsts_limits_and_no_bodies():
    objs = objects(lambda: Gateway("g", _gateway_args()))
    conf = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("gateway-nginx-"))["data"]["nginx.conf"]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "ECDHE-RSA-AES256-GCM-SHA384" in conf and "CBC" not in conf and "RSA-AES" not in conf.replace("ECDHE-RSA-AES", "")
    dossier, annuaire = conf.split("# API dossier")[1].split("# API annuaire")
    assert "ssl_verify_client on;" in dossier and "ssl_crl" in dossier
    assert "ssl_verify_client" not in annuaire
    assert "client_max_body_size 1m;" in annuaire
    assert conf.count('Strict-Transport-Security "max-age=31536000') == 2
    assert "return 308 https://$host$request_uri;" in conf
    assert "$request_body" not in conf and "request_id" in conf
    o2 = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("oauth2-proxy-"))["data"]["oauth2-proxy.cfg"]
    # The browser session goes through the établissement's authorization server, which asks PSC for `openid
    # scope_all` (its realm) and checks the acr returned; oauth2-proxy forwards eidas1 and asks the server for openid.
    assert 'acr_values = "eidas1"' in o2 and 'scope = "openid"' in o2 and "/realms/etablissement" in o2
    assert "cookie_secure = true" in o2 and "ssl_insecure_skip_verify = false" in o2
    for name in ("gateway", "oauth2-proxy"):
        assert_hardened(one(objs, "Deployment", name))
        assert one(objs, "PodDisruptionBudget", name)
    assert one(objs, "Service", "gateway")["spec"]["type"] == "LoadBalancer"
    assert one(objs, "Service", "oauth2-proxy")["spec"]["type"] == "ClusterIP"


def test_gateway_config_name_follows_its_content():
    def conf_name(args):
        objs = objects(lambda: Gateway("g", args))
        return next(o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("gateway-nginx-"))
    assert conf_name(_gateway_args()) == conf_name(_gateway_args())
    assert conf_name(_gateway_args()) != conf_name(_gateway_args(hsts_max_age=63072000))


def test_gateway_single_replica_has_no_pdb_and_weaker_tls_shows_in_config():
    objs = objects(lambda: Gateway("g", _gateway_args(replicas=1, tls_min_version="TLSv1.1")))
    assert not [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    conf = next(o for o in objs if o["metadata"]["name"].startswith("gateway-nginx-"))["data"]["nginx.conf"]
    assert "ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3;" in conf


def test_gateway_refreshes_the_crl_beside_nginx_when_distribution_points_are_given():
    urls = ["http://crl.example.test/ca-1.crl", "http://crl.example.test/ca-2.crl"]
    objs = objects(lambda: Gateway("g", _gateway_args(crl_urls=urls, crl_refresh_seconds=1800)))
    gw = one(objs, "Deployment", "gateway")
    spec = gw["spec"]["template"]["spec"]
    assert spec["shareProcessNamespace"] is True  # the refresher signals NGINX to reload the CRL
    names = [c["name"] for c in containers(gw)]
    assert names == ["crl-seed", "nginx", "log-forwarder", "crl-refresh"]
    refresher = next(c for c in containers(gw) if c["name"] == "crl-refresh")
    assert refresher["securityContext"]["runAsUser"] == 101  # same uid as NGINX, nothing more
    crl = next(v for v in spec["volumes"] if v["name"] == "crl")
    assert "emptyDir" in crl  # seeded from the Secret, rewritten by the refresher
    script = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("gateway-crl-refresh-"))
    text = script["data"]["crl-refresh.sh"]
    # The distribution points are data beside the script, never part of its code.
    assert script["data"]["crl-urls"].splitlines() == urls and not any(u in text for u in urls)
    assert "sleep 1800" in text and "kill -HUP" in text
    assert_hardened(gw)
    # Without distribution points the CRL comes from the Secret as before, no refresher, no shared PIDs.
    plain = one(objects(lambda: Gateway("g", _gateway_args())), "Deployment", "gateway")["spec"]["template"]["spec"]
    assert "shareProcessNamespace" not in plain and [c["name"] for c in plain["containers"]] == ["nginx", "log-forwarder"]


def test_oauth2_proxy_logs_reach_the_audit_log():
    objs = objects(lambda: Gateway("g", _gateway_args()))
    o2 = one(objs, "Deployment", "oauth2-proxy")
    forwarder = next(c for c in containers(o2) if c["name"] == "log-forwarder")
    assert forwarder["securityContext"]["runAsUser"] == 65532  # reads oauth2-proxy's 0600 log file
    cfg = next(o for o in objs if o["metadata"]["name"].startswith("oauth2-proxy-"))["data"]["oauth2-proxy.cfg"]
    conf = next(o for o in objs if o["metadata"]["name"].startswith("oauth2-proxy-log-forwarder-"))["data"]["rsyslog.conf"]
    assert 'logging_filename = "/var/log/oauth2-proxy/oauth2-proxy.log"' in cfg
    assert 'file="/var/log/oauth2-proxy/oauth2-proxy.log"' in conf


def test_auditor_role_reads_everything_the_audit_lists_but_secrets_and_exec_is_separate():
    from socle.constants import AUDITED_RESOURCES
    objs = objects(lambda: AuditorAccess("a", AuditorAccessArgs(group="socle:auditors")))
    role = one(objs, "ClusterRole", "socle-auditor")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {(g, p) for g, _, p, _, _ in AUDITED_RESOURCES}
    assert all(rule["verbs"] == ["get", "list", "watch"] for rule in role["rules"])
    assert not [r for _, r in granted if r in ("secrets", "*") or "/" in r]
    binding = one(objs, "ClusterRoleBinding", "socle-auditor")
    assert binding["subjects"] == [{"kind": "Group", "name": "socle:auditors", "apiGroup": "rbac.authorization.k8s.io"}]
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    with_exec = objects(lambda: AuditorAccess("a", AuditorAccessArgs(group="g", exec_namespaces=["ns-a", "ns-b"])))
    roles = [o for o in with_exec if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ns-a", "ns-b"]
    assert roles[0]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                                 {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]


def _fhir_args(mode="in-cluster", **kw):
    db = DatabaseArgs(mode=mode, server_secret="pg-tls", storage_class="socle-health-data", image="docker.io/library/postgres:16.6-alpine3.21") \
        if mode == "in-cluster" else DatabaseArgs(mode="external", host="db.example.test", credentials_secret="db", ca_secret="db-ca")
    base = dict(kit_version="t", namespace="t-fhir", image="docker.io/hapiproject/hapi:v8.0.0", syslog_image="docker.io/rsyslog/rsyslog:2025-06",
                replicas=1, public_host="fhir.example.test", validation=True, terminology_server="https://smt.esante.gouv.fr/fhir",
                annuaire_api_key_secret="annuaire", ins_systems=["urn:oid:1.2.250.1.213.1.4.8"], database=db,
                region_label="topology.kubernetes.io/region", regions=["fr-par"], audit=AUDIT)
    base.update(kw)
    return FhirArgs(**base)


def test_fhir_store_in_cluster_database():
    run = run_under_mocks(lambda: FhirStore("f", _fhir_args()))
    objs = run.objects
    hapi = one(objs, "Deployment", "hapi-fhir")
    assert_hardened(hapi)
    env = {e["name"]: e for e in hapi["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "postgres-credentials", "key": "password"}
    assert env["ESANTE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "annuaire"
    assert "value" not in env["DB_PASSWORD"]
    probe = hapi["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
    assert probe == "/fhir/metadata"
    app = next(o for o in objs if o["metadata"]["name"].startswith("hapi-fhir-"))["data"]["application.yaml"]
    assert "fhir_version: R4" in app and "sslmode=verify-full" in app and "requests_enabled: true" in app
    pg = one(objs, "StatefulSet", "postgres")
    assert_hardened(pg)
    assert pg["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "socle-health-data"
    terms = pg["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["fr-par"]
    pgconf = next(o for o in objs if o["kind"] == "ConfigMap" and "postgresql.conf" in o["data"])["data"]
    assert "ssl = on" in pgconf["postgresql.conf"] and "hostnossl   all       all       0.0.0.0/0      reject" in pgconf["pg_hba.conf"]
    # TRACE-01: connection logs go to files that a forwarder running as postgres's uid sends to the audit log.
    assert "logging_collector = on" in pgconf["postgresql.conf"] and "log_connections = on" in pgconf["postgresql.conf"]
    forwarder = next(c for c in containers(pg) if c["name"] == "log-forwarder")
    assert forwarder["securityContext"]["runAsUser"] == 70
    fwd = next(o for o in objs if o["metadata"]["name"].startswith("postgres-log-forwarder-"))["data"]["rsyslog.conf"]
    assert 'file="/var/log/postgresql/postgresql-*.log"' in fwd
    assert run.secrets and run.secrets[0]["name"] == "postgres-credentials"


def test_fhir_store_external_database_creates_no_database_and_no_credentials():
    run = run_under_mocks(lambda: FhirStore("f", _fhir_args(mode="external", replicas=2)))
    assert not [o for o in run.objects if o["kind"] == "StatefulSet"]
    assert not run.secrets
    assert one(run.objects, "PodDisruptionBudget", "hapi-fhir")
    app = next(o for o in run.objects if o["metadata"]["name"].startswith("hapi-fhir-"))["data"]["application.yaml"]
    assert "jdbc:postgresql://db.example.test:5432/hapi" in app


def _relay_args(**kw):
    base = dict(kit_version="t", namespace="t-mss", image="docker.io/boky/postfix:v4.4.0",
                syslog_image="docker.io/rsyslog/rsyslog:2025-06", replicas=1, hostname="mss.example.test",
                authorized_domains=["b.mssante.test", "a.mssante.test"], domain_list_url="https://list.example.test/domains",
                require_client_certificate=True, server_secret="s", client_secret="c", trust_bundle_secret="t",
                storage_class="socle-health-data", region_label="topology.kubernetes.io/region", regions=["fr-par"], audit=AUDIT)
    base.update(kw)
    return RelayArgs(**base)


def test_relay_main_cf_enforces_tls_and_authorized_domains():
    objs = objects(lambda: Relay("r", _relay_args()))
    main = next(o for o in objs if o["metadata"]["name"].startswith("postfix-") and "main.cf" in o.get("data", {}))["data"]["main.cf"]
    for line in ("smtpd_tls_security_level = encrypt", "smtpd_tls_auth_only = yes", "smtpd_tls_req_ccert = yes",
                 "smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3, !TLSv1, !TLSv1.1",
                 "tls_high_cipherlist = ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
                 "smtp_tls_security_level = secure"):
        assert line in main
    maps = next(o for o in objs if o["metadata"]["name"].startswith("postfix-maps-"))["data"]
    assert maps["recipient_access"] == "a.mssante.test OK\nb.mssante.test OK\n"
    sts = one(objs, "StatefulSet", "postfix")
    assert_hardened(sts, allow_root=True)
    assert sts["spec"]["template"]["spec"]["hostUsers"] is False
    assert "socle.esante.fr/pod-security-exception" in sts["metadata"]["annotations"]


def test_relay_without_client_certificates_does_not_require_them():
    objs = objects(lambda: Relay("r", _relay_args(require_client_certificate=False)))
    main = next(o for o in objs if "main.cf" in o.get("data", {}))["data"]["main.cf"]
    assert "smtpd_tls_req_ccert" not in main and "smtpd_tls_security_level = encrypt" in main


def test_audit_log_retention_and_seal():
    args = AuditLogArgs(kit_version="t", namespace="t-audit", image="docker.io/rsyslog/rsyslog:2025-06", tools_image="docker.io/library/alpine:3.21.3",
                        retention_days=200, storage_class="socle-health-data", server_secret="s",
                        region_label="topology.kubernetes.io/region", regions=["fr-par"])
    objs = objects(lambda: AuditLog("a", args))
    sts = one(objs, "StatefulSet", "rsyslog")
    assert_hardened(sts)
    seal = next(o for o in objs if o["metadata"]["name"].startswith("audit-seal-"))
    assert 'RETENTION_DAYS=200' in seal["data"]["seal.sh"]
    conf = next(o for o in objs if o["metadata"]["name"].startswith("rsyslog-aggregator-"))["data"]["rsyslog.conf"]
    assert 'streamDriver.authMode="x509/certvalid"' in conf and 'streamDriver.mode="1"' in conf
    assert seal_script("t", 365) != seal_script("t", 183)


def test_storage_profiles_are_encrypted_and_retained():
    location = BackupLocationArgs(namespace="velero", bucket="b", prefix="p", s3_url="https://s3.example.test",
                                  region="fr-srr", region_country="FR", credential_secret="cred")
    for profile in (scaleway_profile("kms-1", "luks", "kube-system", "5000"), ceph_rbd_profile("c", "p", "kms", "s", "ceph")):
        objs = objects(lambda: HdsStorage("s", StorageArgs(profile=profile, region_label="topology.kubernetes.io/region",
                                                            regions=["fr-par"], region_countries={"fr-par": "FR"},
                                                            backup=location, protect=True)))
        sc = one(objs, "StorageClass")
        assert sc["reclaimPolicy"] == "Retain" and sc["parameters"]["encrypted"] == "true"
        assert sc["allowedTopologies"][0]["matchLabelExpressions"][0]["values"] == ["fr-par"]
        assert one(objs, "VolumeSnapshotClass")["deletionPolicy"] == "Retain"
        assert one(objs, "BackupStorageLocation")["spec"]["objectStorage"] == {"bucket": "b", "prefix": "p"}
        assert not [o for o in objs if o["kind"] == "Schedule"]  # a cell's, not the platform's
    luks = scaleway_profile("", "luks", "kube-system", "5000").parameters
    assert luks["csi.storage.k8s.io/node-stage-secret-name"] == "luks" and "kmsKeyId" not in luks


def test_a_backup_plan_schedules_its_namespaces_to_the_platform_location():
    schedules = BackupScheduleArgs(namespace="velero", name_prefix="socle-t", included_namespaces=["t-mss", "t-fhir"],
                                   daily_schedule="0 2 * * *", daily_ttl_days=30, monthly_schedule="0 3 1 * *",
                                   monthly_ttl_days=180)
    objs = objects(lambda: BackupPlan("b", BackupPlanArgs(schedules=schedules)))
    by_name = {o["metadata"]["name"]: o["spec"]["template"] for o in objs if o["kind"] == "Schedule"}
    assert {n: t["ttl"] for n, t in by_name.items()} == {"socle-t-daily": "720h0m0s", "socle-t-monthly": "4320h0m0s"}
    assert all(t["includedNamespaces"] == ["t-fhir", "t-mss"] and t["storageLocation"] == BACKUP_LOCATION
               for t in by_name.values())


def test_demo_pki_puts_keys_only_in_secrets():
    run = run_under_mocks(lambda: DemoPki(
        "pki", "CH Test", [LeafSpec("gw", "gw.example.test", ["gw.example.test"], "server", "health", [("t-gw", "gw-tls")])],
        [BundleSpec("health", [("t-gw", "trust")]), BundleSpec("health", [("t-gw", "crl")], with_crl=True)]))
    assert run.objects == []
    names = {(s["namespace"], s["name"]): s["keys"] for s in run.secrets}
    assert names == {("t-gw", "gw-tls"): ["ca.crt", "tls.crt", "tls.key"], ("t-gw", "trust"): ["ca.crt"], ("t-gw", "crl"): ["crl.pem"]}


def test_the_demo_crl_is_the_same_on_every_run_of_a_day():
    """Found by the real engine: a preview right after `socle up demo` replaced the CRL Secret (re-signed each run)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from socle.components.pki import _crl_pem

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "demo health CA")])
    start = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    day = dt.date(2026, 11, 27)
    first = _crl_pem(key_pem, cert_pem, day)
    assert first == _crl_pem(key_pem, cert_pem, day)
    crl = x509.load_pem_x509_crl(first.encode())
    assert crl.last_update_utc == dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
    assert crl.is_signature_valid(key.public_key())
    assert _crl_pem(key_pem, cert_pem, dt.date(2026, 11, 28)) != first  # a deploy the next day renews it

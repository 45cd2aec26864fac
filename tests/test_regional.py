"""The regional platform (`plateforme-regionale`) as a GRADeS uses it: one tenant file per établissement, every
mistake in them named by file and key, and a render where no tenant reaches another's namespaces, partition or
backups. The regional gateway's nginx.conf runs in the real NGINX: a tenant's certificate opens its own host only,
and whatever path the client sends lands in its own partition of the FHIR store."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from socle.verify import harness
from socle.verify.pki import TestPki
from socle.verify.probes import https
from tests.conftest import ROOT, rendered_stack, require_tool

STACK = "region-demo"
TENANTS = f"stacks/{STACK}/tenants"
LABEL = "socle.esante.fr/tenant"


# --- a temporary copy of the regional stack -------------------------------------------------------------------

@pytest.fixture
def region(tmp_path: Path) -> Path:
    """A project holding a copy of the regional stack file and its tenant files."""
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / f"Pulumi.{STACK}.yaml", tmp_path / "stacks")
    shutil.copytree(ROOT / "stacks" / STACK, tmp_path / "stacks" / STACK)
    return tmp_path


def socle(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["socle", *args], capture_output=True, text=True, cwd=root)


def edit_tenant(root: Path, key: str, change) -> None:
    path = root / TENANTS / f"{key}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def refused(root: Path) -> list[str]:
    """`socle validate` and `socle render` both refuse (exit 2, no traceback, nothing written); the problem lines."""
    result = socle(root, "validate", STACK)
    assert result.returncode == 2, result.stdout + result.stderr
    out = root / "out"
    rendered = socle(root, "render", STACK, "--out", str(out))
    assert rendered.returncode == 2 and not out.exists(), rendered.stdout + rendered.stderr
    for text in (result.stderr, rendered.stderr):
        assert "Traceback" not in text
    assert rendered.stderr == result.stderr
    return [line for line in result.stderr.splitlines() if not line.endswith("nothing was written or deployed.")]


# --- validation of the tenant files -----------------------------------------------------------------------------

def test_the_demo_region_is_valid(region):
    result = socle(region, "validate", STACK)
    assert result.returncode == 0, result.stderr
    assert "valid (plateforme-regionale" in result.stdout


def test_every_bad_tenant_value_is_named_by_its_tenant_file_and_key_all_at_once(region):
    edit_tenant(region, "990000201", lambda d: d.update(partition_id=0))
    edit_tenant(region, "990000301", lambda d: d.pop("org_certificates"))
    edit_tenant(region, "990000501", lambda d: d.update(siret="99000001000019"))  # both a FINESS and a SIRET
    edit_tenant(region, "99000001000019", lambda d: d.update(siret="99000001000018"))  # Luhn check digit wrong
    lines = refused(region)
    assert len(lines) == 4, lines
    assert f"{TENANTS}/990000201.yaml:partition_id: Input should be greater than or equal to 1" in lines
    assert f"{TENANTS}/990000301.yaml:org_certificates: required value missing" in lines
    assert any(line.startswith(f"{TENANTS}/990000501.yaml:") and "exactly one" in line for line in lines), lines
    assert any(line.startswith(f"{TENANTS}/99000001000019.yaml:siret: ") and "check digit" in line for line in lines), lines


def test_two_tenants_sharing_a_short_name_partition_or_host_are_refused_naming_both(region):
    edit_tenant(region, "990000301", lambda d: d.update(short_name="chval", partition_id=1))
    edit_tenant(region, "990000401", lambda d: d.update(api_host="fhir.ccdemo.test"))
    lines = refused(region)
    # each problem in the file of the tenant that came second, naming the first
    assert f"{TENANTS}/990000301.yaml:short_name: short name chval is already tenant 990000201's" in lines, lines
    assert f"{TENANTS}/990000301.yaml:partition_id: partition 1 is already tenant 990000201's" in lines, lines
    assert f"{TENANTS}/990000501.yaml:api_host: host fhir.ccdemo.test is already tenant 990000401's" in lines, lines


def test_a_tenant_file_named_by_another_key_than_its_finess_is_refused(region):
    folder = region / TENANTS
    (folder / "990000301.yaml").rename(folder / "990000302.yaml")
    lines = refused(region)
    assert f"{TENANTS}/990000302.yaml:finess: a tenant file is named by its FINESS: rename this file 990000301.yaml" in lines, lines


def test_tenants_written_in_the_stack_file_itself_are_refused(region):
    path = region / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["config"]["socle:params"]["tenants"] = {"990000601": {"name": "Hors fichier", "short_name": "hors"}}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    lines = refused(region)
    assert lines[0] == (f"stacks/Pulumi.{STACK}.yaml:config.socle:params.tenants: tenants are files of their own in "
                        f"{TENANTS}/, not a key of the stack file"), lines


# --- the render: each tenant in its own place ---------------------------------------------------------------------

def _tenant_files() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((ROOT / TENANTS).glob("*.yaml"))}


def _objects(kind: str) -> list[dict]:
    return [o for o in rendered_stack(STACK)[1].objects if o["kind"] == kind]


def _nginx_servers(conf: str) -> dict[str, str]:
    """server_name → the text of its server block (the rendered layout: `    server {` ... `    }`)."""
    out = {}
    for block in re.findall(r"^    server \{\n(.*?)^    \}\n", conf, flags=re.S | re.M):
        m = re.search(r"server_name (\S+);", block)
        out[m.group(1)] = block
    return out


def _regional_nginx_files() -> dict[str, str]:
    (cm,) = [o for o in _objects("ConfigMap") if o["metadata"]["namespace"] == "grdemo-gateway"
             and "nginx.conf" in (o.get("data") or {})]
    return cm["data"]


def _regional_nginx_conf() -> str:
    return _regional_nginx_files()["nginx.conf"]


def test_each_shared_tenant_host_admits_only_its_certificates_and_proxies_to_its_partition():
    files = _regional_nginx_files()
    conf, common = files["nginx.conf"], files["tenant-server.conf"]
    servers = _nginx_servers(conf)
    shared = {k: t for k, t in _tenant_files().items() if t["tier"] == "shared"}
    assert len(shared) == 3
    (m,) = re.findall(r"map \$ssl_client_s_dn \$socle_cert_tenant \{\n(.*?)\n    \}", conf, flags=re.S)
    owners = dict(re.findall(r'^\s+"(.*)" (\S+);$', m, flags=re.M))
    assert 'default "";' in m
    for key, t in shared.items():
        block = servers[t.get("api_host") or f"{t['short_name']}.sante-demo.test"]
        # the host's tenant is written by the gateway, and the host does what every tenant host does
        assert f"set $socle_tenant {key};" in block, key
        assert "include /etc/socle/nginx/tenant-server.conf;" in block, key
        # its certificates, and only its, map to it
        assert sorted(dn for dn, owner in owners.items() if owner == key) == sorted(t["org_certificates"]), key
    # what every tenant host does: client certificate required, another tenant's refused, only /fhir/ proxied, to
    # the host's own partition, and partition management never forwarded
    assert "ssl_verify_client on;" in common
    fhir = common.split("location /fhir/ {")[1]
    assert "if ($socle_cert_tenant != $socle_tenant) {\n        return 403;" in fhir
    assert "rewrite ^/fhir/(.*)$ /fhir/$socle_tenant/$1 break;" in fhir
    assert re.findall(r"proxy_pass (\S+);", fhir) == ["http://hapi-fhir.grdemo-fhir.svc.cluster.local:8080"]
    assert "location / {\n    return 404;" in common
    assert "location ~ /[$]partition-management- {\n    return 403;" in common
    # a dedicated tenant has no host on the regional gateway
    assert "chudemo" not in conf and "fhir.ccdemo.test" not in conf


def test_the_regional_fhir_store_partitions_by_tenant_and_never_takes_client_ids():
    (cm,) = [o for o in _objects("ConfigMap") if o["metadata"]["namespace"] == "grdemo-fhir"
             and "application.yaml" in (o.get("data") or {})]
    fhir = yaml.safe_load(cm["data"]["application.yaml"])["hapi"]["fhir"]
    assert fhir["partitioning"]["request_tenant_partitioning_mode"] is True
    assert fhir["server_id_strategy"] == "UUID" and fhir["client_id_strategy"] == "NOT_ALLOWED"


def test_a_dedicated_tenant_has_its_own_namespaces_and_backup_schedules():
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"].get(LABEL) for o in _objects("Namespace")}
    schedules = {o["metadata"]["name"]: o["spec"] for o in _objects("Schedule")}
    for key, t in _tenant_files().items():
        short = t["short_name"]
        own = {n for n, tenant in namespaces.items() if tenant == key}
        if t["tier"] == "shared":
            assert not own and f"socle-{short}-daily" not in schedules, key
            continue
        assert own == {f"{short}-{b}" for b in ("gateway", "fhir", "authz", "audit", "mss")}, key
        for period in ("daily", "monthly"):
            included = set(schedules[f"socle-{short}-{period}"]["template"]["includedNamespaces"])
            assert included and included <= own, (key, period, included)
        expected = (t.get("backup") or {}).get("daily_schedule", "0 2 * * *")
        assert schedules[f"socle-{short}-daily"]["schedule"] == expected, key
    # the region's own cell, labelled with the region's FINESS
    assert {n for n, tenant in namespaces.items() if tenant == "990000100"} == {
        f"grdemo-{b}" for b in ("gateway", "fhir", "authz", "audit", "mss")}
    assert all(namespaces.values()), namespaces


def _cross_tenant_peers(objects: list[dict]) -> list[str]:
    """NetworkPolicy peers of a tenant's namespace that name a namespace of another tenant."""
    tenant_of = {o["metadata"]["name"]: o["metadata"]["labels"].get(LABEL) for o in objects if o["kind"] == "Namespace"}
    out = []
    for o in objects:
        if o["kind"] != "NetworkPolicy":
            continue
        ns = o["metadata"]["namespace"]
        for direction, side in (("ingress", "from"), ("egress", "to")):
            for rule in o["spec"].get(direction) or []:
                for peer in rule.get(side) or []:
                    if "namespaceSelector" not in peer:
                        continue
                    labels = peer["namespaceSelector"].get("matchLabels") or {}
                    name = labels.get("kubernetes.io/metadata.name")
                    assert name and set(labels) == {"kubernetes.io/metadata.name"}, (ns, peer)  # the render's form
                    if tenant_of.get(name) not in (None, tenant_of[ns]):
                        out.append(f"{ns}/{o['metadata']['name']} {direction} {name}")
    return out


def test_no_network_policy_of_a_tenant_names_a_namespace_of_another_tenant():
    objects = rendered_stack(STACK)[1].objects
    assert _cross_tenant_peers(objects) == []
    # the check sees a peer of another tenant put into a policy
    mutated = copy.deepcopy(objects)
    policy = next(o for o in mutated if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == "chudemo-fhir"
                  and o["spec"].get("ingress"))
    policy["spec"]["ingress"][0]["from"].append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ccdemo-gateway"}}})
    assert _cross_tenant_peers(mutated) == [f"chudemo-fhir/{policy['metadata']['name']} ingress ccdemo-gateway"]


# --- the real NGINX ------------------------------------------------------------------------------------------------

def test_the_real_nginx_accepts_the_rendered_regional_gateway_config(tmp_path):
    """The ConfigMap's bytes, with only the pod's file paths mapped to local ones, pass `nginx -t`."""
    nginx = require_tool("nginx")
    pki = TestPki(tmp_path / "pki")
    server = pki.health.issue("server", "gateway.sante-demo.test", dns=["gateway.sante-demo.test"], server=True)
    (tmp_path / "crl").mkdir()
    shutil.copy(pki.crl, tmp_path / "crl" / "crl.pem")
    def local(text: str) -> str:
        text = (text.replace("/etc/socle/tls/server/", f"{server.directory}/")
                .replace("/etc/socle/tls/trust/ca.crt", str(pki.health.cert_path))
                .replace("/etc/socle/tls/crl/", f"{tmp_path}/crl/")
                .replace("/etc/socle/nginx/", f"{tmp_path}/")
                .replace("/var/run/socle/", f"{tmp_path}/")
                .replace("/var/cache/nginx/", f"{tmp_path}/cache-")
                .replace("access_log /dev/stdout", f"access_log {tmp_path}/access.log")
                .replace("error_log stderr", f"error_log {tmp_path}/error.log"))
        # the cluster's service names do not resolve here: nginx -t resolves every upstream host
        return re.sub(r"http://[a-z0-9.-]+\.svc\.cluster\.local:", "http://127.0.0.1:", text)

    files = {name: local(text) for name, text in _regional_nginx_files().items()}
    assert set(files) == {"nginx.conf", "tenant-server.conf"}
    assert not any("/etc/socle" in t or "cluster.local" in t for t in files.values())
    for name, text in files.items():  # the ConfigMap's files, mounted side by side as in the pod
        (tmp_path / name).write_text(text, encoding="utf-8")
    path = tmp_path / "nginx.conf"
    result = subprocess.run([nginx, "-t", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # and refuses the same files with the map of certificates to tenants gone (the check can fail)
    path.write_text(re.sub(r"map \$ssl_client_s_dn \$socle_cert_tenant \{.*?\n    \}\n", "", files["nginx.conf"],
                           flags=re.S))
    result = subprocess.run([nginx, "-t", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode != 0 and "socle_cert_tenant" in result.stderr


def test_in_the_real_nginx_a_tenant_certificate_opens_only_its_host_and_its_partition(tmp_path):
    require_tool("nginx")
    stack = rendered_stack(STACK)[0]
    args = stack.blueprint.component_args(stack.params)["gateway"]
    tenants = {t["short_name"]: t for t in _tenant_files().values() if t["tier"] == "shared"}
    pki = TestPki(tmp_path / "pki")

    def cert_of(short: str):
        # the tenant's organisation certificate subject, issued by the test health PKI: C=FR, O=..., CN=...
        dn = dict(part.split("=", 1) for part in tenants[short]["org_certificates"][0].split(","))
        return pki.health.issue(f"org-{short}", dn["CN"], client=True, org=dn["O"])

    chval, tilleuls = cert_of("chval"), cert_of("tilleuls")
    gw = harness.Gateway(args, pki, tmp_path)
    token = {"Authorization": f"Bearer {harness.GOOD_TOKEN}"}
    ca = pki.health.cert_path
    with harness.running(gw):
        def get(host: str, path: str, client) -> tuple[int, list[str]]:
            before = len(gw.backend.requests)
            status, _, _ = https(gw.https_port, host, ca, path=path, headers=token, client=client)
            return status, [r["path"] for r in gw.backend.requests[before:]]

        # a tenant's certificate on its own host reaches its own partition (named by the tenant's FINESS)
        assert get("chval.sante-demo.test", "/fhir/Patient?name=x", chval) == (200, ["/fhir/990000201/Patient?name=x"])
        assert get("tilleuls.sante-demo.test", "/fhir/Patient", tilleuls) == (200, ["/fhir/990000301/Patient"])
        # another tenant's certificate (same PKI, valid) on that host: refused, nothing reaches the store
        assert get("chval.sante-demo.test", "/fhir/Patient", tilleuls) == (403, [])
        assert get("tilleuls.sante-demo.test", "/fhir/Patient", chval) == (403, [])
        # the PKI's other certificates too
        assert get("chval.sante-demo.test", "/fhir/Patient", pki.org_client) == (403, [])
        # naming another partition in the path stays inside the host's own partition
        assert get("chval.sante-demo.test", "/fhir/990000301/Patient", chval) == (200, ["/fhir/990000201/990000301/Patient"])
        # HAPI's partition management answers under any tenant's path: the gateway never forwards it
        for path in ("/fhir/$partition-management-list-partitions", "/fhir/%24partition-management-create-partition"):
            assert get("chval.sante-demo.test", path, chval) == (403, []), path
        assert get("chval.sante-demo.test", "/tilleuls/Patient", chval) == (404, [])


def test_the_partitions_job_creates_each_missing_partition_once(tmp_path):
    """The Job's script (busybox sh and wget, as in the tools image) against a stand-in of HAPI's partition
    management operations: a partition that exists is read and left alone, a missing one is created with the body
    the kit wrote, and a refusal fails the Job (which Kubernetes retries)."""
    import http.server
    import threading

    from socle.components.fhir import PARTITIONS_SCRIPT

    busybox = require_tool("busybox")
    (job,) = [o for o in _objects("Job") if o["metadata"]["namespace"] == "grdemo-fhir"]
    (cm,) = [o for o in _objects("ConfigMap") if o["metadata"]["name"] ==
             job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]]
    files = cm["data"]
    assert sorted(k for k in files if k.endswith(".json")) == ["partition-1.json", "partition-2.json", "partition-3.json"]
    assert json.loads(files["partition-1.json"])["parameter"][1] == {"name": "name", "valueCode": "990000201"}
    folder = tmp_path / "etc"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    script = (folder / PARTITIONS_SCRIPT).read_text().replace("/etc/socle/partitions", str(folder))
    (folder / PARTITIONS_SCRIPT).write_text(script)
    existing, refuse, seen = {1}, set(), []

    class Hapi(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            pid = body["parameter"][0]["valueInteger"]
            op = self.path.rsplit("$", 1)[1]
            seen.append((self.path.split("/$")[0], op, pid))
            if op == "partition-management-read-partition":
                status = 200 if pid in existing else 400
            else:
                status = 400 if pid in refuse else 201
                existing.add(pid)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hapi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"FHIR_BASE": f"http://127.0.0.1:{server.server_port}/fhir", "PATH": os.environ["PATH"]}
    try:
        run = subprocess.run([busybox, "sh", str(folder / PARTITIONS_SCRIPT)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stderr
        assert seen == [("/fhir/DEFAULT", "partition-management-read-partition", 1),
                        ("/fhir/DEFAULT", "partition-management-read-partition", 2),
                        ("/fhir/DEFAULT", "partition-management-create-partition", 2),
                        ("/fhir/DEFAULT", "partition-management-read-partition", 3),
                        ("/fhir/DEFAULT", "partition-management-create-partition", 3)], seen
        # a second run creates nothing
        seen.clear()
        run = subprocess.run([busybox, "sh", str(folder / PARTITIONS_SCRIPT)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0 and [op for _, op, _ in seen] == ["partition-management-read-partition"] * 3
        # a refused creation fails the Job
        existing.discard(3)
        refuse.add(3)
        run = subprocess.run([busybox, "sh", str(folder / PARTITIONS_SCRIPT)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 1 and "partition 3 could not be created" in run.stderr
    finally:
        server.shutdown()


def test_a_cells_refusal_is_named_where_the_user_wrote_the_value(region):
    """Production refuses a single-replica FHIR store: the dedicated tenant's own store in its file, the region's
    store in the stack file; the region's cell speaks of `region`, never of the hospital's `organisation`."""
    path = region / "stacks" / f"Pulumi.{STACK}.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    profile: dev\n", "    profile: production\n"),
                    encoding="utf-8")
    edit_tenant(region, "990000401", lambda d: d.update(fhir={"replicas": 1}))
    lines = refused(region)
    assert f"{TENANTS}/990000401.yaml:fhir.replicas: K8S-09: stateless services need at least 2 replicas in production" \
        in lines, lines
    assert (f"stacks/Pulumi.{STACK}.yaml:config.socle:params.fhir.replicas: K8S-09: stateless services need at least "
            "2 replicas in production") in lines, lines
    assert not [line for line in lines if ".organisation." in line or "gateway.apis[" in line], lines

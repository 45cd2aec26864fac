"""`socle cluster up | down | env`: a real Kubernetes control plane on 127.0.0.1, from the pinned builds.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (the real programs, built by `build.py`) run with
TLS everywhere and client-certificate authentication; the API server authorizes with Node and RBAC and admits with
PodSecurity and ValidatingAdmissionPolicy among its default plugins; it writes an audit log (one line per request)
so that tests can count the requests of a client. kwok plays the kubelets of three nodes: two in the EEA region the
example stacks allow, one outside the EEA (`us-east-1`). A small volume provisioner (`provisioner.py`) stands in
for a CSI driver: it binds each claim the scheduler has placed to a local volume on the chosen node, so that
StatefulSets with claims are scheduled and report ready as on a real cluster.

Everything lives in one state folder (`${SOCLE_CACHE:-~/.cache/socle}/cluster`): certificates, etcd's data,
kubeconfigs, logs and the process table. `down` stops the processes `up` started and removes etcd's data; it
touches nothing outside that folder.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import pki as _pki
from .http import request

# Nodes simulated by kwok: (name, region, zone). The demo and the production example keep health data in fr-par;
# us-east-1 is outside the EEA, where no stateful pod may be scheduled (HDS-01).
NODES = (("kwok-fr-par-1", "fr-par", "fr-par-1"), ("kwok-fr-par-2", "fr-par", "fr-par-2"),
         ("kwok-us-east-1", "us-east-1", "us-east-1a"))
SERVICE_CIDR = "10.96.0.0/16"
START_TIMEOUT = 120.0


class ClusterError(Exception):
    """One sentence: what failed and where its log is."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def processes(self) -> Path:
        return self.root / "processes.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.logs / "apiserver-audit.log"

    def kubeconfig(self, name: str) -> Path:
        return self.root / f"{name}.kubeconfig"


def layout() -> Layout:
    from .build import cache_root

    return Layout(cache_root() / "cluster")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _read_table(lay: Layout) -> dict:
    try:
        return json.loads(lay.processes.read_text())
    except (OSError, ValueError):
        return {}


def _ssl_context(p: _pki.Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(p.ca.cert))
    ctx.load_cert_chain(str(p.admin.cert), str(p.admin.key))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _get(url: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:  # noqa: S310 - https on loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ssl.SSLError):
        return 0, b""


def running(lay: Layout | None = None) -> dict | None:
    """The process table of a running local cluster whose API server answers /readyz, else None."""
    lay = lay or layout()
    table = _read_table(lay)
    if not table or not all(_alive(p["pid"]) for p in table.get("processes", {}).values()):
        return None
    status, _ = _get(f"{table['server']}/readyz", _ssl_context(_pki.make(lay.pki)))
    return table if status == 200 else None


def _kubeconfig(path: Path, server: str, ca: Path, pair: _pki.Pair, user: str) -> None:
    import yaml

    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "socle-local",
           "clusters": [{"name": "socle-local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
           "users": [{"name": user, "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)}}],
           "contexts": [{"name": "socle-local", "context": {"cluster": "socle-local", "user": user}}]}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    os.replace(tmp, path)


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


def _start(name: str, argv: list[str], lay: Layout, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = (lay.logs / f"{name}.log").open("ab")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=lay.root,
                            start_new_session=True, env={**os.environ, **(env or {})})


def _wait(what: str, ok, proc: subprocess.Popen, lay: Layout, name: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{what} exited with code {proc.returncode}: see {lay.logs / (name + '.log')}")
        if ok():
            return
        time.sleep(0.3)
    raise ClusterError(f"{what} did not become ready in {timeout:.0f} s: see {lay.logs / (name + '.log')}")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def up(build_if_needed: bool = True) -> tuple[Layout, bool]:
    """Start the local control plane (building the programs if needed). Returns (layout, started): False when one
    was already running. Raises ClusterError."""
    from . import build as _build

    lay = layout()
    if running(lay):
        return lay, False
    down(quiet=True)  # a previous run that died half-way: stop what is left, start clean
    t0 = time.monotonic()
    bins = {name: str(path) for name, path in _build.build(["kubernetes", "etcd", "kwok"]).items()} \
        if build_if_needed else {}
    need = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
    missing = [n for n in need if n not in bins]
    if missing:
        raise ClusterError(f"the build gave no {', '.join(missing)}: run `socle cluster build` and read its output")
    for d in (lay.root, lay.logs):
        d.mkdir(parents=True, exist_ok=True)
    lay.root.chmod(0o700)
    p = _pki.make(lay.pki)
    etcd_port, etcd_peer, api_port = _free_port(), _free_port(), _free_port()
    server = f"https://127.0.0.1:{api_port}"
    (lay.root / "audit-policy.yaml").write_text(AUDIT_POLICY)
    procs: dict[str, subprocess.Popen] = {}
    table = {"server": server, "started": time.time(), "processes": {}}

    def record(name: str, proc: subprocess.Popen) -> None:
        procs[name] = proc
        table["processes"][name] = {"pid": proc.pid}
        tmp = lay.processes.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=2))
        os.replace(tmp, lay.processes)

    try:
        _say("starting etcd")
        etcd = _start("etcd", [
            bins["etcd"], "--name", "socle", "--data-dir", str(lay.etcd_data),
            "--listen-client-urls", f"https://127.0.0.1:{etcd_port}", "--advertise-client-urls", f"https://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"https://127.0.0.1:{etcd_peer}", "--initial-advertise-peer-urls", f"https://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"socle=https://127.0.0.1:{etcd_peer}", "--listen-metrics-urls", "",
            "--cert-file", str(p.etcd_server.cert), "--key-file", str(p.etcd_server.key), "--client-cert-auth",
            "--trusted-ca-file", str(p.etcd_ca.cert), "--peer-cert-file", str(p.etcd_server.cert),
            "--peer-key-file", str(p.etcd_server.key), "--peer-client-cert-auth", "--peer-trusted-ca-file", str(p.etcd_ca.cert),
            "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "--log-level", "warn", "--quota-backend-bytes", str(2 * 2**30)], lay)
        record("etcd", etcd)
        _say("starting kube-apiserver")
        api = _start("kube-apiserver", [
            bins["kube-apiserver"], "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(api_port), "--etcd-servers", f"https://127.0.0.1:{etcd_port}",
            "--etcd-cafile", str(p.etcd_ca.cert), "--etcd-certfile", str(p.etcd_client.cert),
            "--etcd-keyfile", str(p.etcd_client.key), "--tls-cert-file", str(p.apiserver.cert),
            "--tls-private-key-file", str(p.apiserver.key), "--tls-min-version", "VersionTLS12",
            "--client-ca-file", str(p.ca.cert), "--anonymous-auth=false",
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction,PodSecurity,ValidatingAdmissionPolicy",
            "--allow-privileged=true",  # what refuses a privileged pod here is Pod Security admission, as on a real cluster
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(p.service_account.cert),
            "--service-account-signing-key-file", str(p.service_account.key),
            "--kubelet-client-certificate", str(p.apiserver_kubelet.cert),
            "--kubelet-client-key", str(p.apiserver_kubelet.key),
            "--kubelet-certificate-authority", str(p.ca.cert),
            "--audit-policy-file", str(lay.root / "audit-policy.yaml"), "--audit-log-path", str(lay.audit_log),
            "--audit-log-format", "json", "--audit-log-maxsize", "200", "--audit-log-mode", "blocking",
            "--cert-dir", str(lay.root / "apiserver-certs"), "--v", "1"], lay)
        record("kube-apiserver", api)
        ctx = _ssl_context(p)
        _wait("kube-apiserver", lambda: _get(f"{server}/readyz", ctx)[0] == 200, api, lay, "kube-apiserver")
        for name, pair in (("admin", p.admin), ("controller-manager", p.controller_manager),
                           ("scheduler", p.scheduler), ("kwok", p.kwok)):
            _kubeconfig(lay.kubeconfig(name), server, p.ca.cert, pair, name)
        _say("starting kube-controller-manager, kube-scheduler, kwok")
        cm_kc, sch_kc = str(lay.kubeconfig("controller-manager")), str(lay.kubeconfig("scheduler"))
        record("kube-controller-manager", _start("kube-controller-manager", [
            bins["kube-controller-manager"], "--kubeconfig", cm_kc, "--authentication-kubeconfig", cm_kc,
            "--authorization-kubeconfig", cm_kc, "--bind-address", "127.0.0.1", "--secure-port", str(_free_port()),
            "--leader-elect=false", "--use-service-account-credentials=true",
            "--service-account-private-key-file", str(p.service_account.key), "--root-ca-file", str(p.ca.cert),
            "--cluster-signing-cert-file", str(p.ca.cert), "--cluster-signing-key-file", str(p.ca.key),
            "--service-cluster-ip-range", SERVICE_CIDR, "--controllers", "*,-nodeipam,-cloud-node-lifecycle",
            "--v", "1"], lay))
        record("kube-scheduler", _start("kube-scheduler", [
            bins["kube-scheduler"], "--kubeconfig", sch_kc, "--authentication-kubeconfig", sch_kc,
            "--authorization-kubeconfig", sch_kc, "--bind-address", "127.0.0.1", "--secure-port", str(_free_port()),
            "--leader-elect=false", "--v", "1"], lay))
        stages = lay.root / "kwok-stages.yaml"
        stages.write_text(kwok_stages())
        record("kwok", _start("kwok", [
            bins["kwok"], "--kubeconfig", str(lay.kubeconfig("kwok")), "--config", str(stages), "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
            "--cidr", "10.244.0.1/16", "--node-ip", "10.0.0.1", "--node-lease-duration-seconds", "40",
            "--server-address", f"127.0.0.1:{_free_port()}"], lay))
        _create_nodes(server, ctx)
        from . import crds

        _say("installing the CRDs the stacks use (Velero, VolumeSnapshotClass)")
        try:
            crds.install(lambda method, path, body: request(server, ctx, method, path, body))
        except crds.CrdError as exc:
            raise ClusterError(str(exc)) from None
        # Velero's install creates its namespace, where the stacks put their schedules and backup location.
        status, body = request(server, ctx, "POST", "/api/v1/namespaces",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "velero"}})
        if status not in (201, 409):
            raise ClusterError(f"namespace velero could not be created: {body.get('message', status)}")
        record("provisioner", _start("provisioner", [
            sys.executable, "-m", "socle.cluster.provisioner", "--kubeconfig", str(lay.kubeconfig("kwok")),
            "--root", str(lay.root / "volumes")], lay))
        _wait("the nodes", lambda: _nodes_ready(server, ctx), procs["kwok"], lay, "kwok", timeout=60)
        _wait("the default service account", lambda: _get(f"{server}/api/v1/namespaces/default/serviceaccounts/default",
                                                          ctx)[0] == 200, procs["kube-controller-manager"], lay,
              "kube-controller-manager", timeout=60)
    except BaseException:
        down(quiet=True)
        raise
    table["ready_seconds"] = round(time.monotonic() - t0, 1)
    lay.processes.write_text(json.dumps(table, indent=2))
    return lay, True


# kwok's own lifecycle stages (its `fast` profile: nodes ready with a lease heartbeat, pods ready as soon as they
# are scheduled, completed and deleted like a kubelet would), read from the kwok module of the pinned build.
KWOK_STAGES = ("kustomize/stage/node/fast/node-initialize.yaml",
               "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "kustomize/stage/pod/fast/pod-ready.yaml", "kustomize/stage/pod/fast/pod-complete.yaml",
               "kustomize/stage/pod/fast/pod-delete.yaml")


def kwok_stages() -> str:
    from .build import KWOK

    run = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{KWOK}"], capture_output=True, text=True)
    try:
        directory = Path(json.loads(run.stdout)["Dir"])
    except (ValueError, KeyError):
        raise ClusterError(f"kwok's stages could not be read from sigs.k8s.io/kwok@{KWOK}: {run.stderr.strip()[-300:]}") from None
    return "\n---\n".join((directory / s).read_text().strip() for s in KWOK_STAGES) + "\n"


def _create_nodes(server: str, ctx: ssl.SSLContext) -> None:
    for name, region, zone in NODES:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "type": "kwok", "topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": zone}},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}}
        status, body = request(server, ctx, "POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ClusterError(f"node {name} could not be created: {body.get('message', status)}")


def _nodes_ready(server: str, ctx: ssl.SSLContext) -> bool:
    status, body = request(server, ctx, "GET", "/api/v1/nodes")
    if status != 200:
        return False
    ready = {n["metadata"]["name"] for n in body.get("items", [])
             if any(c.get("type") == "Ready" and c.get("status") == "True" for c in n.get("status", {}).get("conditions", []))}
    return ready >= {n for n, _r, _z in NODES}


def down(quiet: bool = False) -> list[str]:
    """Stop every process `up` recorded (SIGTERM, then SIGKILL after 10 s) and remove etcd's data. Returns the names
    stopped."""
    lay = layout()
    table = _read_table(lay)
    stopped = []
    procs = table.get("processes", {})
    for name in reversed(list(procs)):
        pid = procs[name]["pid"]
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
    deadline = time.monotonic() + 10
    for name in stopped:
        pid = procs[name]["pid"]
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if lay.processes.exists():
        lay.processes.unlink()
    for data in (lay.etcd_data, lay.root / "volumes"):
        if data.exists():
            shutil.rmtree(data)
    if not quiet and not stopped:
        _say("no local cluster was running")
    return stopped


def env_line(lay: Layout | None = None) -> str:
    lay = lay or layout()
    return f"export KUBECONFIG={lay.admin_kubeconfig}"

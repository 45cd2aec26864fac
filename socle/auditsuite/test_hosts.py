"""Live mode: what the running daemons loaded, checked inside the pods through testinfra's `kubectl://` backend
with the same functions the real-daemon tests run on local daemons (`socle.hostchecks`).

Needs `--evidence live` and an identity bound to the optional socle-auditor-exec role (auditors.live_checks)."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
import testinfra

from socle import hostchecks
from socle.audit.evidence import Evidence, dig, meta
from socle.auditsuite.plugin import EvidenceError, audit_for, audit_or_error


@dataclass
class Target:
    pod: str
    namespace: str
    container: str
    check: str  # nginx | postfix | postgres | certificates
    args: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.check} {self.namespace}/{self.pod}/{self.container}"


def _config_dir(ev: Evidence, pod: dict, container: dict, key: str) -> str | None:
    vols = {v["name"]: v for v in dig(pod, "spec", "volumes", default=[]) or []}
    for m in container.get("volumeMounts") or []:
        cm = dig(vols.get(m["name"], {}), "configMap", "name")
        if cm and key in ((ev.get("ConfigMap", meta(pod)["namespace"], cm) or {}).get("data") or {}):
            return m["mountPath"]
    return None


def targets(ev: Evidence) -> list[Target]:
    out = []
    for pod in ev.scoped("Pod"):
        if dig(pod, "status", "phase") != "Running":
            continue
        name, ns = meta(pod)["name"], meta(pod)["namespace"]
        vols = {v["name"]: v for v in dig(pod, "spec", "volumes", default=[]) or []}
        for c in dig(pod, "spec", "containers", default=[]) or []:
            if c["name"] == "nginx" and (d := _config_dir(ev, pod, c, "nginx.conf")):
                out.append(Target(name, ns, c["name"], "nginx", {"conf": f"{d}/nginx.conf"}))
            if c["name"] == "postfix" and (d := _config_dir(ev, pod, c, "main.cf")):
                out.append(Target(name, ns, c["name"], "postfix", {"config_dir": d}))
            if c["name"] == "postgres":
                port = next((p["containerPort"] for p in c.get("ports") or []), 5432)
                out.append(Target(name, ns, c["name"], "postgres", {"socket_dir": "/var/run/postgresql", "port": port}))
            certs, keys = [], []
            for m in c.get("volumeMounts") or []:
                items = [i["path"] for i in dig(vols.get(m["name"], {}), "secret", "items", default=[]) or []]
                certs += [f"{m['mountPath']}/{i}" for i in items if i in ("tls.crt", "ca.crt")]
                keys += [f"{m['mountPath']}/{i}" for i in items if i == "tls.key"]
            if certs:
                out.append(Target(name, ns, c["name"], "certificates", {"certs": certs, "keys": keys}))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    found_audit = audit_or_error(metafunc, "target")
    if found_audit is None:
        return
    audit, ev, mode = found_audit
    if not mode["live"]:
        metafunc.parametrize("target", [pytest.param(None, id="needs-live-evidence")])
        return
    found = targets(ev)
    metafunc.parametrize("target", [pytest.param((t, mode), id=t.id) for t in found] or [pytest.param(None, id="no-running-pod")])


@pytest.mark.host
def test_daemon(target, request):
    if isinstance(target, EvidenceError):
        pytest.fail(f"the evidence could not be read: {target}", pytrace=False)
    if target is None:
        pytest.skip("host checks run inside the pods: use --evidence live (and auditors.live_checks in the stack)")
    t, mode = target
    query = {"namespace": t.namespace, "container": t.container}
    if mode["kubeconfig"]:
        query["kubeconfig"] = mode["kubeconfig"]
    if mode["context"]:
        query["context"] = mode["context"]
    host = testinfra.get_host(f"kubectl://{t.pod}?{urlencode(query)}")
    # Can a command run in the container at all? A node without a container runtime (kwok, a virtual kubelet) or
    # a kubelet the API server cannot reach makes the check not runnable there: said so, never passed.
    probe = host.run("true")
    if probe.rc != 0:
        why = (probe.stderr or probe.stdout or f"exit {probe.rc}").strip().splitlines()[0][:300]
        pytest.skip(f"NOT RUNNABLE: no command can run in {t.namespace}/{t.pod}/{t.container} ({why}); "
                    f"the {t.check} check was not made")
    if t.check == "nginx":
        results = hostchecks.nginx(host, t.args["conf"])
    elif t.check == "postfix":
        results = hostchecks.postfix(host, t.args["config_dir"])
    elif t.check == "postgres":
        results = hostchecks.postgres(host, t.args["socket_dir"], t.args["port"])
    else:
        audit, _, _ = audit_for(request.config)
        results = hostchecks.certificates(host, t.args["certs"], audit.date) + hostchecks.key_files(host, t.args["keys"])
    failed = [f"{r.requirement}: {r.detail}" for r in results if not r.ok]
    assert not failed, f"{t.id}\n  " + "\n  ".join(failed)

"""The admission policies the platform layer renders, applied to the local control plane's API server: each refuses
its failing object with the requirement ID and admits the object as the kit renders it (`kubectl apply
--dry-run=server`); the live audit says whether they are present and bound (K8S-11). Runs with the other
real-control-plane tests (CI, or SOCLE_CLUSTER_TESTS=1)."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time

import pytest

from socle.constants import ADMISSION_POLICIES
from tests.conftest import rendered_stack

REQUIRED = os.environ.get("CI") == "true" or os.environ.get("SOCLE_CLUSTER_TESTS") == "1"
pytestmark = pytest.mark.skipif(not REQUIRED, reason="real control plane tests: set SOCLE_CLUSTER_TESTS=1 (CI runs them)")
NS = "socle-admission-test"  # a namespace of the kit's shape, so that no stack's own namespaces are touched


def _objects() -> list[dict]:
    return copy.deepcopy(rendered_stack("demo")[1].objects)


def _one(objs: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in objs if o["kind"] == kind and (o["metadata"]["name"] == name or o["metadata"]["name"].startswith(name + "-"))]
    return obj


def _kubectl(env: dict, *args: str, obj: dict | list | None = None) -> subprocess.CompletedProcess:
    data = None if obj is None else json.dumps(obj if isinstance(obj, dict) else {"apiVersion": "v1", "kind": "List", "items": obj})
    return subprocess.run(["kubectl", *args], input=data, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("go") is None:
        pytest.fail("the Go toolchain is needed to build the control plane (controlplane/README.md)")
    from socle.cluster import local

    lay, started = local.up()
    env = dict(os.environ, KUBECONFIG=str(lay.admin_kubeconfig))
    objs = _objects()
    policies = [o for o in objs if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")]
    assert {o["metadata"]["name"] for o in policies} == set(ADMISSION_POLICIES)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {
        **_one(objs, "Namespace", "chdemo-fhir")["metadata"]["labels"]}}}
    try:
        run = _kubectl(env, "apply", "-f", "-", obj=[namespace, *policies])
        assert run.returncode == 0, run.stderr
        # The API server compiles a new policy asynchronously: wait until it refuses a NodePort Service.
        bad = _service(objs, "NodePort")
        deadline = time.monotonic() + 60
        while _kubectl(env, "apply", "--dry-run=server", "-f", "-", obj=bad).returncode == 0:
            assert time.monotonic() < deadline, "the admission policies never took effect"
            time.sleep(1)
        yield env
    finally:
        _kubectl(env, "delete", "--ignore-not-found", "--wait=false", "-f", "-", obj=[namespace, *policies])
        if started:
            local.down(quiet=True)


def _in_ns(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = NS
    return obj


def _deployment(objs: list[dict]) -> dict:
    return _in_ns(_one(objs, "Deployment", "hapi-fhir"))


def _service(objs: list[dict], kind: str | None = None) -> dict:
    svc = _in_ns(_one(objs, "Service", "hapi-fhir"))
    svc["spec"].pop("clusterIP", None)
    if kind:
        svc["spec"]["type"] = kind
    return svc


def _container(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


def _writable_root(objs):
    dep = _deployment(objs)
    _container(dep)["securityContext"]["readOnlyRootFilesystem"] = False
    return dep


def _root_user(objs):
    dep = _deployment(objs)
    _container(dep)["securityContext"].update({"runAsNonRoot": False, "runAsUser": 0})
    dep["spec"]["template"]["spec"].get("securityContext", {}).pop("runAsNonRoot", None)
    return dep


def _no_limits(objs):
    dep = _deployment(objs)
    _container(dep)["resources"].pop("limits")
    return dep


def _latest(objs):
    dep = _deployment(objs)
    _container(dep)["image"] = "docker.io/hapiproject/hapi:latest"
    return dep


def _foreign_registry(objs):
    dep = _deployment(objs)
    _container(dep)["image"] = "registry.example.org/hapi:8.8.0"
    return dep


def _token(objs):
    dep = _deployment(objs)
    dep["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    return dep


def _literal_password(objs):
    dep = _deployment(objs)
    _container(dep).setdefault("env", []).append({"name": "DB_PASSWORD", "value": "hunter2"})
    return dep


def _storage_class(objs, reclaim: str = "Retain"):
    sc = copy.deepcopy(_one(objs, "StorageClass", "socle-health-data"))
    sc["metadata"]["name"] = "socle-admission-test"
    sc["reclaimPolicy"] = reclaim
    return sc


def _namespace(objs, enforce: str = "", exception: bool = True):
    ns = copy.deepcopy(_one(objs, "Namespace", "chdemo-mss"))  # baseline, with its stated exception
    ns["metadata"]["name"] = "socle-admission-ns"
    ns["metadata"]["labels"].pop("kubernetes.io/metadata.name", None)
    if enforce:
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = enforce
    if not exception:
        ns["metadata"].get("annotations", {}).pop("socle.esante.fr/pod-security-exception", None)
    return ns


def _location(objs, country: str = "FR"):
    bsl = copy.deepcopy(_one(objs, "BackupStorageLocation", "socle-second-region"))
    bsl["metadata"]["name"] = "socle-admission-test"
    bsl["metadata"]["labels"]["socle.esante.fr/region-country"] = country
    return bsl


def _unencrypted(objs):
    sc = _storage_class(objs)
    sc["metadata"]["labels"]["socle.esante.fr/encrypted"] = "false"
    return sc


def _schedule(objs, moved: bool = True):
    sch = copy.deepcopy(_one(objs, "Schedule", "socle-daily"))
    if not moved:
        for key in ("snapshotMoveData", "defaultVolumesToFsBackup"):
            sch["spec"]["template"].pop(key, None)
    return sch


CASES = [
    ("K8S-01", "baseline without a stated exception", lambda objs: _namespace(objs, exception=False), _namespace),
    ("K8S-01", "privileged namespace", lambda objs: _namespace(objs, "privileged"), _namespace),
    ("K8S-03", "writable root filesystem", _writable_root, _deployment),
    ("K8S-03", "root user", _root_user, _deployment),
    ("K8S-04", "no limits", _no_limits, _deployment),
    ("K8S-05", "image tag latest", _latest, _deployment),
    ("K8S-05", "image from another registry", _foreign_registry, _deployment),
    ("K8S-06", "service account token mounted", _token, _deployment),
    ("K8S-07", "NodePort service", lambda objs: _service(objs, "NodePort"), _service),
    ("K8S-08", "password as a literal env value", _literal_password, _deployment),
    ("HDS-01", "backups in the United States", lambda objs: _location(objs, "US"), _location),
    ("HDS-04", "storage class deleting volumes", lambda objs: _storage_class(objs, "Delete"), _storage_class),
    ("HDS-04", "storage class not encrypted", _unencrypted, _storage_class),
    ("BCK-01", "schedule leaving volume data in place", lambda objs: _schedule(objs, moved=False), _schedule),
]


@pytest.mark.parametrize("requirement,why,failing,passing", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_policy_refuses_its_failing_object_and_admits_the_rendered_one(cluster, requirement, why, failing, passing):
    objs = _objects()
    ok = _kubectl(cluster, "apply", "--dry-run=server", "-f", "-", obj=passing(objs))
    assert ok.returncode == 0, f"the rendered object is refused: {ok.stderr}"
    bad = _kubectl(cluster, "apply", "--dry-run=server", "-f", "-", obj=failing(objs))
    assert bad.returncode != 0 and f"{requirement}:" in bad.stderr, bad.stderr


def test_the_live_audit_finds_the_policies_bound_then_a_missing_binding(cluster):
    from socle.audit import runner
    from socle.audit.controls import by_id
    from socle.audit.evidence import Evidence
    from socle.cluster import local

    def k8s_11() -> dict[str, str]:
        items = json.loads(_kubectl(cluster, "get", "validatingadmissionpolicies,validatingadmissionpolicybindings",
                                    "-o", "json").stdout)["items"]
        ns = json.loads(_kubectl(cluster, "get", "namespace", NS, "-o", "json").stdout)
        ev = Evidence(source="live", objects=[ns, *items], target=str(local.layout().admin_kubeconfig))
        ctx = runner.make_context(ev, __import__("datetime").date.today())
        return {f.obj.name: f.status for f in by_id()["K8S-11"].check(ev, ctx)}

    assert k8s_11() == {name: "pass" for name in ADMISSION_POLICIES}
    assert _kubectl(cluster, "delete", "validatingadmissionpolicybinding", "socle-k8s-06").returncode == 0
    try:
        assert k8s_11()["socle-k8s-06"] == "fail"
    finally:
        binding = _one(_objects(), "ValidatingAdmissionPolicyBinding", "socle-k8s-06")
        _kubectl(cluster, "apply", "-f", "-", obj=binding)

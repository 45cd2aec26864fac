"""Upgrading the demo on the real control plane keeps every claim and its volume (docs/UPGRADING.md).

The demo is deployed by the real Pulumi engine with the kit's code at an older commit (SOCLE_UPGRADE_FROM, by
default 4532ee6, the last commit before the Velero Schedules moved under a component of their own with an alias;
HEAD when that commit is not in the clone): `socle up` of a `git archive` of that commit, state in a file backend of
this module's own. Then `socle upgrade` with this checkout's code checks the upgrade twice, against the old code's
render (`--from-ref`) and against the deployed state (`--from-state`), and `socle up` deploys this checkout's code
onto the same state.

kwok runs no container, so no process writes into a volume here. What holds the data is checked instead: every
PersistentVolumeClaim of the demo keeps its UID and its bound volume (`spec.volumeName`), every PersistentVolume
its UID, every StatefulSet and Namespace its UID, and a marker file written before the upgrade into each volume's
folder (the local provisioner's `spec.local.path`, socle/cluster/provisioner.py) is still there after it: a
replaced claim would be bound to a new volume in a new, empty folder.

Skipped unless SOCLE_CLUSTER_TESTS=1 or CI=true, like tests/cluster/test_local_cluster.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.demo.yaml"
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("SOCLE_CLUSTER_TESTS") == "1"
pytestmark = pytest.mark.skipif(not REQUIRED, reason="real control plane tests: set SOCLE_CLUSTER_TESTS=1 (CI runs them)")
NAMESPACES = ("chdemo-gateway", "chdemo-fhir", "chdemo-mss", "chdemo-audit", "chdemo-authz")
MARKER = ".socle-upgrade-test"


def _from_ref() -> str:
    ref = os.environ.get("SOCLE_UPGRADE_FROM")
    if ref:
        return ref
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "4532ee6^{commit}"], capture_output=True)
    return "4532ee6" if known.returncode == 0 else "HEAD"


def kubectl(env: dict, *args: str) -> dict:
    run = subprocess.run(["kubectl", *args, "-o", "json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout)


def socle(env: dict, *args: str, cwd: Path = ROOT, timeout: int = 1200) -> subprocess.CompletedProcess:
    """`python -m socle.cli` in `cwd`: the `socle` package of that directory comes first on the path."""
    return subprocess.run([sys.executable, "-m", "socle.cli", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("go") is None or shutil.which("kubectl") is None:
        pytest.fail("the Go toolchain and kubectl are needed for the control plane tests (controlplane/README.md)")
    from socle.cluster import local

    lay, started = local.up()
    state = tmp_path_factory.mktemp("pulumi-state")
    env = dict(os.environ, KUBECONFIG=str(lay.admin_kubeconfig), PULUMI_CONFIG_PASSPHRASE="socle-upgrade-tests",
               PULUMI_BACKEND_URL=f"file://{state}")
    env.pop("PYTHONPATH", None)
    saved = STACK.read_bytes()  # the Pulumi CLI writes the stack's encryptionsalt into it: put it back after
    try:
        yield env
    finally:
        STACK.write_bytes(saved)
        if started:
            local.down(quiet=True)


@pytest.fixture(scope="module")
def old_kit(tmp_path_factory) -> tuple[str, Path]:
    """The kit's code at the old commit, as a project directory of its own (its `.venv` is this checkout's)."""
    ref = _from_ref()
    tree = tmp_path_factory.mktemp("old-kit")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    (tree / ".venv").symlink_to(ROOT / ".venv")
    return ref, tree


def _volumes(env: dict) -> dict[str, dict]:
    """Every claim of the demo: its UID, its volume, the volume's UID and folder."""
    claims = [c for c in kubectl(env, "get", "pvc", "-A")["items"] if c["metadata"]["namespace"] in NAMESPACES]
    volumes = {v["metadata"]["name"]: v for v in kubectl(env, "get", "pv")["items"]}
    out = {}
    for c in claims:
        volume = volumes.get(c["spec"].get("volumeName") or "", {})
        out[f"{c['metadata']['namespace']}/{c['metadata']['name']}"] = {
            "uid": c["metadata"]["uid"], "phase": c["status"].get("phase"), "volumeName": c["spec"].get("volumeName"),
            "volumeUid": (volume.get("metadata") or {}).get("uid"),
            "path": ((volume.get("spec") or {}).get("local") or {}).get("path")}
    return out


def _uids(env: dict, kind: str) -> dict[str, str]:
    items = kubectl(env, "get", kind, "-A")["items"] if kind != "namespaces" else kubectl(env, "get", kind)["items"]
    return {f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}": i["metadata"]["uid"] for i in items
            if (i["metadata"].get("namespace") or i["metadata"]["name"]) in NAMESPACES}


def _bound(env: dict, timeout: float = 180) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = _volumes(env)
        if found and all(v["phase"] == "Bound" and v["path"] for v in found.values()):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"claims not bound after {timeout:.0f} s: {found}")
        time.sleep(2)


def test_upgrading_the_demo_keeps_every_claim_and_its_volume(cluster, old_kit):
    ref, tree = old_kit
    run = socle(cluster, "up", "demo", "--yes", cwd=tree)
    assert run.returncode == 0, f"socle up at {ref}:\n" + run.stdout[-4000:] + run.stderr[-2000:]
    try:
        before = _bound(cluster)
        # the demo's stateful sets: PostgreSQL (FHIR store), Postfix (relay queue), rsyslog (audit log)
        assert {k.split("/")[0] for k in before} >= {"chdemo-fhir", "chdemo-mss", "chdemo-audit"}, before
        for v in before.values():
            Path(v["path"], MARKER).write_text(v["uid"])
        workloads, namespaces = _uids(cluster, "statefulsets"), _uids(cluster, "namespaces")
        assert len(workloads) >= 3 and len(namespaces) >= 4, (workloads, namespaces)

        # The engine saved the stack's encryption salt in the old tree's stack file: this checkout's uses the same.
        salt = [line for line in (tree / "stacks" / "Pulumi.demo.yaml").read_text().splitlines()
                if line.startswith("encryptionsalt:")]
        if salt and "encryptionsalt:" not in STACK.read_text():
            STACK.write_text(salt[0] + "\n" + STACK.read_text())

        major = __import__("socle.blueprints", fromlist=["registry"]).registry()["etablissement"].major
        for source in (["--from-ref", ref], ["--from-state"]):
            run = socle(cluster, "upgrade", "demo", "--to", major, *source, "--dry-run")
            assert run.returncode == 0, " ".join(source) + ":\n" + run.stdout[-4000:] + run.stderr[-3000:]
            assert "BLOCKED" not in run.stdout
            assert not [line for line in run.stdout.splitlines()
                        if line.startswith(("REPLACE PersistentVolumeClaim", "DELETE  PersistentVolumeClaim",
                                            "REPLACE StatefulSet", "DELETE  StatefulSet"))]

        run = socle(cluster, "up", "demo", "--yes")
        assert run.returncode == 0, "socle up after the upgrade:\n" + run.stdout[-4000:] + run.stderr[-2000:]
        after = _bound(cluster)  # claims the new code adds are allowed; every old one is as it was
        assert {k: after.get(k) for k in before} == before, "a claim was replaced, or bound to another volume"
        for v in before.values():
            assert Path(v["path"], MARKER).read_text() == v["uid"], f"the folder of {v['volumeName']} lost its marker"
        now = _uids(cluster, "statefulsets")
        assert {k: now.get(k) for k in workloads} == workloads, "a StatefulSet was replaced"
        now = _uids(cluster, "namespaces")
        assert {k: now.get(k) for k in namespaces} == namespaces, "a namespace was replaced"
    finally:
        run = socle(cluster, "destroy", "demo", "--yes")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and _uids(cluster, "namespaces"):
            time.sleep(2)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

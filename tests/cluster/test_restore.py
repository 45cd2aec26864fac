"""The restore path of docs/restore.md against a real API server (`socle cluster up`) holding Velero 1.15.2's CRDs:
the rendered Schedules, with the fields that move the volume data, and the Restore object as the page writes it are
accepted with strict field validation (an unknown field is refused, never silently pruned) and read back unchanged.

Then Velero 1.15.2 itself, built from its pinned Go module, runs as a server against that API server in a namespace
of its own: its schedule controller validates the kit's Schedules, and its restore controller resolves the page's
Restore (`scheduleName: socle-daily`) to the most recent completed backup of that schedule. No object store and no
node agent run here, so no backup data is written or read: the restore stops at the download, and the data mover is
not exercised (docs/restore.md, "What the kit itself tests"). Skipped unless SOCLE_CLUSTER_TESTS=1 or CI=true, like
tests/cluster/test_local_cluster.py.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import rendered_stack
from tests.test_backup import CRD_SHA256, VELERO, restore_manifest

REQUIRED = os.environ.get("CI") == "true" or os.environ.get("SOCLE_CLUSTER_TESTS") == "1"
pytestmark = pytest.mark.skipif(not REQUIRED, reason="real control plane tests: set SOCLE_CLUSTER_TESTS=1 (CI runs them)")
RESTORES_CRD = "config/crd/v1/bases/velero.io_restores.yaml"


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("go") is None or shutil.which("kubectl") is None:
        pytest.fail("the Go toolchain and kubectl are needed for the control plane tests (controlplane/README.md)")
    from socle.cluster import local

    lay, started = local.up()
    env = dict(os.environ, KUBECONFIG=str(lay.admin_kubeconfig))
    created: list[tuple[str, ...]] = []
    try:
        yield env, created
    finally:
        for what in reversed(created):  # only what this module created, newest first
            subprocess.run(["kubectl", "delete", *what, "--ignore-not-found", "--wait=false"], env=env,
                           capture_output=True)
        if started:
            local.down(quiet=True)


def kubectl(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def velero(cluster):
    """A namespace of this module's own (the cluster may hold a deployed stack's `velero` namespace) and Velero
    1.15.2's Restore CRD (the control plane installs Schedule, Backup and the locations; socle/cluster/crds.py),
    created only when absent; both removed afterwards."""
    env, created = cluster
    ns = f"socle-restore-{secrets.token_hex(3)}"
    run = kubectl(env, "create", "namespace", ns)
    assert run.returncode == 0, run.stderr
    created.append(("namespace", ns))
    from socle.cluster import crds

    data = (crds._module_dir(*VELERO) / RESTORES_CRD).read_bytes()
    assert hashlib.sha256(data).hexdigest() == CRD_SHA256[RESTORES_CRD], "Velero's Restore CRD is not the file pinned"
    settled(env, "restores.velero.io")
    if kubectl(env, "get", "crd", "restores.velero.io").returncode != 0:
        run = kubectl(env, "create", "-f", "-", stdin=data.decode())
        assert run.returncode == 0, run.stderr
        created.append(("crd", "restores.velero.io"))
        run = kubectl(env, "wait", "--for=condition=Established", "crd/restores.velero.io", "--timeout=60s")
        assert run.returncode == 0, run.stderr
    return env, created, ns


def settled(env: dict, crd: str, timeout: float = 120) -> None:
    """Wait while a CRD is being deleted (by an earlier run): it accepts no new object until it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = kubectl(env, "get", "crd", crd, "-o", "json")
        if run.returncode != 0 or not json.loads(run.stdout)["metadata"].get("deletionTimestamp"):
            return
        time.sleep(1)
    pytest.fail(f"CRD {crd} still terminating after {timeout:.0f} s")


def create_and_read_back(env: dict, created: list, obj: dict, ns: str) -> dict:
    """Server-side dry run, then create, both with strict field validation; the object as the API server keeps it."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = ns
    text = json.dumps(obj)
    run = kubectl(env, "create", "--dry-run=server", "--validate=strict", "-f", "-", "-o", "json", stdin=text)
    assert run.returncode == 0, run.stderr
    run = kubectl(env, "create", "--validate=strict", "-f", "-", "-o", "json", stdin=text)
    assert run.returncode == 0, run.stderr
    kept = json.loads(run.stdout)
    return kept


def test_the_rendered_schedules_with_data_movement_are_accepted_as_they_are(velero):
    env, created, ns = velero
    schedules = [o for o in rendered_stack("demo")[1].objects if o["kind"] == "Schedule"]
    assert sorted(s["metadata"]["name"] for s in schedules) == ["socle-daily", "socle-monthly"]
    for s in schedules:
        assert s["spec"]["template"]["snapshotMoveData"] is True
        kept = create_and_read_back(env, created, s, ns)
        assert kept["spec"] == s["spec"], "the API server pruned or changed a field of the Schedule"


def test_the_documented_restore_is_accepted_as_the_page_writes_it(velero):
    env, created, ns = velero
    restore = restore_manifest()
    assert restore["metadata"]["namespace"] == "velero"
    kept = create_and_read_back(env, created, restore, ns)
    assert kept["spec"] == restore["spec"], "the API server pruned or changed a field of the Restore"
    assert kept["spec"]["scheduleName"] == "socle-daily"


def test_a_field_velero_1_15_2_does_not_have_is_refused(velero):
    """The same path refuses what Velero does not know: the acceptance above is not a formality."""
    env, _created, ns = velero
    s = copy.deepcopy(next(o for o in rendered_stack("demo")[1].objects if o["kind"] == "Schedule"))
    s["metadata"]["name"], s["metadata"]["namespace"] = "socle-unknown-field", ns
    s["spec"]["template"]["moveSnapshotData"] = True  # not a BackupSpec field
    run = kubectl(env, "create", "--dry-run=server", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(s))
    assert run.returncode != 0 and "moveSnapshotData" in run.stderr, run.stderr


# --- Velero 1.15.2 itself ----------------------------------------------------------------------------------------

VELERO_BIN = Path.home() / ".cache" / "socle" / "velero" / f"velero-{VELERO[1]}"


@pytest.fixture(scope="module")
def velero_binary() -> Path:
    """The velero program of the pinned module, built once (about 10 minutes on 2 cores) into the user's cache."""
    if not VELERO_BIN.is_file():
        from socle.cluster import crds

        source = crds._module_dir(*VELERO)
        VELERO_BIN.parent.mkdir(parents=True, exist_ok=True)
        partial = VELERO_BIN.with_suffix(".partial")
        run = subprocess.run(["go", "build", "-trimpath", "-o", str(partial), "./cmd/velero"], cwd=source,
                             capture_output=True, text=True, timeout=3600)
        assert run.returncode == 0, f"building velero {VELERO[1]} failed: {run.stderr[-3000:]}"
        partial.replace(VELERO_BIN)
    return VELERO_BIN


@pytest.fixture(scope="module")
def velero_server(cluster, velero_binary, tmp_path_factory):
    """A namespace of this module's own, the Velero CRDs the control plane lacks (from `velero install --crds-only`),
    the kit's backup location and Schedules in it, two completed backups of the daily schedule, the page's Restore,
    then `velero server` watching that namespace. Everything is removed afterwards; the server is stopped by its id."""
    env, created = cluster
    ns = f"socle-velero-{secrets.token_hex(3)}"
    assert kubectl(env, "create", "namespace", ns).returncode == 0
    created.append(("namespace", ns))
    run = subprocess.run([str(velero_binary), "install", "--crds-only", "--dry-run", "-o", "json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    listing = json.loads(run.stdout)
    for crd in listing.get("items", [listing]):
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        settled(env, crd["metadata"]["name"])
        if kubectl(env, "get", "crd", crd["metadata"]["name"]).returncode != 0:
            made = kubectl(env, "create", "-f", "-", stdin=json.dumps(crd))
            assert made.returncode == 0, made.stderr
            created.append(("crd", crd["metadata"]["name"]))
    assert kubectl(env, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s").returncode == 0
    rendered = rendered_stack("demo")[1].objects
    for obj in [o for o in rendered if o["kind"] in ("BackupStorageLocation", "Schedule")]:
        mine = copy.deepcopy(obj)
        mine["metadata"]["namespace"] = ns
        made = kubectl(env, "create", "--validate=strict", "-f", "-", stdin=json.dumps(mine))
        assert made.returncode == 0, made.stderr
    for day in ("20261101", "20261102"):  # as the schedule names its backups: <schedule>-<YYYYMMDDhhmmss>
        backup = {"apiVersion": "velero.io/v1", "kind": "Backup",
                  "metadata": {"name": f"socle-daily-{day}020000", "namespace": ns,
                               "labels": {"velero.io/schedule-name": "socle-daily"}},
                  "spec": {"storageLocation": "socle-second-region", "snapshotMoveData": True},
                  "status": {"phase": "Completed", "startTimestamp": f"{day[:4]}-{day[4:6]}-{day[6:]}T02:00:00Z",
                             "completionTimestamp": f"{day[:4]}-{day[4:6]}-{day[6:]}T02:10:00Z"}}
        made = kubectl(env, "create", "-f", "-", stdin=json.dumps(backup))
        assert made.returncode == 0, made.stderr
    restore = restore_manifest()
    restore["metadata"]["namespace"] = ns
    made = kubectl(env, "create", "--validate=strict", "-f", "-", stdin=json.dumps(restore))
    assert made.returncode == 0, made.stderr
    logs = tmp_path_factory.mktemp("velero") / "server.log"
    with logs.open("w") as out:
        server = subprocess.Popen(
            [str(velero_binary), "server", "--namespace", ns, "--features=EnableCSI", "--uploader-type=kopia",
             "--plugin-dir", str(logs.parent), "--metrics-address", "127.0.0.1:0", "--profiler-address", "127.0.0.1:0"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield env, ns, logs
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        # Velero puts finalizers on what it handles; with its server gone they would keep the namespace (and the
        # CRDs) terminating for ever: take them off this namespace's Velero objects before the cleanup deletes them.
        for kind in ("restores.velero.io", "backups.velero.io", "schedules.velero.io", "backupstoragelocations.velero.io"):
            listed = kubectl(env, "-n", ns, "get", kind, "-o", "json")
            for item in json.loads(listed.stdout).get("items", []) if listed.returncode == 0 else []:
                if item["metadata"].get("finalizers"):
                    kubectl(env, "-n", ns, "patch", kind, item["metadata"]["name"], "--type", "merge",
                            "-p", '{"metadata":{"finalizers":null}}')


def _get(env: dict, ns: str, kind: str, name: str) -> dict:
    run = kubectl(env, "-n", ns, "get", kind, name, "-o", "json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _until(fn, what: str, logs: Path, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"{what} within {timeout:.0f} s; velero server log:\n{logs.read_text()[-3000:]}")


def test_velero_validates_the_kit_schedules(velero_server):
    env, ns, logs = velero_server
    for name in ("socle-daily", "socle-monthly"):
        status = _until(lambda: _get(env, ns, "schedules.velero.io", name).get("status", {}).get("phase"),
                        f"Velero did not judge Schedule {name}", logs)
        assert status == "Enabled", _get(env, ns, "schedules.velero.io", name).get("status")


def test_velero_restores_the_latest_daily_backup_as_the_page_asks(velero_server):
    env, ns, logs = velero_server
    restore = _until(lambda: (r := _get(env, ns, "restores.velero.io", "socle-restore-20261102"))["spec"].get("backupName")
                     and r, "Velero did not resolve the Restore's schedule to a backup", logs)
    assert restore["spec"]["backupName"] == "socle-daily-20261102020000"  # the newest completed one, not 20261101
    # No object store runs here: the restore goes no further than downloading that backup from the location.
    final = _until(lambda: (r := _get(env, ns, "restores.velero.io", "socle-restore-20261102")).get("status", {})
                   .get("phase") in ("Failed", "FailedValidation", "PartiallyFailed") and r,
                   "the Restore did not end", logs)
    assert "velero-s3-credentials" in final["status"].get("failureReason", "") or final["status"].get("validationErrors")

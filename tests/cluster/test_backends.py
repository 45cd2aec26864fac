"""Pulumi state where a team keeps it: an S3-compatible object store (issue 13).

`socle preview|up|destroy` of the demo stack on the local control plane with PULUMI_BACKEND_URL=s3://… pointing at
Versity Gateway (`versitygw`, built from its pinned Go module: socle/cluster/objectstore.py) on 127.0.0.1, with the
credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as the AWS SDK in the Pulumi CLI reads them. What is checked
is what a user would see: socle's first line names the backend, the state objects are in the bucket (read through
the S3 API), `pulumi stack ls` through that backend lists the stack, and a `--config` value given to `socle up` is
saved in the stack file and deployed. (A `file://` backend outside the repository is the state of every test of
test_local_cluster.py, and `pulumi login file://…` is tested there too.)

Needs the control plane and versitygw (`python -m socle.cluster.build`): in CI (`CI=true`) a missing build fails
these tests; elsewhere they run with SOCLE_CLUSTER_TESTS=1 and skip, naming the build command, when versitygw is
not built.
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
import yaml

from socle import engine
from socle.cluster import objectstore

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.demo.yaml"
CI = os.environ.get("CI") == "true"
REQUIRED = CI or os.environ.get("SOCLE_CLUSTER_TESTS") == "1"
pytestmark = pytest.mark.skipif(not REQUIRED, reason="real control plane tests: set SOCLE_CLUSTER_TESTS=1 (CI runs them)")
BUCKET = "socle-state"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if objectstore.binary() is None:
        message = f"versitygw is not built: run `{objectstore.BUILD_COMMAND}`"
        if CI:
            pytest.fail(message + " (.ci/run builds it)")
        pytest.skip(message)
    with objectstore.running(tmp_path_factory.mktemp("objectstore") / "data") as s:
        s.create_bucket(BUCKET)
        yield s


@pytest.fixture(scope="module")
def s3env(store, tmp_path_factory):
    """The local control plane, and the environment of a user whose state backend is the store's bucket."""
    if shutil.which("go") is None:
        pytest.fail("the Go toolchain is needed to build the control plane (controlplane/README.md)")
    from socle.cluster import local

    lay, started = local.up()
    env = dict(os.environ, KUBECONFIG=str(lay.admin_kubeconfig), PULUMI_CONFIG_PASSPHRASE="socle-backend-tests",
               PULUMI_BACKEND_URL=store.backend_url(BUCKET), PULUMI_HOME=str(tmp_path_factory.mktemp("pulumi-home")),
               **store.credentials())
    saved = STACK.read_bytes()  # the engine saves the stack file (its encryptionsalt, the --config value): put it back
    try:
        yield env
    finally:
        STACK.write_bytes(saved)
        if started:
            local.down(quiet=True)


def socle(env: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["socle", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def pulumi(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pulumi", *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(env, PATH=engine.program_path(), PULUMI_PYTHON_CMD=sys.executable, **engine.QUIET_ENV))


def kubectl(env: dict, *args: str) -> dict:
    run = subprocess.run(["kubectl", *args, "-o", "json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout)


def _state(store) -> dict:
    return json.loads(store.get_object(BUCKET, ".pulumi/stacks/socle/demo.json"))


def test_socle_keeps_the_state_in_an_s3_bucket_and_pulumi_reads_it_there(store, s3env):
    url = s3env["PULUMI_BACKEND_URL"]
    assert url == f"s3://{BUCKET}?endpoint={store.endpoint}&use_path_style=true&region={store.region}"
    run = socle(s3env, "preview", "demo")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    first = run.stderr.splitlines()[0]
    assert first.startswith("socle preview: stack demo on https://127.0.0.1:") and first.endswith(f"state in {url} (PULUMI_BACKEND_URL)")
    assert ".pulumi/stacks/socle/demo.json" in store.list_objects(BUCKET, ".pulumi/")

    # `--config` is saved in the stack file, as `pulumi up --config` saves it, and deployed
    comments = [line.strip() for line in STACK.read_text().splitlines() if line.strip().startswith("#")]
    run = socle(s3env, "up", "demo", "--yes", "--config-path", "-c", "socle:params.gateway.replicas=2")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "socle up: saved socle:params.gateway.replicas in stacks/Pulumi.demo.yaml" in run.stderr
    text = STACK.read_text()
    assert yaml.safe_load(text)["config"]["socle:params"]["gateway"]["replicas"] == 2
    assert all(c in text for c in comments), "a comment of the stack file was lost"
    assert kubectl(s3env, "get", "deployment", "gateway", "-n", "chdemo-gateway")["spec"]["replicas"] == 2

    # the state is the bucket's object, as the S3 API lists it, and the Pulumi CLI finds the stack there
    keys = store.list_objects(BUCKET)
    assert ".pulumi/stacks/socle/demo.json" in keys and any(k.startswith(".pulumi/history/socle/demo/") for k in keys), keys
    resources = _state(store)["checkpoint"]["latest"]["resources"]
    assert {"chdemo-gateway", "chdemo-fhir"} <= {(r.get("outputs") or {}).get("metadata", {}).get("name")
                                                 for r in resources if r["type"] == "kubernetes:core/v1:Namespace"}
    run = pulumi(s3env, "stack", "ls", "--json")
    assert run.returncode == 0, run.stderr
    listed = {s["name"]: s for s in json.loads(run.stdout)}
    assert "demo" in listed and int(listed["demo"].get("resourceCount", 0)) == len(resources)
    # the URL form of the AWS SDK v1 days (a scheme-less endpoint, disableSSL) reaches the same state
    legacy = f"s3://{BUCKET}?endpoint={store.endpoint.split('://', 1)[1]}&s3ForcePathStyle=true&disableSSL=true"
    run = pulumi(dict(s3env, PULUMI_BACKEND_URL=legacy), "stack", "ls", "--json")
    assert run.returncode == 0 and "demo" in {s["name"] for s in json.loads(run.stdout)}, run.stderr
    run = pulumi(s3env, "stack", "output", "--stack", "demo", "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["relayHost"] == "mss.chdemo.test", run.stderr

    run = socle(s3env, "destroy", "demo", "--yes")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.stderr.splitlines()[0].endswith(f"state in {url} (PULUMI_BACKEND_URL)")
    assert not [r for r in _state(store)["checkpoint"]["latest"].get("resources") or []
                if str(r["type"]).startswith("kubernetes:")]
    deadline = time.monotonic() + 180
    left: list[str] = []
    while time.monotonic() < deadline:
        left = [n["metadata"]["name"] for n in kubectl(s3env, "get", "namespaces")["items"]
                if n["metadata"]["name"].startswith("chdemo-")]
        if not left:
            break
        time.sleep(2)
    assert not left, f"namespaces still there: {left}"


def test_credentials_the_bucket_refuses_are_one_sentence_and_nothing_changes(store, s3env):
    """The backend is the user's: when the store refuses the credentials, socle says so in one sentence naming the
    backend (exit 2); nothing is deployed and the --config value is not saved."""
    env = dict(s3env, AWS_SECRET_ACCESS_KEY="not-" + store.secret_key)
    before = STACK.read_bytes()
    run = socle(env, "up", "demo", "--yes", "--config-path", "-c", "socle:params.gateway.replicas=3", timeout=300)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"socle up: the state backend {s3env['PULUMI_BACKEND_URL']} (PULUMI_BACKEND_URL) refused")
    assert STACK.read_bytes() == before
    assert not [n for n in kubectl(s3env, "get", "namespaces")["items"] if n["metadata"]["name"] == "chdemo-gateway"
                and n["metadata"].get("deletionTimestamp") is None]

"""socle's policy pack (the control catalogue) run by the real Pulumi engine at preview, on the local control plane:
the clean demo passes; a production stack whose resources were weakened after the parameters were validated (a
privileged FHIR server, TLS 1.0 in the gateway's configuration) is refused with the requirement ID.

The weakening is a stack transformation in a small program that wraps the kit's: it stands for a patched component
or a hand-edited object, which the parameter model cannot see but the pack judges. Runs with the other real-engine
tests (CI, or SOCLE_CLUSTER_TESTS=1)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("SOCLE_CLUSTER_TESTS") == "1"
pytestmark = pytest.mark.skipif(not REQUIRED, reason="real control plane tests: set SOCLE_CLUSTER_TESTS=1 (CI runs them)")

WEAKEN = '''
import re
import pulumi

def weaken(args):
    meta = args.props.get("metadata") or {}
    if WHAT == "privileged" and args.type_ == "kubernetes:apps/v1:Deployment" and meta.get("name") == "hapi-fhir":
        args.props["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
        return pulumi.ResourceTransformationResult(args.props, args.opts)
    if WHAT == "tls10" and args.type_ == "kubernetes:core/v1:ConfigMap" and "nginx.conf" in (args.props.get("data") or {}):
        args.props["data"]["nginx.conf"] = re.sub(r"ssl_protocols [^;]*;", "ssl_protocols TLSv1 TLSv1.2 TLSv1.3;",
                                                  args.props["data"]["nginx.conf"])
        return pulumi.ResourceTransformationResult(args.props, args.opts)
    return None

pulumi.runtime.register_stack_transformation(weaken)
from socle.program import run
run()
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.fail("the Go toolchain is needed to build the control plane (controlplane/README.md)")
    from socle import engine
    from socle.cluster import local

    lay, started = local.up()
    state = tmp_path_factory.mktemp("policy-state")
    env = dict(os.environ, KUBECONFIG=str(lay.admin_kubeconfig), PULUMI_CONFIG_PASSPHRASE="socle-policy-tests",
               PULUMI_BACKEND_URL=f"file://{state}", PATH=engine.program_path(), PULUMI_PYTHON_CMD=sys.executable,
               **engine.QUIET_ENV)
    try:
        yield env
    finally:
        if started:
            local.down(quiet=True)


def _weakened_project(tmp_path: Path, stack: str, what: str) -> Path:
    project = tmp_path / what
    (project / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "stacks" / f"Pulumi.{stack}.yaml", project / "stacks" / f"Pulumi.{stack}.yaml")
    (project / "Pulumi.yaml").write_text("name: socle\nruntime: python\nmain: main.py\nstackConfigDir: stacks\n")
    (project / "main.py").write_text(f"WHAT = {what!r}\n" + WEAKEN)
    return project


def _preview(env: dict, project: Path, stack: str) -> subprocess.CompletedProcess:
    from socle.policy import PACK, STACK_FILE_ENV

    env = dict(env, **{STACK_FILE_ENV: str(project / "stacks" / f"Pulumi.{stack}.yaml")})
    subprocess.run(["pulumi", "stack", "init", stack], cwd=project, env=env, capture_output=True, text=True)
    return subprocess.run(["pulumi", "preview", "--stack", stack, "--policy-pack", str(PACK)], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("what,policy,requirement", [("privileged", "k8s-03", "K8S-03"), ("tls10", "tls-01", "TLS-01")])
def test_a_weakened_production_stack_is_refused_at_preview_with_the_requirement_id(cluster, tmp_path, what, policy, requirement):
    run = _preview(cluster, _weakened_project(tmp_path, "chu-exemple-prod", what), "chu-exemple-prod")
    text = run.stdout + run.stderr
    assert run.returncode != 0, text[-3000:]
    assert re.search(rf"\[mandatory\]\s+{policy}\b", text), text[-3000:]
    assert f"{requirement} (critical)" in text and "Remediation:" in text


def test_the_same_weakening_in_dev_is_reported_but_not_refused(cluster, tmp_path):
    run = _preview(cluster, _weakened_project(tmp_path, "demo", "privileged"), "demo")
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-3000:]
    assert re.search(r"\[advisory\]\s+k8s-03\b", text) and "K8S-03 (critical): Deployment/chdemo-fhir/hapi-fhir" in text


def test_socle_preview_runs_the_pack_and_the_clean_demo_passes_it(cluster, tmp_path):
    saved = (ROOT / "stacks" / "Pulumi.demo.yaml").read_bytes()
    try:
        run = subprocess.run(["socle", "preview", "demo"], capture_output=True, text=True, env=cluster, cwd=ROOT,
                             timeout=900)
    finally:
        (ROOT / "stacks" / "Pulumi.demo.yaml").write_bytes(saved)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    policies = run.stdout[run.stdout.index("Policies:"):]
    assert "socle@" in policies.splitlines()[1] and "[mandatory]" not in policies and "[advisory]" not in policies

"""Rendered manifests: inventory, strict schemas for every supported minor, determinism, no secret values."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from socle.constants import SUPPORTED_KUBERNETES
from socle.render import MARKER, write
from socle.schemas import validate_object
from tests.conftest import EXAMPLE_STACKS, ROOT, rendered_stack, require_tool
from tests.inventory import REGENERATE, inventory, path_for


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_inventory_matches(name):
    _, rendered, _ = rendered_stack(name)
    expected = yaml.safe_load(path_for(name).read_text())
    actual = inventory(rendered.objects, rendered.secrets)
    assert actual == expected, f"inventory of stack {name} changed; if intended, regenerate it with: {REGENERATE}"


@pytest.mark.parametrize("minor", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_every_object_passes_strict_schema(name, minor):
    _, rendered, _ = rendered_stack(name)
    problems = {
        f"{o['kind']}/{o['metadata'].get('namespace', '-')}/{o['metadata']['name']}": p
        for o in rendered.objects
        if (p := validate_object(o, minor))
    }
    assert problems == {}


def test_schema_validation_rejects_unknown_field_and_kind():
    _, rendered, _ = rendered_stack("demo")
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    assert validate_object(broken, SUPPORTED_KUBERNETES[0])
    schedule = next(o for o in rendered.objects if o["kind"] == "Schedule")
    assert validate_object({**schedule, "spec": {**schedule["spec"], "ttll": "1h"}}, SUPPORTED_KUBERNETES[-1])
    assert validate_object({"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "w"}}, "1.31")


def test_render_objects_from_all_six_blocks():
    _, rendered, _ = rendered_stack("demo")
    blocks = {o["metadata"].get("labels", {}).get("socle.esante.fr/block") for o in rendered.objects}
    assert {"gateway", "fhir", "relay", "auditlog", "storage"} <= blocks
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "ServiceAccount"} <= kinds  # foundation


def test_no_secret_value_in_any_rendered_file(example):
    _, rendered, files = example
    assert rendered.secret_values, "the mocks generated no secret: the test would prove nothing"
    for path, content in files.items():
        for value in rendered.secret_values:
            assert value not in content, f"a generated secret value leaked into {path}"
    assert not any(o["kind"] == "Secret" for o in rendered.objects)


def test_render_cli_is_deterministic_and_kustomize_reproduces_it(tmp_path, chdir_root):
    kubectl = require_tool("kubectl")
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        result = subprocess.run(["socle", "render", "demo", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        outs.append(out)
    a = {p.relative_to(outs[0]): p.read_bytes() for p in outs[0].rglob("*") if p.is_file()}
    b = {p.relative_to(outs[1]): p.read_bytes() for p in outs[1].rglob("*") if p.is_file()}
    assert a == b
    kustomization = yaml.safe_load((outs[0] / "kustomization.yaml").read_text())
    built = subprocess.run([kubectl, "kustomize", str(outs[0])], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert len(docs) == len(kustomization["resources"]) == len(rendered_stack("demo")[1].objects)


def test_object_files_are_named_by_namespace_and_kind(tmp_path):
    stack, rendered, files = rendered_stack("demo")
    assert "_cluster/storageclass-socle-health-data.yaml" in files
    assert "chdemo-gateway/deployment-gateway.yaml" in files
    for path, content in files.items():
        if path.endswith(".yaml") and path not in ("kustomization.yaml", "secrets-required.yaml"):
            obj = yaml.safe_load(content)
            folder = obj["metadata"].get("namespace", "_cluster")
            assert path == f"{folder}/{obj['kind'].lower()}-{obj['metadata']['name'].lower()}.yaml"


def test_render_refuses_to_overwrite_a_foreign_directory(tmp_path):
    _, _, files = rendered_stack("demo")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    from socle.render import RenderError

    with pytest.raises(RenderError):
        write(foreign, files)
    assert (foreign / "notes.txt").read_text() == "keep me"
    previous = tmp_path / "previous"
    write(previous, files)
    (previous / "stale.yaml").write_text("old")
    with pytest.raises(RenderError, match="stale.yaml"):  # a file no render wrote is never deleted silently
        write(previous, files)
    assert (previous / "stale.yaml").read_text() == "old"
    write(previous, files, force=True)
    assert not (previous / "stale.yaml").exists() and (previous / MARKER).exists()


def test_secrets_required_lists_generated_and_provided_secrets():
    _, _, files = rendered_stack("chu-exemple-prod")
    doc = yaml.safe_load(files["secrets-required.yaml"])
    by_name = {(s["namespace"], s["name"]): s for s in doc["secrets"]}
    assert by_name[("chuex-fhir", "hapi-database")]["keys"] == ["password", "username"]
    assert "provided by you" in by_name[("chuex-authz", "psc-client")]["source"]
    assert "generated" in by_name[("chuex-gateway", "oauth2-proxy-cookie")]["source"]

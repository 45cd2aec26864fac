"""`socle audit --snapshot` on malformed input: never a traceback. Every malformed object, every List item that is
not an object, every duplicate object and any nesting deeper than the reader accepts is an input error (exit 2)
naming the object and the field; nothing is audited. The evidence indexes make the audit linear in the objects."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from socle.audit import evidence as evidence_module
from socle.audit import runner, sources
from socle.audit.evidence import Evidence
from socle.cli import app
from tests.conftest import ROOT, rendered_stack

cli = CliRunner()
AS_OF = "2026-11-27"
GATEWAY = ("Deployment", "chdemo-gateway")


def _demo() -> list[dict]:
    return copy.deepcopy(rendered_stack("demo")[1].objects)


def _find(objs: list[dict], kind: str, namespace: str | None = None, name: str | None = None) -> dict:
    return next(o for o in objs if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
                and (name is None or o["metadata"]["name"] == name))


def _write(tmp_path: Path, objs: list, form: str = "list") -> Path:
    path = tmp_path / "snapshot.yaml"
    if form == "list":
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs}, sort_keys=False))
    else:
        path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


# --- each case: how the demo render is broken, and what the error must name ------------------------------

def _metadata_string(objs):
    obj = _find(objs, "Deployment", GATEWAY[1])
    obj["metadata"] = "gateway"
    return objs, ["Deployment", "(items[", "metadata: expected a mapping, got a string"]


def _containers_null_and_int(objs):
    obj = _find(objs, *GATEWAY)
    obj["spec"]["template"]["spec"]["containers"] = [None, 5]
    name = obj["metadata"]["name"]
    return objs, [f"Deployment/chdemo-gateway/{name}", "spec.template.spec.containers[0]: expected a mapping, got null",
                  "spec.template.spec.containers[1]: expected a mapping, got an integer"]


def _rules_null(objs):
    obj = _find(objs, "ClusterRole")
    obj["rules"] = [None]
    return objs, [f"ClusterRole/{obj['metadata']['name']}", "rules[0]: expected a mapping, got null"]


def _data_list(objs):
    obj = _find(objs, "ConfigMap", "chdemo-gateway")
    obj["data"] = ["nginx.conf", "server {}"]
    return objs, [f"ConfigMap/chdemo-gateway/{obj['metadata']['name']}", "data: expected a mapping, got a list"]


def _volume_not_mapping(objs):
    obj = _find(objs, *GATEWAY)
    obj["spec"]["template"]["spec"]["volumes"].append("config")
    n = len(obj["spec"]["template"]["spec"]["volumes"]) - 1
    return objs, [f"Deployment/chdemo-gateway/{obj['metadata']['name']}",
                  f"spec.template.spec.volumes[{n}]: expected a mapping, got a string"]


def _args_not_strings(objs):
    obj = _find(objs, *GATEWAY)
    obj["spec"]["template"]["spec"]["containers"][0]["args"] = ["-c", {"file": "/etc/nginx/nginx.conf"}]
    return objs, ["spec.template.spec.containers[0].args[1]: expected a string, got a mapping"]


def _replicas_string(objs):
    obj = _find(objs, *GATEWAY)
    obj["spec"]["replicas"] = "two"
    return objs, ["spec.replicas: expected an integer, got a string"]


def _label_value_number(objs):
    obj = _find(objs, "Namespace", None, "chdemo-gateway")
    obj["metadata"]["labels"]["socle.esante.fr/block"] = 7
    return objs, ["Namespace/chdemo-gateway", "metadata.labels.socle.esante.fr/block: expected a string, got an integer"]


def _mount_path_null(objs):
    obj = _find(objs, *GATEWAY)
    obj["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = None
    return objs, ["spec.template.spec.containers[0].volumeMounts[0].mountPath: expected a string, got null"]


def _list_with_null_and_junk(objs):
    return [None] + objs[:3] + ["junk"] + objs[3:], ["items[0]: not a Kubernetes object: null",
                                                     "items[4]: not a Kubernetes object: a string 'junk'"]


def _duplicate_deployment(objs):
    obj = _find(objs, *GATEWAY)
    twin = copy.deepcopy(obj)
    twin["spec"]["replicas"] = 9
    return objs + [twin], [f"Deployment/chdemo-gateway/{obj['metadata']['name']}: duplicate object, 2 copies"]


def _no_kind(objs):
    del _find(objs, "Service")["kind"]
    return objs, ["kind: expected a non-empty string, got null"]


CASES = {f.__name__.lstrip("_"): f for f in (
    _metadata_string, _containers_null_and_int, _rules_null, _data_list, _volume_not_mapping, _args_not_strings,
    _replicas_string, _label_value_number, _mount_path_null, _list_with_null_and_junk, _duplicate_deployment, _no_kind)}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_snapshot_exits_2_naming_object_and_field(tmp_path, chdir_root, case):
    objs, expected = CASES[case](_demo())
    res = cli.invoke(app, ["audit", "--snapshot", str(_write(tmp_path, objs)), "--as-of", AS_OF])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "nothing audited" in res.output
    for text in expected:
        assert text in res.output, res.output


def test_every_malformed_object_is_listed_not_only_the_first(tmp_path, chdir_root):
    objs = _demo()
    for cm in [o for o in objs if o["kind"] == "ConfigMap"][:3]:
        cm["data"] = 1
    res = cli.invoke(app, ["audit", "--snapshot", str(_write(tmp_path, objs, "multi")), "--as-of", AS_OF])
    assert res.exit_code == 2 and "3 malformed or duplicate object(s)" in res.output
    assert res.output.count("data: expected a mapping, got an integer") == 3
    assert "(document " in res.output  # multi-document snapshots name the document


@pytest.mark.parametrize("text,where", [
    ("[" * 100_000 + "]" * 100_000 + "\n", "nested too deep"),  # JSON (starts with a bracket)
    ("items:\n- " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 100 levels"),  # YAML flow
    ("kind: List\nitems:\n" + "- " * 100_000 + "x\n", "nested deeper than 100 levels"),  # YAML block
    ("kind: List\nitems:\n- &a {kind: x}\n- " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 100 levels"),
])
def test_deep_nesting_exits_2_quickly(tmp_path, chdir_root, text, where):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    start = time.perf_counter()
    res = cli.invoke(app, ["audit", "--snapshot", str(path)])
    assert time.perf_counter() - start < 5  # generous: well under a second on the reference machine
    assert res.exit_code == 2 and where in res.output and "Traceback" not in res.output, res.output


def test_real_command_on_a_malformed_snapshot_exits_2_without_traceback(tmp_path):
    objs, _ = _containers_null_and_int(_demo())
    objs, _ = _list_with_null_and_junk(objs)
    path = _write(tmp_path, objs)
    deep = tmp_path / "deep.yaml"
    deep.write_text("items:\n- " + "[" * 100_000 + "]" * 100_000 + "\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}/usr/sbin{os.pathsep}{os.environ.get('PATH', '')}")
    for snapshot, expected in ((path, "spec.template.spec.containers[1]: expected a mapping, got an integer"),
                               (deep, "nested deeper than 100 levels")):
        run = subprocess.run([sys.executable, "-m", "socle.cli", "audit", "--snapshot", str(snapshot)],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert run.returncode == 2, run.stderr[-3000:]
        assert "Traceback" not in run.stderr + run.stdout and expected in run.stderr, run.stderr[-3000:]


def test_well_formed_snapshot_reads_as_safe_load_does(tmp_path):
    """The event reader builds the values `yaml.safe_load_all` builds: types of plain scalars, quoted strings,
    timestamps, documents; anchors and aliases go through the safe loader."""
    text = ("a: 1\nb: '1'\nc: yes\nd: ~\ne: 1.5\nf: 2026-11-27\ng: 2026-11-27T10:00:00Z\nh: [x, {y: 0x1f}]\ni: ''\n"
            "j: !!str 3\n---\n---\n- &k {z: 1}\n- *k\n")
    assert sources.load_yaml_documents(text) == list(yaml.safe_load_all(text))
    plain = "a: 1\nb: '1'\nc: yes\nd: ~\ne: .inf\nf: 2026-11-27\nk: {a: [1, 2, {b: null}]}\n---\nx: y\n"
    assert sources.load_yaml_documents(plain) == list(yaml.safe_load_all(plain))


def test_unreadable_scalar_is_an_input_error(tmp_path, chdir_root):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: List\nitems:\n- kind: Namespace\n  metadata: {name: x, creationTimestamp: 2024-13-45}\n")
    res = cli.invoke(app, ["audit", "--snapshot", str(path)])
    assert res.exit_code == 2 and "line 4" in res.output and "cannot be read" in res.output, res.output


def test_live_items_that_are_not_objects_are_reported():
    objects, problems = sources.flatten([(None, "Deployment list item 0"), ({"kind": "PodList", "items": [None, {}]}, "x")])
    assert problems == ["Deployment list item 0: not a Kubernetes object: null", "x items[0]: not a Kubernetes object: null"]
    assert objects == [({}, "x items[1]")]


def test_a_well_formed_render_has_no_problem():
    assert evidence_module.malformed([(o, str(i)) for i, o in enumerate(_demo())]) == []


# --- linear: lookups, not rescans ------------------------------------------------------------------------

def _copies(objs: list[dict], n: int) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from benchmarks.audit import copies

    return copies(objs, n)


def test_object_visits_grow_linearly_with_the_objects(monkeypatch):
    """Count every object a control or the evidence looks at through the shared accessors (`meta`, used on each
    object visited): from 5 to 50 copies of the demo, the visits may grow about tenfold, not a hundredfold."""
    calls = {"n": 0}
    real_meta = evidence_module.meta

    def counting(obj):
        calls["n"] += 1
        return real_meta(obj)

    demo = _demo()
    visits = {}
    for n in (5, 50):
        objs = _copies(demo, n)
        ev = Evidence(source="test", objects=objs, target="test")
        ctx = runner.make_context(ev, __import__("datetime").date(2026, 11, 27), profile="dev")
        for module in [evidence_module] + [sys.modules[m] for m in list(sys.modules) if m.startswith("socle.audit.controls")]:
            if getattr(module, "meta", None) is real_meta:
                monkeypatch.setattr(module, "meta", counting)
        calls["n"] = 0
        runner.run(ev, ctx)
        visits[n] = (len(objs), calls["n"])
        monkeypatch.undo()
    (small_objects, small), (large_objects, large) = visits[5], visits[50]
    growth = large / small
    assert growth <= 1.5 * large_objects / small_objects, visits
    json.dumps(visits)  # shown on failure through the assert message above

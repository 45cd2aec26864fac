"""`socle upgrade`: versions, migrations and the upgrade-safety check (docs/UPGRADING.md).

The check's model of `pulumi up` (URNs of nested components, aliases, replacements) is compared with the real
Pulumi engine and the real providers on a probe program: the engine needs no cluster (the Kubernetes provider writes
YAML files: `renderYamlToDirectory`). The programs come from `socle cluster build` (or a Pulumi install): missing,
that test is skipped, and fails in CI (`CI=true`). The kit-level tests run the real kit: the demo at a commit of a
scratch git repository (`git archive HEAD` of this checkout) and its working tree patched to a version 2 of the
blueprint with a migration.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

from socle import upgrade, urns
from tests.conftest import IN_CI, ROOT

# --- a probe program: nested components, aliases, the changes that matter --------------------------------------------

PROBE = '''
import pulumi, pulumi_kubernetes as k8s, pulumi_random as random


class Comp(pulumi.ComponentResource):
    def __init__(self, t, name, opts=None):
        super().__init__(t, name, None, opts)


def run():
    cfg = pulumi.Config("probe")
    step = cfg.get_int("step") or 1
    p = k8s.Provider("render", render_yaml_to_directory=cfg.get("out") or "/nonexistent")
    outer = Comp("probe:a:Outer", "outer")
    # step 2 renames the middle layer and changes its type, with an alias: its children keep their state through the
    # aliases the engine derives from the parent's (a child named after its parent is renamed with it)
    mid = Comp("probe:b:Middle" if step == 1 else "probe:b:Middle2", "outer-mid" if step == 1 else "outer-middle",
               pulumi.ResourceOptions(parent=outer, aliases=[] if step == 1 else [
                   pulumi.Alias(name="outer-mid", type_="probe:b:Middle")]))
    leaf = Comp("probe:c:Leaf", "leaf", pulumi.ResourceOptions(parent=mid))
    k8s.core.v1.ConfigMap(("outer-mid" if step == 1 else "outer-middle") + "-named",
                          metadata={"name": "named", "namespace": "data"}, data={"a": "1"},
                          opts=pulumi.ResourceOptions(parent=mid, provider=p))
    o = pulumi.ResourceOptions(parent=leaf, provider=p)
    k8s.core.v1.Namespace("ns", metadata={"name": "data"}, opts=o)
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    # renamed without an alias at step 2: deleted and created again
    k8s.core.v1.PersistentVolumeClaim("claim" if step == 1 else "claim-renamed",
                                      metadata={"name": "claim", "namespace": "data"}, spec=claim, opts=o)
    # renamed with an alias: kept
    k8s.core.v1.PersistentVolumeClaim("kept" if step == 1 else "kept-renamed", metadata={"name": "kept", "namespace": "data"},
                                      spec=claim, opts=pulumi.ResourceOptions.merge(o, pulumi.ResourceOptions(
                                          aliases=[] if step == 1 else [pulumi.Alias(name="kept")])))
    k8s.apps.v1.StatefulSet("db", metadata={"name": "db", "namespace": "data"}, spec={
        "selector": {"matchLabels": {"app": "db"}}, "serviceName": "db", "replicas": 1,
        "template": {"metadata": {"labels": {"app": "db"}},
                     "spec": {"containers": [{"name": "db", "image": "db:1" if step == 1 else "db:2"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            **claim, "resources": {"requests": {"storage": "1Gi" if step == 1 else "2Gi"}}}}]}, opts=o)
    # content-hashed name: a new object, then the old one deleted
    k8s.core.v1.ConfigMap("conf", metadata={"name": "conf-1111" if step == 1 else "conf-2222", "namespace": "data"},
                          data={"a": "1" if step == 1 else "2"}, opts=o)
    k8s.apps.v1.Deployment("web", metadata={"name": "web", "namespace": "data"}, spec={
        "selector": {"matchLabels": {"app": "web"}}, "replicas": 1 if step == 1 else 2,
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
        opts=o)
    pw = random.RandomPassword("pw", length=16, special=False, opts=pulumi.ResourceOptions(parent=leaf))
    k8s.core.v1.Secret("pw-secret", metadata={"name": "pw", "namespace": "data"}, string_data={"pw": pw.result}, opts=o)
    token = random.RandomPassword("token", length=16 if step == 1 else 24, special=False,
                                  opts=pulumi.ResourceOptions(parent=leaf))
    k8s.core.v1.Secret("token-secret", metadata={"name": "token", "namespace": "data"}, string_data={"t": token.result},
                       opts=o)
    if step == 1:
        k8s.core.v1.Service("gone", metadata={"name": "gone", "namespace": "data"}, spec={"ports": [{"port": 80}]}, opts=o)
    else:
        k8s.core.v1.Service("new", metadata={"name": "new", "namespace": "data"}, spec={"ports": [{"port": 80}]}, opts=o)
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    (root / "probe.py").write_text(PROBE)
    (root / "__main__.py").write_text("import probe\nprobe.run()\n")
    (root / "Pulumi.yaml").write_text("name: probe\nruntime: python\n")
    return root


def recorded(probe: Path, step: int) -> list[dict]:
    return upgrade.record_in_subprocess(probe, "dev", "config: {}\n", {"probe:step": str(step), "probe:out": str(probe / "out")},
                                        "probe", program="probe:run")


@pytest.fixture(scope="module")
def steps(probe) -> tuple[list[dict], list[dict]]:
    return recorded(probe, 1), recorded(probe, 2)


URN = "urn:pulumi:dev::probe::"


def test_nested_components_get_the_engines_urns_not_the_sdk_mocks(probe, steps, monkeypatch):
    """Every ancestor's type is in a URN, and a top-level resource's has no `pulumi:pulumi:Stack$`; the SDK's own
    mock monitor (the failing fixture) keeps only the immediate parent's type."""
    ours = {r["urn"] for r in steps[0]}
    assert f"{URN}probe:a:Outer::outer" in ours
    assert f"{URN}probe:a:Outer$probe:b:Middle$probe:c:Leaf$kubernetes:core/v1:Namespace::ns" in ours
    assert f"{URN}probe:a:Outer$probe:b:Middle$kubernetes:core/v1:ConfigMap::outer-mid-named" in ours

    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    seen: list[str] = []

    class SdkMonitor(MockMonitor):
        def RegisterResource(self, request):  # noqa: N802
            response = super().RegisterResource(request)
            seen.append(response.urn)
            return response

    monkeypatch.syspath_prepend(str(probe))
    import importlib

    program = importlib.import_module("probe")
    mocks = urns.StableMocks()
    pulumi.runtime.set_mocks(mocks, project="probe", stack="dev", preview=False, monitor=SdkMonitor(mocks))
    pulumi.runtime.set_all_config({"probe:step": "1", "probe:out": "/nonexistent"})
    try:
        _sync_await(run_pulumi_func(program.run))
    finally:
        pulumi.runtime.set_all_config({})
        sys.modules.pop("probe", None)
    # the SDK's mock: the immediate parent's type only, and the stack's type on top-level resources
    assert f"{URN}probe:c:Leaf$kubernetes:core/v1:Namespace::ns" in seen
    assert f"{URN}pulumi:pulumi:Stack$probe:a:Outer::outer" in seen
    assert f"{URN}probe:a:Outer$probe:b:Middle$probe:c:Leaf$kubernetes:core/v1:Namespace::ns" not in seen


def _programs() -> dict[str, str]:
    from socle import engine

    path = engine.program_path()
    needed = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes", "pulumi-resource-random")
    missing = [p for p in needed if shutil.which(p, path=path) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"{', '.join(missing)} required in CI (python -m socle.cluster.build --group pulumi --group providers)")
        pytest.skip(f"{', '.join(missing)} not found (socle cluster build)")
    return {"PATH": path, **engine.QUIET_ENV}


def test_the_check_agrees_with_the_real_engine(probe, steps, tmp_path):
    """The real engine deploys step 1 (state in a file backend), then previews step 2: its URNs, and which resources
    it keeps through an alias, replaces, deletes and creates, are exactly the check's."""
    env = dict(os.environ, **_programs(), PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}",
               PULUMI_CONFIG_PASSPHRASE="socle-tests", PULUMI_HOME=str(tmp_path / "home"), PULUMI_PYTHON_CMD=sys.executable)
    (tmp_path / "state").mkdir()
    project = tmp_path / "project"
    shutil.copytree(probe, project, ignore=shutil.ignore_patterns("__pycache__", "out"))

    def pulumi_cli(*args: str) -> str:
        run = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return run.stdout

    pulumi_cli("stack", "init", "dev")
    pulumi_cli("config", "set", "probe:out", str(tmp_path / "out"))
    pulumi_cli("up", "--yes", "--skip-preview")
    deployment = json.loads(pulumi_cli("stack", "export"))["deployment"]
    engine_urns = {r["urn"] for r in deployment["resources"] if not r["type"].startswith("pulumi:")}
    old, new = steps
    assert engine_urns == {r["urn"] for r in old if not r["type"].startswith("pulumi:")}

    pulumi_cli("config", "set", "probe:step", "2")
    preview = json.loads(pulumi_cli("preview", "--json", "--show-sames"))
    ops: dict[str, set] = {"replace": set(), "delete": set(), "create": set(), "moved": set()}
    for step in preview["steps"]:
        before = (step.get("oldState") or {}).get("urn")
        if step["op"] in ("delete", "create"):
            ops[step["op"]].add(step["urn"])
            continue
        if step["op"] == "replace":
            ops["replace"].add(before)
        if before and before != step["urn"]:  # found in the old state through an alias
            ops["moved"].add((before, step["urn"]))
    ops = {k: {u for u in v if "pulumi:providers:" not in str(u)} for k, v in ops.items()}

    # The check from the old code's render (--from-ref), and from the deployed state (--from-state): the state holds
    # the real generated password, encrypted, which the check compares by provenance.
    for check in (upgrade.compare(old, new, stack="dev", project="probe"),
                  upgrade.compare(upgrade.records_from_state(deployment), new, stack="dev", project="probe",
                                  from_state=True)):
        assert {c.urn for c in check.changes if c.action == "replace"} == ops["replace"]
        assert {c.urn for c in check.changes if c.action == "delete"} == ops["delete"]
        assert set(check.created) == ops["create"]
        assert set(check.moved) == ops["moved"]
    leaf = f"{URN}probe:a:Outer$probe:b:Middle$probe:c:Leaf$"
    assert ops["replace"] == {f"{leaf}kubernetes:apps/v1:StatefulSet::db", f"{leaf}kubernetes:core/v1:ConfigMap::conf",
                              f"{leaf}random:index/randomPassword:RandomPassword::token",
                              f"{leaf}kubernetes:core/v1:Secret::token-secret"}
    assert ops["delete"] == {f"{leaf}kubernetes:core/v1:PersistentVolumeClaim::claim", f"{leaf}kubernetes:core/v1:Service::gone"}
    assert (f"{URN}probe:a:Outer$probe:b:Middle$kubernetes:core/v1:ConfigMap::outer-mid-named",
            f"{URN}probe:a:Outer$probe:b:Middle2$kubernetes:core/v1:ConfigMap::outer-middle-named") in ops["moved"]


def _change(check: upgrade.Comparison, obj: str) -> upgrade.Change | None:
    return next((c for c in check.changes if c.object == obj), None)


def test_a_rename_without_an_alias_is_a_blocked_delete_and_with_an_alias_nothing(steps):
    check = upgrade.compare(*steps, stack="dev", project="probe")
    deleted = _change(check, "PersistentVolumeClaim/data/claim")
    assert deleted is not None and deleted.action == "delete" and deleted in check.blocked
    assert "without an alias" in deleted.reason and "claim-renamed" in deleted.reason
    assert _change(check, "PersistentVolumeClaim/data/kept") is None  # renamed with Alias(name="kept")
    assert any(after.endswith("PersistentVolumeClaim::kept-renamed") for _, after in check.moved)


def test_a_volume_claim_template_change_replaces_the_statefulset_blocked_unless_acknowledged(steps):
    check = upgrade.compare(*steps, stack="dev", project="probe")
    replaced = _change(check, "StatefulSet/data/db")
    assert replaced is not None and replaced.action == "replace" and "spec.volumeClaimTemplates" in replaced.reason
    assert replaced in check.blocked
    assert "--acknowledge StatefulSet/data/db" in replaced.line()
    acked = upgrade.compare(*steps, stack="dev", project="probe", acknowledged=["StatefulSet/data/db"])
    assert _change(acked, "StatefulSet/data/db").acknowledged
    assert [c.object for c in acked.blocked] == ["PersistentVolumeClaim/data/claim"]
    allowed = upgrade.compare(*steps, stack="dev", project="probe",
                              acknowledged=["StatefulSet/data/db", "PersistentVolumeClaim/data/claim"])
    assert allowed.blocked == []


def test_a_content_hashed_configmap_is_listed_as_replaced_but_never_blocked(steps):
    check = upgrade.compare(*steps, stack="dev", project="probe")
    conf = _change(check, "ConfigMap/data/conf-1111")
    assert conf is not None and conf.action == "replace" and not conf.stateful and conf not in check.blocked
    assert "metadata.name conf-1111 -> conf-2222" in conf.reason
    assert _change(check, "Deployment/data/web") is None  # replicas and image change in place
    assert _change(check, "Secret/data/pw") is None  # its password's inputs did not change: the same value


# --- versions and migrations --------------------------------------------------------------------------------------

def _v3(monkeypatch, migrations):
    from socle import blueprints

    from socle import stackfile

    bp = dataclasses.replace(blueprints.registry()["etablissement"], version="3.0.0", migrations=migrations)
    monkeypatch.setattr(blueprints, "registry", lambda: {"etablissement": bp})
    monkeypatch.setattr(stackfile, "registry", lambda: {"etablissement": bp})
    return bp


def _demo_config() -> dict:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.demo.yaml").read_text())["config"]


def _rename_client(params):
    params["psc"]["client"] = params["psc"].pop("client_id")
    return params


def _unrename_client(params):
    params["psc"]["client_id"] = params["psc"].pop("client") + "-v3"
    return params


def test_the_chain_of_migrations_is_applied_in_order(monkeypatch):
    _v3(monkeypatch, {("1", "2"): _rename_client, ("2.0.0", "3.0.0"): _unrename_client})
    mig = upgrade.migrate(_demo_config(), "demo.yaml", "3")
    assert mig.steps == ("1 -> 2", "2.0.0 -> 3.0.0")
    assert mig.new_config["socle:blueprintVersion"] == "3"
    assert mig.new_config["socle:params"]["psc"]["client_id"] == "chdemo-sandbox-v3"
    assert mig.old_config["socle:params"]["psc"]["client_id"] == "chdemo-sandbox"  # the input is not changed
    assert upgrade.migrate(_demo_config(), "demo.yaml", "3.0.0").new_config == mig.new_config


@pytest.mark.parametrize("to, migrations, message", [
    ("3", {("1", "2"): _rename_client}, "no migration path for etablissement from 1 to 3 (this kit has: 1 -> 2)"),
    ("4", {("1", "3"): _unrename_client}, "--to 4: unknown etablissement version for this kit, which has etablissement 3.0.0"),
    ("3.1.0", {("1", "3"): _unrename_client}, "--to 3.1.0: unknown etablissement version"),
    ("0", {("1", "3"): _unrename_client}, "--to 0: the stack is at etablissement 1; a downgrade is not supported"),
    ("v3", {("1", "3"): _unrename_client}, "--to: 'v3' is not a version"),
])
def test_a_bad_target_version_or_a_missing_migration_is_one_line(monkeypatch, to, migrations, message):
    _v3(monkeypatch, migrations)
    with pytest.raises(upgrade.UpgradeError) as exc:
        upgrade.migrate(_demo_config(), "demo.yaml", to)
    assert len(exc.value.lines) == 1 and message in exc.value.lines[0]


def test_a_bad_version_on_the_command_line_is_one_line_exit_2_nothing_written():
    before = (ROOT / "stacks" / "Pulumi.demo.yaml").read_bytes()
    run = subprocess.run([sys.executable, "-m", "socle.cli", "upgrade", "demo", "--to", "9", "--from-ref", "HEAD"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        "socle upgrade: --to 9: unknown etablissement version for this kit, which has etablissement 1.0.0 (use --to 1 "
        "or --to 1.0.0; another version needs the kit that ships it); nothing was written"]
    assert (ROOT / "stacks" / "Pulumi.demo.yaml").read_bytes() == before


STACK = """# a stack file
config:
  socle:blueprint: etablissement
  socle:blueprintVersion: "1"   # the major version
  socle:params:
    profile: dev
    # the client registered with PSC
    client_id: abc  # trailing note
    old_flag: true
    list:
      - name: one   # first
        port: 1
      - name: two
    keep: {a: 1}
"""


def test_the_stack_file_is_edited_value_by_value_and_keeps_its_comments():
    old = yaml.safe_load(STACK)["config"]
    new = json.loads(json.dumps(old))
    new["socle:blueprintVersion"] = "2"
    p = new["socle:params"]
    p["client"] = p.pop("client_id")  # renamed, value unchanged
    del p["old_flag"]
    p["list"][1]["port"] = 2
    p["list"][0]["port"] = 10
    p["added"] = {"x": [1, 2]}
    text, rewritten = upgrade.edit_stack_text(STACK, old, new)
    assert rewritten == [] and yaml.safe_load(text)["config"] == new
    for comment in ("# a stack file", '"2"   # the major version', "# the client registered with PSC",
                    "client: abc  # trailing note", "- name: one   # first", "keep: {a: 1}"):
        assert comment in text, comment
    assert "old_flag" not in text
    # Values the editor cannot place (inside a flow mapping; the first key of a list item removed): their entries
    # are written whole, said by key path; the comments elsewhere are kept.
    new["socle:params"]["keep"]["b"] = 2
    del new["socle:params"]["list"][0]["name"]
    text, rewritten = upgrade.edit_stack_text(STACK, old, new)
    assert rewritten == ["socle:params.list", "socle:params.keep"]
    assert yaml.safe_load(text)["config"] == new
    assert "# first" not in text and "# the client registered with PSC" in text and "# trailing note" in text


# --- the kit itself: the demo at a commit, the working tree at version 2 -------------------------------------------

V2 = '''

# test_upgrade: version 2 of the blueprint, whose migration suffixes the PSC client id
import dataclasses as _dataclasses


def _v2_client_id(params):
    params["psc"]["client_id"] += "-v2"
    return params


BLUEPRINT = _dataclasses.replace(BLUEPRINT, version="2.0.0", migrations={("1", "2"): _v2_client_id})
'''


def _v2_client_id(params):
    params["psc"]["client_id"] += "-v2"
    return params


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    """A git repository holding this checkout's HEAD (the code the demo was deployed with), its working tree at
    version 2 of the blueprint."""
    repo = tmp_path_factory.mktemp("kit")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "v1"]):
        subprocess.run(git + args, check=True, capture_output=True)
    with (repo / "socle" / "blueprints" / "etablissement" / "__init__.py").open("a") as fh:
        fh.write(V2)
    return repo


@pytest.fixture
def at_v2(kit, monkeypatch):
    from socle import blueprints

    from socle import stackfile

    bp = dataclasses.replace(blueprints.registry()["etablissement"], version="2.0.0",
                             migrations={("1", "2"): _v2_client_id})
    monkeypatch.setattr(blueprints, "registry", lambda: {"etablissement": bp})
    monkeypatch.setattr(stackfile, "registry", lambda: {"etablissement": bp})
    monkeypatch.chdir(kit)
    stack = kit / "stacks" / "Pulumi.demo.yaml"
    saved = stack.read_bytes()
    yield stack
    stack.write_bytes(saved)


def _upgrade(kit: Path, *acknowledge: str) -> tuple[upgrade.Outcome, list[str], list[str]]:
    said, warned = [], []
    outcome = upgrade.run("demo", "2", "HEAD", False, list(acknowledge), False, said.append, warned.append, code_dir=kit)
    return outcome, said, warned


def test_the_demo_is_migrated_its_comments_kept_a_rolled_configmap_listed_not_blocked(kit, at_v2):
    before = at_v2.read_text()
    outcome, said, warned = _upgrade(kit)
    assert outcome.code == 0 and outcome.written, "\n".join(said + warned)
    after = at_v2.read_text()
    config = yaml.safe_load(after)["config"]
    assert config["socle:blueprintVersion"] == "2" and config["socle:params"]["psc"]["client_id"] == "chdemo-sandbox-v2"
    assert [line for line in before.splitlines() if line.strip().startswith("#")] == \
        [line for line in after.splitlines() if line.strip().startswith("#")]
    assert '-  socle:blueprintVersion: "1"' in said and '+  socle:blueprintVersion: "2"' in said
    assert any(line.startswith("REPLACE ConfigMap/") for line in said), said  # the client id is in a hashed ConfigMap
    assert not any("BLOCKED" in line for line in said)


def test_a_stateful_replacement_blocks_the_upgrade_and_nothing_is_written_until_acknowledged(kit, at_v2):
    text = at_v2.read_text().replace("      hostname: mss.chdemo.test\n",
                                     "      hostname: mss.chdemo.test\n      queue_size: 10Gi\n", 1)
    assert "queue_size: 10Gi" in text
    at_v2.write_text(text)
    outcome, said, warned = _upgrade(kit)
    assert outcome.code == upgrade.EXIT_BLOCKED, "\n".join(said + warned)
    assert [c.object for c in outcome.comparison.blocked] == ["StatefulSet/chdemo-mss/postfix"]
    assert any(line.startswith("REPLACE StatefulSet/chdemo-mss/postfix: spec.volumeClaimTemplates") for line in said)
    assert "Nothing was written" in warned[-1] and "--acknowledge StatefulSet/chdemo-mss/postfix" in warned[-1]
    assert at_v2.read_text() == text
    outcome, said, warned = _upgrade(kit, "StatefulSet/chdemo-mss/postfix")
    assert outcome.code == 0 and outcome.written, "\n".join(said + warned)
    assert yaml.safe_load(at_v2.read_text())["config"]["socle:blueprintVersion"] == "2"


def test_the_kits_own_alias_keeps_the_backup_schedules_it_moved():
    """c15a427 moved the Velero Schedules under a new component, with an alias to their former parent: from the
    commit before it, the demo keeps them (the failing fixture: the same code without its aliases deletes them)."""
    import tempfile

    before = "4532ee6"
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{before}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"commit {before} is not in this clone (shallow)")
    with tempfile.TemporaryDirectory() as tmp:
        _, code, _ = upgrade.export_ref(before, upgrade.code_root(), Path(tmp))
        text = (Path(tmp) / "stacks" / "Pulumi.demo.yaml").read_text()
        old = upgrade.record_in_subprocess(code, "demo", text, yaml.safe_load(text)["config"], "socle")
    text = (ROOT / "stacks" / "Pulumi.demo.yaml").read_text()
    new = upgrade.record_in_subprocess(upgrade.code_root(), "demo", text, yaml.safe_load(text)["config"], "socle")
    schedules = {f"Schedule/velero/socle-{k}" for k in ("daily", "monthly")}
    check = upgrade.compare(old, new, stack="demo", project="socle")
    assert not [c for c in check.changes if c.object in schedules]
    assert {"hds-storage-schedule-daily", "hds-storage-schedule-monthly"} <= {a.rsplit("::", 1)[1] for _, a in check.moved}
    assert not check.blocked, [c.line() for c in check.blocked]
    unaliased = upgrade.compare(old, [dict(r, aliases=[]) for r in new], stack="demo", project="socle")
    assert {c.object for c in unaliased.blocked if c.action == "delete"} >= schedules


def test_a_regional_stacks_tenant_files_go_with_it_into_the_renders():
    """A stack's companion folder (stacks/<stack>/tenants/, one file per établissement) is part of both renders and
    of the validation; the failing fixture: without it, the program refuses the stack (no tenant)."""
    stack = ROOT / "stacks" / "Pulumi.region-demo.yaml"
    if not (ROOT / "stacks" / "region-demo" / "tenants").is_dir():
        pytest.skip("no regional example stack")
    text = stack.read_text()
    config = yaml.safe_load(text)["config"]
    extra = upgrade.companions(stack, "region-demo")
    tenants = sorted(p.stem for p in (extra / "tenants").glob("*.yaml"))
    assert len(tenants) == 5
    names = {(r["inputs"].get("metadata") or {}).get("name") for r in upgrade.record_in_subprocess(
        upgrade.code_root(), "region-demo", text, config, "socle", extra=extra)
        if r["type"] == "kubernetes:core/v1:Namespace"}
    assert {"chudemo-fhir", "ccdemo-fhir"} <= names
    assert upgrade.validate_text(text, "region-demo", "stacks/Pulumi.region-demo.yaml", "socle", extra) == []
    with pytest.raises(upgrade.UpgradeError, match="tenant"):
        upgrade.record_in_subprocess(upgrade.code_root(), "region-demo", text, config, "socle")


# --- one source for the kit's version -------------------------------------------------------------------------------

def test_the_kit_version_has_one_source(tmp_path):
    from setuptools.config.pyprojecttoml import read_configuration

    import socle

    (tmp_path / "socle").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "socle" / "__init__.py").write_text('__version__ = "9.8.7"\n')
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools: `[tool.setuptools]` in pyproject.toml is "beta"
        assert read_configuration(tmp_path / "pyproject.toml")["project"]["version"] == "9.8.7"
    import importlib.metadata

    assert importlib.metadata.version("socle-sante") == socle.__version__  # the installed metadata (pip install -e .)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{socle.__version__}]" in changelog
    from socle.blueprints import registry

    for bp in registry().values():
        assert f"{bp.name} {bp.version}" in changelog

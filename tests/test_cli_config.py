"""`socle preview|up|refresh|destroy --config KEY=VALUE [--config-path]`, as `pulumi up --config` (issue 13).

The Pulumi CLI saves each `--config` value, in plain text, into the stack file before the run (it stays). socle does
the same, validating the configuration that results before anything is written: a bad value is one line
`file:key: message`, exit 2, the stack file unchanged. The values socle validates are the ones the engine writes:
checked against the real `pulumi config set-all` (the engine writes them for socle). The write itself, through a
real run on the local control plane, is in tests/cluster/test_backends.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from socle import engine
from tests.conftest import ROOT

DEMO = ROOT / "stacks" / "Pulumi.demo.yaml"
SECRET = "clear-" + "s3cr3t-value"


def socle(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["socle", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture
def proj(tmp_path) -> Path:
    """A project with a copy of the demo stack (the repository's own file is never touched)."""
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(DEMO, tmp_path / "stacks" / "Pulumi.demo.yaml")
    return tmp_path


def _parse(args, path=True):
    sets, bad = engine.parse_config(args, path, "socle")
    assert not bad, bad
    return sets


# --- Pulumi's parsing and setting rules --------------------------------------------------------------------------

def test_keys_are_parsed_as_pulumi_parses_them():
    sets = _parse(["socle:params.gateway.apis[0].host=fhir.x.test", 'socle:params["a.b"].c=1', "region=eu", "x:config:y=2"])
    assert [(s.top, s.path, s.value) for s in sets] == [
        ("socle:params", ("gateway", "apis", 0, "host"), "fhir.x.test"),
        ("socle:params", ("a.b", "c"), "1"),
        ("socle:region", (), "eu"),  # no namespace: the project's
        ("x:y", (), "2"),  # the old `<ns>:config:<name>` form
    ]
    assert sets[0].shown == "config.socle:params.gateway.apis[0].host"
    flat = _parse(["socle:params.gateway.replicas=3", "empty"], path=False)
    assert [(s.top, s.path, s.value) for s in flat] == [("socle:params.gateway.replicas", (), "3"), ("socle:empty", (), "")]
    _, bad = engine.parse_config(["a:b:c:d=1", "socle:params.x[y]=1", "socle:params.=1"], True, "socle")
    assert [p for p, _ in bad] == ["config.a:b:c:d", "config.socle:params.x[y]", "config.socle:params."]
    assert "configuration keys should be of the form `<namespace>:<name>`" in bad[0][1]


def test_values_set_inside_keep_their_siblings_and_are_typed_as_pulumi_types_them():
    config = {"socle:params": {"gateway": {"replicas": 1, "apis": [{"name": "a"}]}, "k": {"secure": "v1:x"}},
              "socle:top": "scalar"}
    new, problems = engine.apply_config(config, _parse([
        "socle:params.gateway.replicas=2", "socle:params.gateway.apis[1].name=b", "socle:params.flag=true",
        "socle:params.zip=007", "socle:params.n=-3", "socle:params.f=1.5", "socle:params.zero=0", "socle:top.x=1",
        "socle:new[1]=v", "socle:plain=5"]))
    assert not problems
    params = new["socle:params"]
    assert params["gateway"] == {"replicas": 2, "apis": [{"name": "a"}, {"name": "b"}]}
    assert params["k"] == {"secure": "v1:x"}  # untouched: an encrypted sibling stays encrypted
    assert (params["flag"], params["zip"], params["n"], params["f"], params["zero"]) == (True, "007", -3, "1.5", 0)
    assert new["socle:top"] == {"x": 1}  # a scalar at the top level becomes a mapping, as in Pulumi
    assert new["socle:new"] == [None, "v"] and new["socle:plain"] == "5"  # at the top level: a string
    assert config["socle:params"]["gateway"]["replicas"] == 1  # the input is not modified
    _, problems = engine.apply_config(config, _parse(["socle:params.gateway.replicas.x=1", "socle:params.gateway.apis[3].name=x"]))
    assert [m for _, m in problems] == [
        "--config: socle:params.gateway.replicas is not a mapping",
        "--config: socle:params.gateway.apis[3]: index out of range (socle:params.gateway.apis has 1 item(s): up to [1] adds one)"]


def _pulumi_bin() -> str | None:
    return shutil.which("pulumi", path=engine.program_path())


@pytest.mark.skipif(_pulumi_bin() is None and os.environ.get("CI") != "true",
                    reason="the Pulumi CLI is not built: python -m socle.cluster.build --group pulumi")
@pytest.mark.parametrize("args,path", [
    (["socle:params.gateway.replicas=2", "socle:params.gateway.apis[0].host=h.test", "socle:params.gateway.apis[1].name=b",
      "socle:params.flag=true", "socle:params.zip=007", "socle:params.n=-3", "socle:params.f=1.5",
      'socle:params["a.b"].c=0', "socle:params.gateway.replicas=4"], True),
    (["socle:top=5", "socle:scalar.x=1", "socle:newlist[0]=a", "kubernetes:context=kind-x"], True),
    (["socle:params.gateway.replicas=3", "plain=1", "socle:params=text"], False),
], ids=["inside", "top-level", "no-path"])
def test_the_configuration_socle_validates_is_the_one_the_engine_writes(tmp_path, args, path):
    """`pulumi config set-all [--path] --plaintext` (what socle runs to save `--config`) on a stack file with an
    encrypted value and comments gives the configuration socle computed and validated beforehand."""
    assert _pulumi_bin(), "the Pulumi CLI must be built in CI (.ci/run builds it)"
    (tmp_path / "Pulumi.yaml").write_text("name: socle\nruntime: python\n")
    (tmp_path / "state").mkdir()
    env = dict(os.environ, PATH=engine.program_path(), PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}",
               PULUMI_CONFIG_PASSPHRASE="test", PULUMI_HOME=str(tmp_path / "home"), **engine.QUIET_ENV)

    def pulumi(*a):
        run = subprocess.run(["pulumi", *a], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run

    pulumi("stack", "init", "dev")
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(stack_file.read_text() + "# kept\nconfig:\n  socle:params:\n    gateway:\n      replicas: 1  # one\n"
                          "      apis:\n        - name: a\n  socle:scalar: s\n")
    pulumi("config", "set", "--stack", "dev", "--secret", "--path", "socle:params.key", "hidden")
    base = yaml.safe_load(stack_file.read_text())
    expected, problems = engine.apply_config(base["config"], _parse(args, path))
    assert not problems
    pulumi("config", "set-all", "--stack", "dev", *(["--path"] if path else []),
           *[x for a in args for x in ("--plaintext", a)])
    written = yaml.safe_load(stack_file.read_text())["config"]

    def opaque(node):  # the engine may re-encrypt a secure value: compare that it stays encrypted, not its bytes
        if isinstance(node, dict):
            return "<secure>" if set(node) == {"secure"} else {k: opaque(v) for k, v in node.items()}
        return [opaque(v) for v in node] if isinstance(node, list) else node

    assert opaque(written) == opaque(expected)
    assert "# kept" in stack_file.read_text()


# --- through the command ------------------------------------------------------------------------------------------

def test_bad_values_are_every_one_reported_as_file_key_message_and_nothing_is_written(proj):
    before = (proj / "stacks" / "Pulumi.demo.yaml").read_bytes()
    run = socle("preview", "demo", "--config-path", "-c", "socle:params.gateway.replicas=many",
                "-c", "socle:params.relay.replicas=0", "-c", "socle:params.gateway.apis[7].name=x",
                "-c", "socle:params.a[x]=1", "-c", "socle:params.nosuch=1", cwd=proj)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1] == "5 problem(s); nothing was written or deployed."
    f = "stacks/Pulumi.demo.yaml:config.socle:params."
    assert f"{f}a[x]: --config socle:params.a[x]: invalid array index 'x'" in lines
    assert any(line.startswith(f"{f}gateway.apis[7].name: --config: socle:params.gateway.apis[7]: index out of range") for line in lines)
    assert f'{f}gateway.replicas: Input should be a valid integer (got "many")' in lines
    assert f"{f}relay.replicas: Input should be greater than or equal to 1" in lines
    assert f"{f}nosuch: unknown key" in lines
    assert "Traceback" not in run.stderr
    assert (proj / "stacks" / "Pulumi.demo.yaml").read_bytes() == before
    assert not [p for p in (proj / "stacks").iterdir() if p.name != "Pulumi.demo.yaml"]  # no copy left either


def test_a_secret_given_in_clear_is_refused_with_the_way_to_encrypt_it_and_never_echoed(proj):
    before = (proj / "stacks" / "Pulumi.demo.yaml").read_bytes()
    for key in ("psc.client_secret_value", "fhir.annuaire_api_key", "fhir.database.password"):
        run = socle("up", "demo", "--yes", "--config-path", "-c", f"socle:params.{key}={SECRET}", cwd=proj)
        assert run.returncode == 2, run.stdout + run.stderr
        assert (f"stacks/Pulumi.demo.yaml:config.socle:params.{key}: takes a secret, and --config writes its value in "
                f"clear into the stack file: encrypt it with `pulumi config set --secret --path socle:params.{key} VALUE "
                "--stack demo` instead") in run.stderr
        assert SECRET not in run.stdout + run.stderr
    assert (proj / "stacks" / "Pulumi.demo.yaml").read_bytes() == before


def test_a_dotted_key_without_config_path_is_a_top_level_key_as_in_pulumi_and_the_flag_is_named(proj):
    run = socle("destroy", "demo", "--yes", "-c", "socle:params.gateway.replicas=2", cwd=proj)
    assert run.returncode == 2
    assert ("stacks/Pulumi.demo.yaml:config.socle:params.gateway.replicas: unknown key (expected one of" in run.stderr
            and "; with --config-path, socle:params.gateway.replicas is a path to a value inside socle:params" in run.stderr)


def test_a_typo_in_a_provider_key_given_by_config_is_named_like_one_in_the_file(proj):
    run = socle("refresh", "demo", "--yes", "-c", "kubernetes:contxt=kind-x", cwd=proj)
    assert run.returncode == 2
    assert "stacks/Pulumi.demo.yaml:config.kubernetes:contxt: the kubernetes provider reads no such key" in run.stderr


def test_a_good_value_is_not_written_when_the_run_cannot_start(proj):
    """Pulumi saves `--config` even when the update then fails; socle saves it only once its checks have passed
    (programs, secrets, cluster): here the passphrase is missing."""
    before = (proj / "stacks" / "Pulumi.demo.yaml").read_bytes()
    env = {k: v for k, v in os.environ.items() if k not in engine.PASSPHRASE_VARIABLES}
    env.update(PULUMI_BACKEND_URL=f"file://{proj / 'state'}", PATH=engine.program_path() + os.pathsep + os.path.dirname(sys.executable))
    run = socle("preview", "demo", "--config-path", "-c", "socle:params.gateway.replicas=2", cwd=proj, env=env)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "PULUMI_CONFIG_PASSPHRASE" in run.stderr or "not found on PATH" in run.stderr
    assert (proj / "stacks" / "Pulumi.demo.yaml").read_bytes() == before


def test_the_commands_offer_config_and_config_path_like_pulumi(proj):
    for command in ("preview", "up", "refresh", "destroy"):
        run = socle(command, "--help", cwd=proj)
        assert run.returncode == 0
        assert "--config" in run.stdout and "-c" in run.stdout and "--config-path" in run.stdout, run.stdout

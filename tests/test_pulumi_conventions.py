"""Pulumi's own conventions, as a Pulumi user relies on them: the state backend they chose, the stack's secrets
provider, other providers' configuration, ESC environments and encrypted values (issue 13). The same commands
against the real engine are in tests/cluster/test_local_cluster.py."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from socle import engine
from socle.stackfile import SECRET_REFUSED, StackError, load
from tests.test_stackfile import DEMO, P, mutated, problems_of, write_stack

ROOT_STACKS = DEMO.parent


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    for v in engine.PASSPHRASE_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    return tmp_path


def _project(root: Path, backend: str | None = None) -> Path:
    doc = {"name": "socle", "runtime": "python"}
    if backend:
        doc["backend"] = {"url": backend}
    (root / "Pulumi.yaml").write_text(yaml.safe_dump(doc))
    return root


def test_the_backend_is_chosen_as_the_pulumi_cli_chooses_it(clean_env, monkeypatch):
    root = _project(clean_env)
    default = engine.backend(root)
    assert default.default and default.url == f"file://{root / '.pulumi-state'}"
    home = clean_env / "pulumi-home"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"current": "s3://team-state?region=eu-west-3", "accounts": {}}))
    login = engine.backend(root)
    assert (login.url, login.origin, login.default) == ("s3://team-state?region=eu-west-3", "pulumi login", False)
    _project(root, "file://./state-here")
    project = engine.backend(root)
    assert (project.url, project.origin) == (f"file://{root / 'state-here'}", "Pulumi.yaml backend.url")
    monkeypatch.setenv("PULUMI_BACKEND_URL", "azblob://states")
    assert engine.backend(root).url == "azblob://states" and engine.backend(root).origin == "PULUMI_BACKEND_URL"


def test_the_kits_project_file_chooses_no_backend():
    assert "backend" not in yaml.safe_load((Path(__file__).resolve().parents[1] / "Pulumi.yaml").read_text())


@pytest.mark.parametrize("provider,env,needed", [
    ("", {}, True),
    ("passphrase", {}, True),
    ("", {"PULUMI_CONFIG_PASSPHRASE": "x"}, False),
    ("", {"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/secrets/p"}, False),
    ("awskms://alias/socle?region=eu-west-3", {}, False),
    ("azurekeyvault://socle.vault.azure.net/keys/state", {}, False),
    ("gcpkms://projects/p/locations/europe-west9/keyRings/r/cryptoKeys/k", {}, False),
    ("hashivault://socle", {}, False),
])
def test_a_passphrase_is_asked_only_of_a_stack_protected_by_one(provider, env, needed):
    be = engine.Backend("file:///tmp/state", "test")
    problem = engine.secrets_problem(engine.secrets_provider({"secretsprovider": provider}, be), env)
    assert (problem is not None and "PULUMI_CONFIG_PASSPHRASE" in problem) is needed, problem


def test_pulumi_cloud_stacks_use_the_services_secrets_and_an_unknown_provider_is_named():
    cloud = engine.Backend("https://api.pulumi.com", "pulumi login")
    assert engine.secrets_provider({}, cloud) == "default" and engine.secrets_problem("default", {}) is None
    assert "unknown secrets provider 'vault://x'" in engine.secrets_problem("vault://x", {})


def test_a_kms_stack_gets_past_the_secrets_check_without_a_passphrase(clean_env):
    doc = yaml.safe_load(DEMO.read_text())
    doc["secretsprovider"] = "awskms://alias/socle?region=eu-west-3"
    path = clean_env / "Pulumi.kms.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    env = dict(os.environ, KUBECONFIG=str(clean_env / "none.kubeconfig"))
    run = subprocess.run(["socle", "preview", str(path)], capture_output=True, text=True, env=env, cwd=clean_env)
    assert run.returncode == 2 and "PULUMI_CONFIG_PASSPHRASE" not in run.stderr and "Traceback" not in run.stderr
    doc.pop("secretsprovider")
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    run = subprocess.run(["socle", "preview", str(path)], capture_output=True, text=True, env=env, cwd=clean_env)
    if "not found on PATH" not in run.stderr:  # the engine's programs are there: the passphrase is asked for
        assert run.returncode == 2 and "set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE" in run.stderr


def test_other_providers_configuration_passes_and_a_typo_in_the_kits_providers_is_named(tmp_path):
    doc = yaml.safe_load(DEMO.read_text())
    doc["config"].update({"scaleway:region": "fr-par", "aws:region": "eu-west-3", "pulumi:tags": {"team": "dsi"},
                          "kubernetes:context": "prod"})
    load(str(write_stack(tmp_path, doc, "foreign")))
    doc["config"].update({"kubernetes:contxt": "prod", "random:seed": "1"})
    found = dict(problems_of(write_stack(tmp_path, doc, "typo")))
    assert "the kubernetes provider reads no such key" in found["config.kubernetes:contxt"]
    assert "context" in found["config.kubernetes:contxt"]
    assert "the random provider reads no configuration" in found["config.random:seed"]
    assert not any(k.startswith(("config.scaleway", "config.aws", "config.pulumi")) for k in found)


def test_an_encrypted_value_is_refused_by_its_key_path_where_it_would_be_written_in_clear(tmp_path):
    def encrypt(p):
        p["psc"]["client_id"] = {"secure": "v1:3Jd0W0w8ZtM=:v1:q2bE0W6bPp0aQ3Ht:9yl1r2aK8uWzXw=="}
    found = dict(problems_of(write_stack(tmp_path, mutated(DEMO, encrypt))))
    assert found == {f"{P}.psc.client_id": SECRET_REFUSED}


def test_esc_environments_are_named_for_the_values_the_stack_file_lacks(tmp_path):
    doc = yaml.safe_load(DEMO.read_text())
    doc["environment"] = ["chdemo/production-secrets"]
    del doc["config"]["socle:params"]
    with pytest.raises(StackError) as exc:
        load(str(write_stack(tmp_path, doc, "esc")))
    [problem] = exc.value.problems
    assert problem.path == "config.socle:params"
    assert "ESC environment(s) chdemo/production-secrets may set it" in problem.message
    # What the engine resolves (`pulumi config --json`) completes the stack file, whose own values win.
    params = yaml.safe_load(DEMO.read_text())["config"]["socle:params"]
    st = load(str(write_stack(tmp_path, doc, "esc")), resolved={"socle:params": params})
    assert st.environments == ("chdemo/production-secrets",) and st.params.organisation.short_name == "chdemo"


def test_an_encrypted_api_key_is_accepted_where_the_kit_takes_a_secret_and_never_rendered(tmp_path):
    from socle.render import render_files, run_program

    def encrypt(p):
        p.setdefault("fhir", {})["annuaire_api_key"] = {"secure": "v1:3Jd0W0w8ZtM=:v1:q2bE0W6bPp0aQ3Ht:9yl1r2aK8uWzXw=="}
    st = load(str(write_stack(tmp_path, mutated(DEMO, encrypt))))
    assert repr(st.params.fhir.annuaire_api_key) == "SecretValue(<hidden>)"
    files = render_files(st, run_program(st))
    [entry] = [s for s in yaml.safe_load(files["secrets-required.yaml"])["secrets"] if s["name"] == "annuaire-sante-api-key"]
    assert entry["keys"] == ["api-key"] and "encrypted parameter fhir.annuaire_api_key" in entry["source"]
    assert not any("v1:3Jd0W0w8ZtM" in text for text in files.values())


def test_a_secret_in_clear_in_the_stack_file_is_refused_without_echoing_it(tmp_path):
    def clear(p):
        p.setdefault("fhir", {})["annuaire_api_key"] = "clear-api-key-value"
    path = write_stack(tmp_path, mutated(DEMO, clear))
    found = dict(problems_of(path))
    assert "must be encrypted in the stack file" in found[f"{P}.fhir.annuaire_api_key"]
    run = subprocess.run(["socle", "validate", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "clear-api-key-value" not in run.stdout + run.stderr


def test_the_engine_gets_the_secret_decrypted_and_the_model_never_prints_it():
    from socle.stackfile import validate_config

    config = yaml.safe_load(DEMO.read_text())["config"]
    config["socle:params"].setdefault("fhir", {})["annuaire_api_key"] = "decrypted-by-the-engine"
    _, params, problems = validate_config(config, "Pulumi.demo.yaml", decrypted=True)
    assert problems == [] and params.fhir.annuaire_api_key.value == "decrypted-by-the-engine"
    assert "decrypted-by-the-engine" not in json.dumps(params.model_dump()) + repr(params)


def test_the_psc_client_secret_and_the_external_database_password_are_secret_parameters_too(tmp_path):
    from socle.render import render_files, run_program

    secure = {"secure": "v1:c2VjcmV0:v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBB"}
    prod = ROOT_STACKS / "Pulumi.chu-exemple-prod.yaml"

    def encrypt(p):
        p["psc"]["client_secret_value"] = dict(secure)
        p["fhir"]["database"]["password"] = dict(secure)
    st = load(str(write_stack(tmp_path, mutated(prod, encrypt), "prodsec")))
    files = render_files(st, run_program(st))
    required = {(s["namespace"], s["name"]): s for s in yaml.safe_load(files["secrets-required.yaml"])["secrets"]}
    assert "encrypted parameter psc.client_secret_value" in required[("chuex-authz", "psc-client")]["source"]
    database = required[("chuex-fhir", st.params.fhir.database.credentials_secret)]
    assert "encrypted parameter fhir.database.password" in database["source"] and database["keys"] == ["password", "username"]
    assert not any("v1:c2VjcmV0" in text for text in files.values())

    def in_cluster_password(p):
        p.setdefault("fhir", {})["database"] = {"password": dict(secure)}
    found = dict(problems_of(write_stack(tmp_path, mutated(DEMO, in_cluster_password))))
    assert "password is generated by the program" in found[f"{P}.fhir.database"]


def test_the_program_checks_the_stack_file_itself_for_secrets_the_engine_hands_it_decrypted():
    from socle.stackfile import secret_problems

    config = yaml.safe_load(DEMO.read_text())["config"]
    assert secret_problems(config, "Pulumi.demo.yaml") == []
    config["socle:params"]["psc"]["client_id"] = {"secure": "v1:AAAA"}
    config["socle:params"].setdefault("fhir", {})["annuaire_api_key"] = "in-clear"
    assert {p.path: p.message.split(":")[0] for p in secret_problems(config, "Pulumi.demo.yaml")} == {
        f"{P}.psc.client_id": SECRET_REFUSED.split(":")[0],
        f"{P}.fhir.annuaire_api_key": "must be encrypted in the stack file"}

"""The `socle` command as a platform engineer uses it."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT


def socle(*args, cwd=ROOT, env=None):
    return subprocess.run(["socle", *args], capture_output=True, text=True, cwd=cwd, env=env)


def project(tmp_path: Path) -> Path:
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    return tmp_path


def test_new_lists_every_parameter_and_validates_once_filled(tmp_path):
    root = project(tmp_path)
    result = socle("new", "etablissement", "ch-nord", cwd=root)
    assert result.returncode == 0, result.stderr
    path = root / "stacks" / "Pulumi.ch-nord.yaml"
    text = path.read_text()
    assert "retention_days: 365  # TRACE-01/MSS-07: days the audit records are kept; at least 183 in production (CSP R.6113-9-2)" in text
    assert "min_version: TLSv1.2" in text
    # Unfilled: every REQUIRED value is reported, nothing else.
    result = socle("validate", "ch-nord", cwd=root)
    assert result.returncode == 2
    required_lines = [line for line in text.splitlines() if "# REQUIRED" in line and "(at least one)" not in line]
    assert result.stderr.count("required value missing") == len(required_lines) == 10
    doc = yaml.safe_load(text)
    params = doc["config"]["socle:params"]
    params["organisation"].update(name="CH du Nord", finess="990000003", short_name="chnord")
    params["gateway"]["apis"][0].update(name="fhir", host="fhir.ch-nord.test", owner_group="dsi", sensitivity="sensitive")
    params["psc"]["client_id"] = "chnord"
    params["relay"].update(hostname="mss.ch-nord.test", authorized_domains=["ch-nord.mssante.test"])
    params["storage"]["generic_csi"]["provisioner"] = "csi.vendor.test"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    result = socle("validate", "ch-nord", cwd=root)
    assert result.returncode == 0, result.stderr


def test_new_refuses_to_overwrite(tmp_path):
    root = project(tmp_path)
    assert socle("new", "etablissement", "ch-sud", cwd=root).returncode == 0
    before = (root / "stacks" / "Pulumi.ch-sud.yaml").read_text()
    (root / "stacks" / "Pulumi.ch-sud.yaml").write_text(before + "# my edit\n")
    result = socle("new", "etablissement", "ch-sud", cwd=root)
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr
    assert (root / "stacks" / "Pulumi.ch-sud.yaml").read_text().endswith("# my edit\n")
    assert socle("new", "hopital", "x", cwd=root).returncode == 2


def test_new_never_writes_through_a_dangling_link_nor_prints_a_traceback(tmp_path):
    root = project(tmp_path)
    target = tmp_path / "elsewhere.yaml"
    (root / "stacks" / "Pulumi.lnk.yaml").symlink_to(target)
    result = socle("new", "etablissement", "lnk", cwd=root)
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr and not target.exists()
    import unittest.mock as mock

    from typer.testing import CliRunner

    from socle.cli import app

    with mock.patch("builtins.open", side_effect=PermissionError(13, "Permission denied")):
        res = CliRunner().invoke(app, ["new", "etablissement", "ro", ], catch_exceptions=False)
    assert res.exit_code == 2 and "cannot create" in res.output and "Traceback" not in res.output


def test_list_shows_blueprints_with_versions_and_stacks():
    result = socle("list")
    assert result.returncode == 0
    assert "etablissement" in result.stdout and "1.0.0" in result.stdout
    assert "demo" in result.stdout and "chu-exemple-prod" in result.stdout


def test_preview_without_pulumi_cli_says_how_to_install_it(tmp_path):
    env = {k: v for k, v in os.environ.items()}
    socle_bin = shutil.which("socle")
    env["PATH"] = str(Path(socle_bin).parent)  # the venv only: no pulumi CLI there
    env["SOCLE_CACHE"] = str(tmp_path / "cache")  # and no build of it by `socle cluster build`
    assert shutil.which("pulumi", path=env["PATH"]) is None
    result = socle("preview", "demo", env=env)
    assert result.returncode == 2
    assert "pulumi, pulumi-language-python" in result.stderr and "not found on PATH" in result.stderr
    assert "socle cluster build" in result.stderr and "Traceback" not in result.stderr


def test_render_help_and_version():
    assert socle("--version").stdout.startswith("socle ")
    assert "--out" in socle("render", "--help").stdout

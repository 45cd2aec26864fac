"""The kit outside a fork: the wheel pip builds puts one package, `socle`, into site-packages (distribution
socle-sante), with every template and data file the render reads; installed, it starts a project of the user's own
in an empty directory, and a program of the user's own builds a blueprint from it."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        message = f"pip could not build the wheel (it fetches setuptools>=68 from the index): {run.stderr[-500:]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return target


def kit_python(installed: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python with the installed kit first and only the dependencies of this venv after it: no site processing, so
    neither this checkout nor its editable install is on the path."""
    deps = sysconfig.get_paths()["purelib"]
    boot = f"import sys; sys.path[:0] = [{str(installed)!r}, {deps!r}]; sys.path = [p for p in sys.path if p != ''];\n"
    return subprocess.run([sys.executable, "-S", "-c", boot + code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_one_package_with_every_file_the_kit_reads(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith("socle_sante-")  # PyPI's `socle` is another project
    assert sorted({n.split("/")[0] for n in names}) == ["socle", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"]
    packaged = {n for n in names if n.startswith("socle/")}
    for source in [*(ROOT / "socle" / "components" / "templates").iterdir(),
                   *(ROOT / "socle" / "blueprints").glob("*/stack.yaml.j2"),
                   *(ROOT / "socle" / "blueprints").glob("*/certification.json"),
                   *(ROOT / "socle" / "fhir").glob("*.js*"), ROOT / "socle" / "fhir" / "ins_interceptor.jar",
                   *(ROOT / "socle" / "audit" / "templates").iterdir(), *(ROOT / "socle" / "audit" / "i18n").glob("*.yaml")]:
        if source.is_file() and "__pycache__" not in source.parts:
            assert source.relative_to(ROOT).as_posix() in packaged, source


def test_installed_socle_new_starts_a_project_in_an_empty_directory(installed, tmp_path):
    project = tmp_path / "ch-ouest-platform"
    project.mkdir()
    code = ("import socle, sys; assert socle.__file__.startswith(sys.path[0]), socle.__file__\n"
            "from socle.cli import app\n"
            "app(['new', 'etablissement', 'ch-ouest'], standalone_mode=False)\n")
    run = kit_python(installed, code, project)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in project.iterdir()) == ["Pulumi.yaml", "__main__.py", "stacks"]
    assert (project / "stacks" / "Pulumi.ch-ouest.yaml").is_file()
    assert "from socle.program import run" in (project / "__main__.py").read_text()
    pulumi_yaml = (project / "Pulumi.yaml").read_text()
    assert "name: ch-ouest-platform" in pulumi_yaml and "stackConfigDir: stacks" in pulumi_yaml
    # the stack is the user's to fill in: validation names what is missing, in the user's project
    run = kit_python(installed, "from socle.cli import app\napp(['validate', 'ch-ouest'])\n", project)
    assert run.returncode == 2 and "stacks/Pulumi.ch-ouest.yaml:config.socle:params.organisation" in run.stdout + run.stderr
    # a second `socle new` keeps the project's files
    (project / "__main__.py").write_text("# mine\n")
    run = kit_python(installed, "from socle.cli import app\napp(['new', 'etablissement', 'ch-nord'], standalone_mode=False)\n",
                     project)
    assert run.returncode == 0 and (project / "__main__.py").read_text() == "# mine\n"


def test_a_program_of_its_own_builds_a_blueprint_from_the_installed_kit(installed, tmp_path):
    """A hospital's own program imports the blueprint and its components from the installed package and renders the
    demo's parameters under the render's mocks."""
    params = json.dumps(__import__("yaml").safe_load((ROOT / "stacks" / "Pulumi.demo.yaml").read_text())["config"]["socle:params"])
    code = ("import json\n"
            "from socle.blueprints.etablissement import BLUEPRINT\n"
            "from socle.components.gateway import Gateway\n"
            "from socle.render import run_under_mocks\n"
            f"params = BLUEPRINT.model.model_validate(json.loads({params!r}))\n"
            "rendered = run_under_mocks(lambda: BLUEPRINT.build(params))\n"
            "print(len(rendered.objects), Gateway.__module__)\n")
    run = kit_python(installed, code, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    count, module = run.stdout.split()
    assert int(count) > 100 and module == "socle.components.gateway"

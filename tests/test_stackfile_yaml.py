"""Stack files are parsed safely: aliases, duplicate keys, key types, tags, size; every problem at once with its
file and key path, in well under a second, never a traceback."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pulumi
import pytest
import yaml
from typer.testing import CliRunner

from socle import cli, program
from socle.render import run_under_mocks
from socle.safeyaml import MAX_BYTES, load_stack_yaml
from socle.stackfile import StackError, load, pulumi_config
from tests.conftest import EXAMPLE_STACKS, ROOT

DEMO = ROOT / "stacks" / "Pulumi.demo.yaml"
P = "config.socle:params"
FILE = "stacks/Pulumi.x.yaml"


def with_params(lines: str, base: Path = DEMO) -> str:
    """The base stack with LINES (indented for socle:params) added at the top of socle:params."""
    text = base.read_text(encoding="utf-8")
    anchor = "  socle:params:\n"
    assert text.count(anchor) == 1
    return text.replace(anchor, anchor + "".join(f"    {line}\n" for line in lines.splitlines()))


def line_of(text: str, fragment: str) -> int:
    (n,) = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    return n


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = [f"lol0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


BOMB = with_params(billion_laughs())


def timed_load(text: str):
    """The loader's own time, in process: under a second whatever the input."""
    start = time.perf_counter()
    try:
        return load_stack_yaml(text, FILE)
    finally:
        assert time.perf_counter() - start < 1.0


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(StackError) as exc:
        timed_load(text)
    assert all(p.file == FILE for p in exc.value.problems)
    assert all("\n" not in str(p) for p in exc.value.problems)
    return [(p.path, p.message) for p in exc.value.problems]


def project(tmp_path: Path, stacks: dict[str, str]) -> Path:
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for name, text in stacks.items():
        (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def socle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Before the safe loader, the bomb took 30 s and 3 GB before dying: the timeout turns that into a failure.
    return subprocess.run(["socle", *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def test_billion_laughs_is_measured_without_being_expanded():
    (found,) = problems(BOMB)
    path, message = found
    assert path.startswith(f"{P}.lol") and "[" in path, found  # the alias occurrence that crosses the bound
    assert message.startswith("aliases expand the document to more than 10000 values"), found
    # Nine levels of one: 9 aliases, nothing to refuse; the same aliases under the bound load like safe_load.
    small = with_params(billion_laughs(levels=3, width=10))
    assert timed_load(small) == yaml.safe_load(small)
    assert len(timed_load(small)["config"]["socle:params"]["lol2"]) == 10


def test_billion_laughs_cli_exit_2_and_list_goes_on(tmp_path):
    root = project(tmp_path, {"bomb": BOMB, "demo": DEMO.read_text(encoding="utf-8")})
    for args in (("validate", "bomb"), ("render", "bomb", "--out", str(root / "out"))):
        result = socle(*args, cwd=root)
        assert result.returncode == 2, (args, result.stderr)
        assert "stacks/Pulumi.bomb.yaml:config.socle:params.lol" in result.stderr and "aliases expand" in result.stderr
        assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert not (root / "out").exists()
    result = socle("list", cwd=root)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    assert "1 problem(s)" in rows["bomb"]
    assert "valid (etablissement, dev)" in rows["demo"]  # listed after the bomb


def test_duplicate_keys_name_the_key_path_and_both_lines(tmp_path):
    text = DEMO.read_text(encoding="utf-8").replace(
        "      short_name: chdemo\n", "      short_name: chdemo\n      short_name: autre\n")
    first, again = line_of(text, "short_name: chdemo"), line_of(text, "short_name: autre")
    assert (f"{P}.organisation.short_name", f"duplicate key 'short_name' at line {again} (first at line {first})") \
        in problems(text)
    # Through stackfile.load, with the file as the CLI shows it.
    path = tmp_path / "Pulumi.dup.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StackError) as exc:
        load(str(path))
    (problem,) = exc.value.problems
    assert problem.file.endswith("Pulumi.dup.yaml") and problem.path == f"{P}.organisation.short_name"


def test_keys_must_be_strings():
    text = with_params("8080: port\nyes: oui\n~: rien\n? [a, b]\n: liste\n'443': quoted is fine")
    found = dict(problems(text))
    assert found.pop(f"{P}.8080") == f"keys must be strings ('8080' at line {line_of(text, '8080: port')} is read as a number; quote it)"
    assert found.pop(f"{P}.yes") == f"keys must be strings ('yes' at line {line_of(text, 'yes: oui')} is read as a boolean; quote it)"
    assert found.pop(f"{P}.~").startswith("keys must be strings ('~' at line")
    assert found.pop(f"{P}.<list>").startswith("keys must be strings (a list at line")
    assert found == {}


@pytest.mark.parametrize("value", [
    "!!binary aGVsbG8=", "!Ref gateway", "!!python/object/apply:os.system [echo pwned]", "!!set {a, b}",
    "!!omap [a: 1]", "!!pairs [a: 1]", "!!python/name:os.system ''",
])
def test_tags_beyond_the_plain_core_ones_are_refused(value):
    found = problems(with_params(f"extra: {value}"))
    assert found == [(f"{P}.extra", (f"tag {value.split()[0]} is not allowed; a stack file holds plain strings, numbers, "
                                     "booleans, null, dates, mappings and lists"))]


def test_plain_core_tags_and_dates_are_accepted_and_bad_scalars_are_problems():
    text = with_params("a: !!str 5\nb: !!int '7'\nc: 2026-01-02\nd: !!float 1\ne: !!null ''\nf: !!bool 'true'")
    assert timed_load(text) == yaml.safe_load(text)
    found = dict(problems(with_params("when: 2026-13-01\nn: !!int abc\nok: !!bool maybe\ns: !!str {a: 1}")))
    assert found == {
        f"{P}.when": "'2026-13-01' is not a date (month must be in 1..12)",  # a traceback with yaml.safe_load
        f"{P}.n": "'abc' is not a number (invalid literal for int() with base 10: 'abc')",
        f"{P}.ok": "'maybe' is not a boolean",
        f"{P}.s": "tag !!str cannot be used on a mapping",
    }


def test_merge_keys_are_refused():
    text = with_params("base: &base {replicas: 2}\ngateway2:\n  <<: *base\n  host: x")
    assert (f"{P}.gateway2.<<", "merge keys (<<) are not supported; write the keys out") in problems(text)


def test_recursive_alias_is_refused():
    assert problems(with_params("loop: &loop [a, *loop]")) == [
        (f"{P}.loop[1]", "alias *loop refers to a node that contains it (recursive alias)")]


def test_every_problem_at_once():
    text = with_params("x: 1\nx: 2\n8080: port\ncert: !!binary aGVsbG8=\nloop: &l [*l]")
    assert [path for path, _ in problems(text)] == [f"{P}.x", f"{P}.8080", f"{P}.cert", f"{P}.loop[0]"]


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text(DEMO.read_text(encoding="utf-8") + ("# " + "x" * 1022 + "\n") * 2048, encoding="utf-8")
    assert path.stat().st_size > 2 * 1024 * 1024
    start = time.perf_counter()
    with pytest.raises(StackError) as exc:
        load(str(path))
    assert time.perf_counter() - start < 1.0
    (problem,) = exc.value.problems
    assert problem.path == "-" and problem.message.startswith(f"file too large ({path.stat().st_size} bytes")
    assert problems("#" * (MAX_BYTES + 1))[0][1].startswith("file too large")


def test_two_documents_are_refused():
    text = DEMO.read_text(encoding="utf-8") + "---\nconfig: {}\n"
    line = len(DEMO.read_text(encoding="utf-8").splitlines()) + 1
    assert problems(text) == [(f"line {line}, column 1", "a stack file holds one YAML document; another one starts here")]


def test_syntax_errors_keep_line_and_column_and_deep_nesting_is_no_traceback():
    ((where, message),) = problems("config:\n  socle:blueprint: [unclosed\n")
    assert where.startswith("line 3, column 1") and message.startswith("not valid YAML: ")
    ((where, message),) = problems("config: " + "[" * 50_000 + "]" * 50_000)
    assert where.startswith("line 1, column ") and message == "nested more than 64 levels deep"
    ((where, message),) = problems("config:\n  a: \x07\n")
    assert (where, message) == ("line 2, column 6", "not valid YAML: special characters are not allowed (character #x0007)")


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_example_stacks_load_as_safe_load_loads_them(name):
    text = (ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text(encoding="utf-8")
    assert timed_load(text) == yaml.safe_load(text)


def test_new_writes_a_stack_file_the_safe_loader_reads(tmp_path):
    root = project(tmp_path, {})
    result = socle("new", "etablissement", "ch-est", cwd=root)
    assert result.returncode == 0, result.stderr
    text = (root / "stacks" / "Pulumi.ch-est.yaml").read_text(encoding="utf-8")
    assert timed_load(text) == yaml.safe_load(text)


def test_stack_with_harmless_aliases_validates_and_renders_when_given_by_path(tmp_path):
    text = DEMO.read_text(encoding="utf-8")
    text = text.replace("      owner_group: dsi-chdemo\n", "      owner_group: &owner dsi-chdemo\n")
    text = text.replace("          owner_group: dsi-interop\n", "          owner_group: *owner\n")
    assert text.count("*owner") == 1
    path = tmp_path / "elsewhere" / "Pulumi.ailleurs.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    assert load(str(path)).params.gateway.apis[0].owner_group == "dsi-chdemo"
    # Rendered by path: the program's own check looks for stacks/Pulumi.ailleurs.yaml, which does not exist.
    out = tmp_path / "out"
    result = socle("render", str(path), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "kustomization.yaml").is_file()


def test_list_reports_an_unreadable_stack_and_goes_on(tmp_path, monkeypatch):
    root = project(tmp_path, {"a-broken": "config: {}\n", "b-fine": "config: {}\n"})
    monkeypatch.chdir(root)
    real_load = cli.load

    def flaky(stack: str):
        if "a-broken" in stack:
            raise RuntimeError("disk on fire [badly]\nsecond line")
        return real_load(stack)

    monkeypatch.setattr(cli, "load", flaky)
    result = CliRunner().invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    assert "unreadable: disk on fire [badly]" in result.output and "second line" not in result.output
    assert "b-fine" in result.output and "problem(s)" in result.output


def test_program_refuses_the_stack_file_the_engine_read(tmp_path, monkeypatch):
    bad = with_params("x: 1\nx: 2\ncert: !!binary aGVsbG8=")
    root = project(tmp_path, {"eng": bad})
    monkeypatch.chdir(root)
    config = pulumi_config(yaml.safe_load(DEMO.read_text(encoding="utf-8"))["config"])
    with pytest.raises(pulumi.RunError) as exc:
        run_under_mocks(program.run, "eng", config)
    lines = str(exc.value).splitlines()
    assert lines == [
        "invalid stack file:",
        f"stacks/Pulumi.eng.yaml:{P}.x: duplicate key 'x' at line {line_of(bad, 'x: 2')} (first at line {line_of(bad, 'x: 1')})",
        (f"stacks/Pulumi.eng.yaml:{P}.cert: tag !!binary is not allowed; a stack file holds plain strings, numbers, "
         "booleans, null, dates, mappings and lists"),
    ]
    # No stack file of that name in stacks/ (a render of a stack given by path): nothing to check.
    program.check_stack_file("stacks/Pulumi.nowhere.yaml")
    (root / "stacks" / "Pulumi.eng.yaml").write_text(DEMO.read_text(encoding="utf-8"), encoding="utf-8")
    program.check_stack_file("stacks/Pulumi.eng.yaml")

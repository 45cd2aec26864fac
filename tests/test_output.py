"""Output-directory safety: `socle render --out`, `socle audit --report-dir`, `socle verify --out` (socle/output.py)."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from socle import output
from socle.output import OutputError, check_target, write_files
from socle.render import MARKER, RenderError, write
from tests.conftest import ROOT, rendered_stack

SOCLE = str(Path(sys.executable).parent / "socle")


def socle(*args, cwd=ROOT):
    return subprocess.run([SOCLE, *args], check=False, capture_output=True, text=True, cwd=cwd)


def demo_files() -> dict[str, str]:
    return rendered_stack("demo")[2]


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under root: files -> bytes, directories -> 'dir', symlinks -> 'link:target'."""
    tree: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                tree[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                tree[rel] = "dir"
            else:
                tree[rel] = path.read_bytes()
    return tree


def leftovers(parent: Path) -> list[str]:
    """Temporary or set-aside directories a run left beside its target."""
    return sorted(p.name for p in parent.iterdir() if ".socle-tmp-" in p.name or ".socle-old-" in p.name)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """One in-process render of the demo stack, copied by the tests that need a previous render."""
    base = tmp_path_factory.mktemp("render") / "demo"
    write(base, demo_files())
    return base


@pytest.fixture
def previous(rendered, tmp_path) -> Path:
    out = tmp_path / "site" / "demo"
    shutil.copytree(rendered, out, symlinks=True)
    return out


# --- marker, determinism ------------------------------------------------------------------------------------

def test_render_is_deterministic_and_the_marker_lists_what_it_wrote(rendered, tmp_path):
    write(tmp_path / "again", demo_files())
    assert snapshot(tmp_path / "again") == snapshot(rendered)
    lines = (rendered / MARKER).read_text().splitlines()
    assert lines[0].startswith("socle render of stack demo")
    listed = lines[lines.index(output.LIST_HEADER) + 1:]
    assert listed == sorted(p for p in demo_files() if p != MARKER)
    assert leftovers(tmp_path) == []


def test_rerender_replaces_an_earlier_render_whole(previous):
    before = snapshot(previous)
    files = dict(demo_files())
    gone = next(p for p in files if p.startswith("_cluster/"))
    del files[gone]
    files["kustomization.yaml"] += "# changed\n"
    result = write(previous, files)
    after = snapshot(previous)
    assert gone in before and gone not in after
    assert after["kustomization.yaml"].endswith(b"# changed\n")
    assert result.replaced and result.removed == []
    assert leftovers(previous.parent) == []


# --- foreign entries ----------------------------------------------------------------------------------------

def test_foreign_entries_are_refused_by_name_and_kept(previous):
    (previous / ".git").mkdir()
    (previous / ".git" / "config").write_text("[core]\n")
    (previous / "notes.txt").write_text("keep me")
    (previous / "chdemo-fhir" / "mine.yaml").write_text("mine")
    before = snapshot(previous)
    res = socle("render", "demo", "--out", str(previous))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("render failed: ") and "Traceback" not in res.stderr
    for name in (".git/", "notes.txt", "chdemo-fhir/mine.yaml", "--force"):
        assert name in res.stderr
    assert snapshot(previous) == before
    with pytest.raises(RenderError, match=r"holds 3 entries that no earlier render wrote: \.git/, chdemo-fhir/mine\.yaml, notes\.txt"):
        write(previous, demo_files())  # the check under the lock, not only the command's early one
    assert snapshot(previous) == before and leftovers(previous.parent) == []


def test_many_foreign_entries_are_summarised(previous):
    for i in range(13):
        (previous / f"extra-{i:02}.txt").write_text("x")
    with pytest.raises(RenderError) as exc:
        write(previous, demo_files())
    assert "extra-00.txt, extra-01.txt" in str(exc.value) and "extra-09.txt and 3 more" in str(exc.value)
    assert "extra-10.txt" not in str(exc.value)


def test_force_removes_foreign_entries_and_lists_them(previous, rendered):
    (previous / ".git").mkdir()
    (previous / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (previous / "notes.txt").write_text("x")
    res = socle("render", "demo", "--out", str(previous), "--force")
    assert res.returncode == 0, res.stderr
    assert "objects written to" in res.stdout
    assert f"removed {previous}/.git/" in res.stdout and f"removed {previous}/notes.txt" in res.stdout
    assert snapshot(previous) == snapshot(rendered)


def test_a_directory_holding_no_earlier_render_is_refused_even_with_force(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    res = socle("render", "demo", "--out", str(mine), "--force")
    assert res.returncode == 2
    assert "holds no earlier socle render" in res.stderr and "--force does not apply" in res.stderr
    assert snapshot(mine) == {"notes.txt": b"keep me"}
    with pytest.raises(RenderError, match="holds no earlier socle render"):
        write(mine, demo_files(), force=True)
    assert snapshot(mine) == {"notes.txt": b"keep me"}


def test_a_render_made_before_markers_listed_files_is_replaced_without_force(previous):
    (previous / MARKER).write_text("socle render of stack demo (etablissement 1.0.0)\n")  # the old marker
    write(previous, demo_files())
    assert output.LIST_HEADER in (previous / MARKER).read_text()
    (previous / MARKER).write_text("socle render of stack demo (etablissement 1.0.0)\n")
    (previous / "stale.yaml").write_text("old")
    with pytest.raises(RenderError, match="stale.yaml"):
        write(previous, demo_files())
    assert (previous / "stale.yaml").read_text() == "old"


def test_a_user_resource_listed_in_an_old_kustomization_is_not_taken_for_the_kits(previous):
    """Adding one's own patch to kustomization.yaml is the kustomize way: an old marker (no file list) does not make
    that file the kit's to delete."""
    import yaml

    (previous / MARKER).write_text("socle render of stack demo (etablissement 1.0.0)\n")
    kustomization = yaml.safe_load((previous / "kustomization.yaml").read_text())
    kustomization["resources"].append("my-own-patch.yaml")
    (previous / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    (previous / "my-own-patch.yaml").write_text("mine")
    with pytest.raises(RenderError, match="my-own-patch.yaml"):
        write(previous, demo_files())
    assert (previous / "my-own-patch.yaml").read_text() == "mine"


def test_a_dot_dot_after_a_name_is_refused_before_anything_is_touched(tmp_path):
    """`precious/missing/..` is `precious` for path arithmetic: it must never replace (and empty) `precious`."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a.txt").write_text("keep")
    for out in (precious / "missing" / "..", precious / "a.txt" / ".."):
        with pytest.raises(RenderError, match="ambiguous"):
            write(out, demo_files())
    res = socle("render", "demo", "--out", str(precious / "missing" / ".."))
    assert res.returncode == 2 and "ambiguous" in res.stderr and "Traceback" not in res.stderr
    res = socle("audit", "--render", "demo", "--report-dir", str(precious / "new" / ".."))
    assert res.returncode == 2 and "ambiguous" in res.stderr
    assert sorted(p.name for p in precious.iterdir()) == ["a.txt"] and (precious / "a.txt").read_text() == "keep"


# --- refused targets ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["symlink", "symlinked-parent", "dot", "file"])
def test_unsafe_targets_are_refused_in_one_sentence(previous, tmp_path, case):
    site = previous.parent
    (site / "link").symlink_to(previous)
    (site / "linked-parent").symlink_to(site)
    (site / "plain-file").write_text("data")
    out, cwd, message = {
        "symlink": ("link", site, "link is a symbolic link; refusing to write through it"),
        "symlinked-parent": ("linked-parent/new", site, "linked-parent is a symbolic link"),
        "dot": (".", previous, "refusing to write to .: it is the current directory"),
        "file": ("plain-file", site, "plain-file exists and is not a directory"),
    }[case]
    before = snapshot(site)
    res = socle("render", "demo", "--out", out, cwd=cwd)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith(f"render failed: {message}"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert snapshot(site) == before and leftovers(site) == [] and not (site.parent / ".site.socle-lock").exists()


def test_protected_directories_are_refused(tmp_path, monkeypatch):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "a" / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(cwd)
    cases = {".": "the current directory", str(cwd): "the current directory", "..": "an ancestor",
             str(tmp_path): "an ancestor", "/": "the filesystem root", str(Path.home()): "your home directory",
             str(ROOT): "the project root", "../link/x": "symbolic link"}
    for target, reason in cases.items():
        with pytest.raises(OutputError, match=reason):
            check_target(Path(target))
    check_target(Path("out/demo"))  # a fresh subdirectory is fine
    with pytest.raises(OutputError, match="current directory"):
        write_files(Path("."), {"report.json": "{}"})
    assert list(cwd.iterdir()) == []


# --- read-only and full disks --------------------------------------------------------------------------------

def _fail_os(monkeypatch, name: str, err: int, when) -> None:
    real = getattr(os, name)

    def failing(*args, **kwargs):
        if when(*args):
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, failing)


@pytest.mark.parametrize("case", ["read-only parent", "read-only mid-write", "disk full", "quota"])
def test_read_only_or_full_disk_leaves_the_previous_render_whole(previous, monkeypatch, case):
    before = snapshot(previous)
    site = str(previous.parent)
    fsyncs = []
    if case == "read-only parent":  # the lock file and the temporary directory cannot be created
        _fail_os(monkeypatch, "open", errno.EROFS, lambda path, *a: str(path).startswith(site))
        _fail_os(monkeypatch, "mkdir", errno.EROFS, lambda path, *a: str(path).startswith(site))
        expected = "is on a read-only file system"
    elif case == "read-only mid-write":
        _fail_os(monkeypatch, "open", errno.EROFS, lambda path, *a: ".socle-tmp-" in str(path) and "/_cluster/" in str(path))
        expected = "is on a read-only file system"
    else:
        _fail_os(monkeypatch, "fsync", errno.ENOSPC if case == "disk full" else errno.EDQUOT,
                 lambda fd: fsyncs.append(fd) or len(fsyncs) > 20)
        expected = "no space left on the device"
    with pytest.raises(RenderError) as exc:
        write(previous, demo_files())
    message = str(exc.value)
    assert expected in message and "nothing was replaced" in message and "\n" not in message
    monkeypatch.undo()
    assert snapshot(previous) == before
    assert leftovers(previous.parent) == []


def test_reports_on_a_full_disk_replace_nothing(tmp_path, monkeypatch):
    out = tmp_path / "reports"
    write_files(out, {"report.json": "old json\n", "report.md": "old md\n"})
    _fail_os(monkeypatch, "fsync", errno.ENOSPC, lambda fd: True)
    with pytest.raises(OutputError, match="no space left on the device"):
        write_files(out, {"report.json": "new json\n", "report.md": "new md\n"})
    monkeypatch.undo()
    assert snapshot(out) == {"report.json": b"old json\n", "report.md": b"old md\n"}


# --- killed runs, fallback, concurrency ----------------------------------------------------------------------

KILLABLE = r"""
import json, os, sys, time
from pathlib import Path
import socle.output as output
from socle.render import write

out, files_json, started, delay, phase = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
real = output._write_file

def slow_write(path, content):  # the kill lands while the new tree is being written
    if not started.exists():
        started.write_text("writing")
    real(path, content)
    time.sleep(delay)

def slow_rmtree(path, ignore_errors=False):  # the kill lands while the previous tree is being deleted
    started.write_text("removing")
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
            time.sleep(delay)
        os.rmdir(dirpath)

if phase == "write":
    output._write_file = slow_write
else:
    output.shutil.rmtree = slow_rmtree
write(out, json.loads(files_json.read_text()))
"""


def _start_killable(tmp_path: Path, out: Path, files: dict[str, str], delay: float,
                    phase: str = "write") -> tuple[subprocess.Popen, Path]:
    script, data, started = tmp_path / "killable.py", tmp_path / f"files-{time.monotonic_ns()}.json", tmp_path / "started"
    script.write_text(KILLABLE)
    data.write_text(json.dumps(files))
    started.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(data), str(started), str(delay), phase],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.01)
    return proc, started


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def test_a_render_killed_mid_write_leaves_the_previous_render_whole(previous, tmp_path):
    before = snapshot(previous)
    files = {**demo_files(), "kustomization.yaml": "# new\n"}
    proc, _ = _start_killable(tmp_path, previous, files, delay=30)
    time.sleep(0.3)
    tmps = [p for p in previous.parent.iterdir() if ".socle-tmp-" in p.name]
    assert len(tmps) == 1 and any(tmps[0].rglob("*.yaml")), "the kill must land while the new tree is being written"
    _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(previous) == before
    # The next run removes what the killed one left and is not blocked by its lock.
    write(previous, files)
    assert (previous / "kustomization.yaml").read_text() == "# new\n"
    assert leftovers(previous.parent) == []


def test_a_render_killed_while_the_previous_tree_is_deleted_leaves_the_new_render_whole(previous, tmp_path):
    files = {**demo_files(), "kustomization.yaml": "# new\n"}
    write(tmp_path / "expected", files)
    proc, _ = _start_killable(tmp_path, previous, files, delay=30, phase="remove")
    time.sleep(0.3)
    _kill(proc)
    assert snapshot(previous) == snapshot(tmp_path / "expected")
    assert len(leftovers(previous.parent)) == 1, "the half-deleted previous tree is left beside the target"
    write(previous, files)
    assert leftovers(previous.parent) == []


def test_a_render_killed_at_random_times_leaves_one_whole_render(previous, tmp_path):
    a = demo_files()
    b = {k: v for k, v in a.items() if not k.startswith("chdemo-mss/")}
    b["kustomization.yaml"] = "# b\n"
    b["extra/only-in-b.yaml"] = "b: true\n"
    write(previous, b)
    states = {"a": None, "b": snapshot(previous)}
    write(tmp_path / "ref-a", a)
    states["a"] = snapshot(tmp_path / "ref-a")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    current = "b"
    for i in range(5):
        target = "a" if current == "b" else "b"
        proc, _ = _start_killable(tmp_path, previous, a if target == "a" else b, delay=0.004)
        time.sleep(rng.uniform(0, 0.6))
        _kill(proc)
        now = snapshot(previous)
        assert now in (states["a"], states["b"]), f"iteration {i} (seed {seed}): the target is not one whole render"
        current = "a" if now == states["a"] else "b"
    write(previous, b)
    assert snapshot(previous) == states["b"] and leftovers(previous.parent) == []


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EINVAL], ids=["ENOSYS", "EINVAL"])
def test_without_renameat2_the_fallback_swap_replaces_the_render(previous, monkeypatch, err):
    calls = []

    def no_exchange(a, b):
        calls.append((a, b))
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(output, "_exchange", no_exchange)
    files = {**demo_files(), "kustomization.yaml": "# fallback\n"}
    write(previous, files)
    assert calls, "the exchange must have been tried first"
    assert (previous / "kustomization.yaml").read_text() == "# fallback\n"
    assert leftovers(previous.parent) == []


def test_a_previous_render_left_aside_by_a_killed_fallback_is_put_back(previous, tmp_path):
    (previous / "notes.txt").write_text("mine")
    before = snapshot(previous)
    site = previous.parent
    previous.rename(site / ".demo.socle-old-1234abcd")  # killed between the fallback's two renames
    shutil.copytree(tmp_path / "site" / ".demo.socle-old-1234abcd", site / ".demo.socle-tmp-abcd1234")
    with pytest.raises(RenderError, match="notes.txt"):  # the restored render still holds the user's file
        write(previous, demo_files())
    assert snapshot(previous) == before and leftovers(site) == []


def test_a_held_lock_makes_the_next_run_wait_then_give_up_in_one_sentence(previous):
    before = snapshot(previous)
    fd = os.open(previous.parent / ".demo.socle-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(OutputError, match="another socle run is still writing"):
            output.write_tree(previous, {"a.yaml": "a\n"}, marker=MARKER, marker_text="x\n", lock_timeout=0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        os.close(fd)
    assert snapshot(previous) == before
    output.write_tree(previous, {"a.yaml": "a\n"}, marker=MARKER, marker_text="x\n", force=True, lock_timeout=5)
    assert sorted(snapshot(previous)) == [MARKER, "a.yaml"]


SLOW_SOCLE = r"""
import sys, time
import socle.output as output
from socle.cli import main

real = output._write_file

def slow(path, content):  # long enough for the three runs to reach the writing phase together
    real(path, content)
    time.sleep(0.01)

output._write_file = slow
sys.argv = ["socle", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("slowed", [False, True], ids=["socle", "slowed-writer"])
def test_three_concurrent_renders_leave_exactly_one_whole_render(rendered, tmp_path, slowed):
    out = tmp_path / "site" / "demo"
    (tmp_path / "slow_socle.py").write_text(SLOW_SOCLE)
    command = [sys.executable, str(tmp_path / "slow_socle.py")] if slowed else [SOCLE]
    procs = [subprocess.Popen([*command, "render", "demo", "--out", str(out)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for stdout, stderr, rc in results:
        assert rc == 0, stderr
        assert "objects written to" in stdout
    assert snapshot(out) == snapshot(rendered)
    assert sorted(p.name for p in out.parent.iterdir()) == [".demo.socle-lock", "demo"]


# --- reports and verify ---------------------------------------------------------------------------------------

def _demo_audit():
    import datetime as dt

    from socle.audit import runner
    from socle.audit.evidence import Evidence

    stack, rendered, _ = rendered_stack("demo")
    ev = Evidence(source="render:demo", objects=rendered.objects, target="stack demo", files={})
    return runner.run(ev, runner.make_context(ev, dt.date(2026, 11, 27), stack_profile="dev"), stack.audit), ev


def test_report_files_are_replaced_atomically_and_other_files_kept(tmp_path):
    from socle.audit import reports

    out = tmp_path / "audit"
    out.mkdir()
    (out / "notes.txt").write_text("the auditor's notes")
    (out / "report.html").write_text("old report")
    os.chmod(out / "report.html", 0o640)
    os.link(out / "report.html", tmp_path / "old-report.html")  # the old inode, to see it was not rewritten in place
    paths = reports.write_reports(*_demo_audit(), out)
    assert [p.name for p in paths] == list(reports.REPORT_FILES)
    assert (out / "notes.txt").read_text() == "the auditor's notes"
    assert (tmp_path / "old-report.html").read_text() == "old report"
    assert not os.path.samefile(out / "report.html", tmp_path / "old-report.html")
    assert (out / "report.html").read_text().startswith("<!")
    assert (out / "report.html").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in out.iterdir()) == sorted([*reports.REPORT_FILES, "notes.txt"])


def test_report_dir_or_report_file_that_is_a_symlink_is_refused(tmp_path):
    from socle.audit import reports

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    res = socle("audit", "--render", "demo", "--report-dir", str(tmp_path / "link"))
    assert res.returncode == 2 and res.stderr.startswith("socle audit: ") and "symbolic link" in res.stderr
    assert "Traceback" not in res.stderr and list(real.iterdir()) == []
    out = tmp_path / "reports"
    out.mkdir()
    (tmp_path / "elsewhere.json").write_text("not a report")
    (out / "report.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(OutputError, match="report.json is a symbolic link"):
        reports.write_reports(*_demo_audit(), out)
    assert (tmp_path / "elsewhere.json").read_text() == "not a report" and sorted(os.listdir(out)) == ["report.json"]


def test_verify_out_that_is_a_symlink_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    res = socle("verify", "demo", "--no-scan", "--out", str(tmp_path / "link"))
    assert res.returncode == 2
    assert res.stderr.startswith("socle verify: ") and "symbolic link" in res.stderr
    assert list((tmp_path / "real").iterdir()) == []

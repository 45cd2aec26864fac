"""The audit log's keyed seal (TRACE-04): the real rendered seal.sh under `sh`, replayed one run a day on dated
files, and `socle audit-log verify` on what it writes — intact with the key, and every tampering an attacker who
can write the volume (but not read the key) can do: edit a file, rebuild the chain, remove the newest entries."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socle.components.auditlog import AuditLog, AuditLogArgs, seal_script
from socle.audit.controls import by_id
from socle.auditlog import check_chain, link_of
from socle.cli import app
from socle.render import referenced_secrets, run_under_mocks
from tests.audit_fixtures import Fixture, build, container, find, pod_spec
from tests.test_audit import evidence

DAYS = [dt.date(2026, 11, 23) + dt.timedelta(days=n) for n in range(4)]  # 23..26, sealed on 24..27
AS_OF = dt.date(2026, 11, 27)
KEY = b"k3yOfTheSealSecretGeneratedByRandomPassword0123456789abcdefABCD"  # 64 alphanumerics, like the demo's


def _sh() -> str:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    return sh


class Volume:
    """The audit volume as the seal container sees it: the data directory, the key file, the seal's state."""

    def __init__(self, root: Path, key: bytes = KEY, name: str = "data"):
        self.root = root
        self.data = root / name
        self.data.mkdir(parents=True)
        self.key_file = root / f"{name}-key"
        self.key_file.write_bytes(key)
        self.state = root / f"{name}-state"
        self.script = root / f"{name}-seal.sh"
        self.script.write_text(seal_script("t", 365, str(self.data), key_file=str(self.key_file), state_dir=str(self.state)))

    def write_days(self, days=DAYS) -> None:
        for day in days:
            (self.data / f"audit-{day}.jsonl").write_text(f'{{"day":"{day}","msg":"access by dr-a"}}\n')

    def run(self, when: dt.datetime, script: Path | None = None) -> subprocess.CompletedProcess:
        stamp = int(when.replace(tzinfo=dt.timezone.utc).timestamp())
        return subprocess.run([_sh(), str(script or self.script), str(self.data), str(stamp)], capture_output=True, text=True, check=True)

    def replay(self, days=DAYS) -> None:
        """One seal run each day at 01:00 UTC, the day after each file's day."""
        for day in days:
            self.run(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(1)))

    @property
    def chain(self) -> list[str]:
        return (self.data / "chain.sha256").read_text().splitlines()

    def check(self, key: bytes | None = KEY, as_of: dt.date = AS_OF, **kw):
        return check_chain(self.data, as_of, 365, key, **kw)


def _verify(vol: Volume, *extra: str, key: bool = True, as_of: str = "2026-11-27"):
    args = ["audit-log", "verify", str(vol.data), "--as-of", as_of, *extra]
    if key:
        args += ["--key-file", str(vol.key_file)]
    return CliRunner().invoke(app, args)


@pytest.fixture
def sealed(tmp_path) -> Volume:
    vol = Volume(tmp_path)
    vol.write_days()
    vol.replay()
    return vol


def test_the_seal_chains_files_and_heartbeats_with_an_hmac_of_the_key(sealed):
    kinds = [line.split("  ")[1] for line in sealed.chain]
    assert kinds[0] == "start" and kinds.count("heartbeat") == 4
    assert sum(len(k) == 64 for k in kinds) == 4
    # Each link is HMAC-SHA256(key, "PREV FIELDS\n"), recomputed here with Python's hmac.
    prev = "0" * 64
    for line in sealed.chain:
        link, *fields = line.split("  ")
        assert link == link_of(KEY, prev, fields)
        assert link != hashlib.sha256(f"{prev} {' '.join(fields)}\n".encode()).hexdigest()
        prev = link
    assert oct(os.stat(sealed.data / f"audit-{DAYS[0]}.jsonl").st_mode & 0o777) == "0o440"
    report = sealed.check()
    assert report.intact and report.sealed == 4 and report.runs == 4, report.problems
    res = _verify(sealed)
    assert res.exit_code == 0, res.output
    assert "seal chain intact, every link verified with the key (4 sealed files, 4 seal runs" in res.output
    assert "What the seal proves" in res.output and "does not prove" in res.output


def test_a_run_without_new_files_still_appends_a_heartbeat(sealed):
    before = len(sealed.chain)
    sealed.run(dt.datetime(2026, 11, 27, 2))
    assert len(sealed.chain) == before + 1 and sealed.chain[-1].split("  ")[1:] == ["heartbeat", "2026-11-27T02:00:00Z", "4"]
    assert sealed.check().intact


def test_without_the_key_the_chain_is_never_reported_intact(sealed):
    report = sealed.check(key=None)
    assert not report.intact and not report.problems
    res = _verify(sealed, key=False)
    assert res.exit_code == 1
    assert "hashes consistent; links NOT verified (no key)" in res.output and "intact," not in res.output


def test_an_edited_file_is_detected(sealed):
    target = sealed.data / f"audit-{DAYS[1]}.jsonl"
    target.chmod(0o640)
    target.write_text('{"msg":"nothing happened"}\n')
    res = _verify(sealed)
    assert res.exit_code == 1 and res.output.startswith(f"BROKEN audit-{DAYS[1]}.jsonl: content changed")


def test_a_chain_rebuilt_without_the_key_is_detected(sealed, tmp_path):
    """The writer's attack: edit a file, delete the chain and re-seal everything with the kit's own script —
    and a key of its own, since it cannot read the Secret."""
    target = sealed.data / f"audit-{DAYS[1]}.jsonl"
    target.chmod(0o640)
    target.write_text('{"msg":"nothing happened"}\n')
    (sealed.data / "chain.sha256").unlink()
    forger = Volume(tmp_path / "forger", key=os.urandom(32))
    sealed.run(dt.datetime(2026, 11, 27, 3), script=forger.script)
    assert sealed.check(key=None).problems == [
        f"audit-{day}.jsonl: sealed on 2026-11-27, {(AS_OF - day).days - 1} days after its day closed "
        "(the chain was rebuilt, or the seal did not run)" for day in DAYS[:2]]
    res = _verify(sealed)
    assert res.exit_code == 1
    assert res.output.startswith("BROKEN start 2026-11-27T03:00:00Z: chain link broken at chain.sha256 line 1")
    # The plain SHA-256 chain of the former seal does not verify either.
    prev, lines = "0" * 64, []
    for day in DAYS:
        name = f"audit-{day}.jsonl"
        digest = hashlib.sha256((sealed.data / name).read_bytes()).hexdigest()
        prev = hashlib.sha256(f"{prev} {digest} {name}\n".encode()).hexdigest()
        lines.append(f"{prev}  {digest}  {name}\n")
    (sealed.data / "chain.sha256").write_text("".join(lines))
    assert "chain link broken at chain.sha256 line 1" in sealed.check().problems[0]


def test_the_chain_deleted_and_resealed_by_the_seal_itself_is_detected(sealed):
    """Deleting the chain makes the seal (which holds the key) start a new one: its memory of the last link
    raises an alarm, and every file sealed again is late."""
    (sealed.data / "chain.sha256").unlink()
    sealed.run(dt.datetime(2026, 11, 27, 2))
    problems = sealed.check().problems
    assert problems[0].startswith("alarm at chain.sha256 line 1 (2026-11-27T02:00:00Z)")
    assert any(p.startswith(f"audit-{DAYS[0]}.jsonl: sealed on 2026-11-27, 3 days after") for p in problems)


def test_the_newest_file_and_its_chain_lines_deleted_are_detected(sealed):
    newest = sealed.data / f"audit-{DAYS[-1]}.jsonl"
    newest.chmod(0o640)
    newest.unlink()
    lines = sealed.chain
    cut = next(i for i, line in enumerate(lines) if line.endswith(newest.name))
    (sealed.data / "chain.sha256").write_text("".join(f"{line}\n" for line in lines[:cut]))
    # Every remaining link verifies: the gap up to the day of the check is what shows the truncation.
    res = _verify(sealed, as_of="2026-11-28")
    assert res.exit_code == 1
    assert "BROKEN no seal run since 2026-11-26T01:00:00Z (2 days before 2026-11-28, tolerance 1)" in res.output
    # With a tolerance of 0, the same day already.
    assert sealed.check(max_gap_days=0).problems[0].startswith("no seal run since 2026-11-26T01:00:00Z")
    # And the seal's next run, remembering its last link, records an alarm the writer cannot forge.
    sealed.run(dt.datetime(2026, 11, 27, 2))
    assert any(p.startswith("alarm at chain.sha256") for p in sealed.check().problems)


def test_a_seal_that_stopped_is_reported_and_a_sealed_file_removed_within_retention(sealed):
    assert sealed.check(as_of=dt.date(2026, 11, 28)).intact
    assert sealed.check(as_of=dt.date(2026, 11, 29)).problems == [
        "no seal run since 2026-11-27T01:00:00Z (2 days before 2026-11-29, tolerance 1): the newest entries may have "
        "been removed, or the seal stopped"]
    target = sealed.data / f"audit-{DAYS[0]}.jsonl"
    target.chmod(0o640)
    target.unlink()
    assert sealed.check().problems == [f"audit-{DAYS[0]}.jsonl: sealed file removed within the retention period (365 days)"]
    assert check_chain(sealed.data, AS_OF, 2, KEY).intact  # older than a 2-day retention: may be gone


def test_a_chain_of_the_former_unkeyed_seal_is_kept_aside_and_its_files_sealed_again(tmp_path):
    """The upgrade: the old plain SHA-256 chain is moved aside; the files it held are sealed again by the first run,
    late — reported, unless the auditor gives the day the keyed seal was deployed (--started)."""
    vol = Volume(tmp_path)
    vol.write_days()
    old = "".join(f"{'0' * 64}  {hashlib.sha256(b'x').hexdigest()}  audit-{day}.jsonl\n" for day in DAYS[:2])
    (vol.data / "chain.sha256").write_text(old)
    vol.run(dt.datetime(2026, 11, 27, 1))
    assert (vol.data / "chain.sha256.unkeyed-2026-11-27T01:00:00Z").read_text() == old
    assert vol.chain[0].split("  ")[1] == "start"
    assert [p.split(":")[0] for p in vol.check().problems] == [f"audit-{day}.jsonl" for day in DAYS[:2]]
    res = _verify(vol, "--started", "2026-11-27")
    assert res.exit_code == 0, res.output
    assert f"NOTE audit-{DAYS[0]}.jsonl: sealed by the seal's first run on 2026-11-27, 3 days after its day closed" in res.output
    # Only the first run: a later re-seal is still late.
    assert not vol.check(started=dt.date(2026, 11, 26)).intact


def test_the_seal_refuses_a_missing_or_short_key(tmp_path):
    vol = Volume(tmp_path, key=b"short")
    vol.write_days()
    with pytest.raises(subprocess.CalledProcessError) as exc:
        vol.run(dt.datetime(2026, 11, 27, 1))
    assert "shorter than 32 bytes" in exc.value.stderr and not (vol.data / "chain.sha256").exists()
    vol.key_file.unlink()
    with pytest.raises(subprocess.CalledProcessError) as exc:
        vol.run(dt.datetime(2026, 11, 27, 1))
    assert "no readable key" in exc.value.stderr


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_the_seal_runs_on_busybox_applets_alone(tmp_path):
    """The tools image is alpine: busybox, no openssl. Run the script with a PATH of busybox applets only."""
    applets = tmp_path / "bin"
    applets.mkdir()
    busybox = shutil.which("busybox")
    for name in subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split():
        (applets / name).symlink_to(busybox)
    vol = Volume(tmp_path, key=os.urandom(48))  # any byte, NUL included
    vol.write_days()
    for day in DAYS:
        stamp = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(1), dt.timezone.utc).timestamp())
        subprocess.run([str(applets / "sh"), str(vol.script), str(vol.data), str(stamp)], env={"PATH": str(applets)},
                       check=True, capture_output=True)
    assert vol.check(key=vol.key_file.read_bytes()).intact


# --- the component and the audit control -------------------------------------------------------------------

def _args(**kw) -> AuditLogArgs:
    return AuditLogArgs(kit_version="t", namespace="t-audit", image="docker.io/rsyslog/rsyslog:2025-06",
                        tools_image="docker.io/library/alpine:3.21.3", retention_days=365, storage_class="socle-health-data",
                        server_secret="s", region_label="topology.kubernetes.io/region", regions=["fr-par"], **kw)


def test_the_key_secret_is_mounted_in_the_seal_container_only():
    rendered = run_under_mocks(lambda: AuditLog("a", _args(generate_seal_key=True)))
    sts = next(o for o in rendered.objects if o["kind"] == "StatefulSet")
    mounts = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in sts["spec"]["template"]["spec"]["containers"]}
    assert "seal-key" in mounts["seal"] and "seal-key" not in mounts["rsyslog"]
    assert "seal-state" in mounts["seal"] and "seal-state" not in mounts["rsyslog"]
    # the seal's memory of its last link is a claim of the StatefulSet: it survives a pod restart (truncation stays
    # detected after one), unlike an emptyDir
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data", "seal-state"]
    assert not any(v["name"] == "seal-state" for v in sts["spec"]["template"]["spec"]["volumes"])
    assert sts["spec"]["template"]["spec"]["shareProcessNamespace"] is False
    assert referenced_secrets(rendered.objects)[("t-audit", "auditlog-seal-key")] == {"key"}
    assert [s["name"] for s in rendered.secrets] == ["auditlog-seal-key"]
    assert run_under_mocks(lambda: AuditLog("a", _args(seal_key_secret="my-key"))).secrets == []


@pytest.mark.parametrize("stack, source", [("demo", "generated by the Pulumi program"), ("chu-exemple-prod", "provided by you")])
def test_secrets_required_lists_the_seal_key(stack, source):
    import yaml

    from tests.conftest import rendered_stack

    required = yaml.safe_load(rendered_stack(stack)[2]["secrets-required.yaml"])["secrets"]
    entry = next(s for s in required if s["name"] == "auditlog-seal-key")
    assert entry["keys"] == ["key"] and entry["source"].startswith(source)


def _trace04_failures(objs) -> list[str]:
    ev, ctx = evidence(objs, "demo")
    return [f.reason for f in by_id()["TRACE-04"].check(ev, ctx) if f.status == "fail"]


def build_demo():
    return build(Fixture("demo", "the demo render"))


def test_trace04_passes_with_the_key_in_the_seal_container_only():
    assert _trace04_failures(build_demo()) == []


def test_trace04_fails_when_the_writer_mounts_the_seal_key():
    objs = build_demo()
    sts = find(objs, "StatefulSet", "rsyslog")
    container(sts, "rsyslog")["volumeMounts"].append({"name": "seal-key", "mountPath": "/etc/socle/seal-key", "readOnly": True})
    reasons = _trace04_failures(objs)
    assert any("container rsyslog can read the seal key Secret auditlog-seal-key" in r for r in reasons), reasons


def test_trace04_fails_when_the_writer_gets_the_key_from_env_or_shared_processes():
    objs = build_demo()
    sts = find(objs, "StatefulSet", "rsyslog")
    container(sts, "rsyslog").setdefault("env", []).append(
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "auditlog-seal-key", "key": "key"}}})
    pod_spec(sts)["shareProcessNamespace"] = True
    reasons = " ".join(_trace04_failures(objs))
    assert "container rsyslog can read the seal key" in reasons and "shares its process namespace" in reasons


def test_trace04_fails_when_the_seal_has_no_key_secret():
    objs = build_demo()
    sts = find(objs, "StatefulSet", "rsyslog")
    seal = container(sts, "seal")
    seal["volumeMounts"] = [m for m in seal["volumeMounts"] if m["name"] != "seal-key"]
    reasons = _trace04_failures(objs)
    assert any("does not mount the seal key /etc/socle/seal-key/key from a Secret" in r for r in reasons), reasons

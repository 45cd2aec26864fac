"""Verification of the audit log's keyed seal chain (TRACE-04), the counterpart of the rendered `seal.sh`.

`chain.sha256` holds one entry per line, fields separated by two spaces:

    LINK  FILE_SHA256  audit-YYYY-MM-DD.jsonl      a closed daily file, sealed
    LINK  heartbeat  YYYY-MM-DDTHH:MM:SSZ  N       every run of the seal (N files sealed so far)
    LINK  start  YYYY-MM-DDTHH:MM:SSZ  N           a seal container's first run (pod start)
    LINK  alarm  YYYY-MM-DDTHH:MM:SSZ  EXPECTED    the seal found the chain's tail replaced (lines removed)

LINK = HMAC-SHA256(key, "PREV_LINK FIELD2 FIELD3[ FIELD4]\\n"), the first PREV_LINK being 64 zeros. With the key,
every link is recomputed: a chain edited or rebuilt by anyone without the key breaks at its first line written so.
Without the key, only the file hashes and the entries' dates can be checked, and the chain is never called intact.

What else is judged, against `today` (the --as-of date):
- a sealed file missing while still within the retention period, or whose content changed;
- a closed day's file that is not sealed, or sealed more than `max_gap_days` after its day closed (the seal did not
  run, or the chain was deleted and re-sealed by the seal container);
- the last seal run older than `max_gap_days` (the newest lines were removed, or the seal stopped);
- an `alarm` entry. Starts and gaps between runs inside the chain are reported as notes for the auditor to compare
  with the pod's known restarts.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

GENESIS = "0" * 64
RUN_KINDS = ("heartbeat", "start", "alarm")
_FILE = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

LIMITS = ("What the seal proves: each sealed daily file is byte for byte what the seal read the day after it closed, "
          "no sealed entry was edited, reordered or inserted by anyone without the key, and the seal ran up to the "
          "last heartbeat. What it does not prove: that rsyslog received and wrote every record before sealing "
          "(a compromised writer can alter today's open file), nor that the newest entries were not removed within "
          "the tolerance, nor that the chain started at the pod's creation (compare the starts with the cluster's "
          "history); it proves nothing to someone who does not hold the key.")


@dataclass
class ChainReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    authenticated: bool = False  # every link recomputed with the key
    sealed: int = 0
    runs: int = 0
    first_run: dt.datetime | None = None
    last_run: dt.datetime | None = None

    @property
    def intact(self) -> bool:
        return self.authenticated and not self.problems


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def link_of(key: bytes, prev: str, fields: list[str]) -> str:
    return hmac.new(key, f"{prev} {' '.join(fields)}\n".encode(), hashlib.sha256).hexdigest()


def _entry(line: str) -> tuple[str, list[str]] | None:
    """(link, fields) of a well-formed entry, else None."""
    parts = line.split("  ")
    if len(parts) < 3 or not _HEX.match(parts[0]):
        return None
    link, fields = parts[0], parts[1:]
    if len(fields) == 2 and _HEX.match(fields[0]) and _FILE.match(fields[1]):
        return link, fields
    if len(fields) == 3 and fields[0] in RUN_KINDS and _STAMP.match(fields[1]):
        if (fields[0] == "alarm" and _HEX.match(fields[2])) or (fields[0] != "alarm" and fields[2].isdigit()):
            return link, fields
    return None


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def check_chain(directory: Path, today: dt.date, retention_days: int, key: bytes | None = None,
                max_gap_days: int = 1, started: dt.date | None = None) -> ChainReport:
    """Every problem found, in chain order (the first one names the first broken entry), and notes.

    `started` is the day the keyed seal was deployed (from the operator's change records): files sealed late by the
    chain's first run on that day were there before the seal and are noted, not reported."""
    report = ChainReport()
    chain_file = directory / "chain.sha256"
    if not chain_file.is_file():
        report.problems.append(f"{chain_file}: no seal chain")
        return report
    limit = today - dt.timedelta(days=retention_days)
    problems, notes = report.problems, report.notes
    prev = GENESIS
    sealed: set[str] = set()
    pending: list[tuple[str, dt.date]] = []  # files sealed by the run whose heartbeat comes next
    last_run: dt.datetime | None = None
    broken = False
    for n, line in enumerate(chain_file.read_text(errors="replace").splitlines(), start=1):
        parsed = _entry(line)
        if parsed is None:
            problems.append(f"chain.sha256 line {n}: not a chain entry")
            broken = True
            break
        link, fields = parsed
        if key is not None and not hmac.compare_digest(link_of(key, prev, fields), link):
            what = fields[1] if fields[0] not in RUN_KINDS else f"{fields[0]} {fields[1]}"
            problems.append(f"{what}: chain link broken at chain.sha256 line {n} "
                            "(the chain was edited, or written without the key)")
            broken = True
            break
        prev = link
        if fields[0] in RUN_KINDS:
            kind, when = fields[0], _stamp(fields[1])
            if last_run and (when.date() - last_run.date()).days > max_gap_days:
                notes.append(f"no seal run from {last_run:%Y-%m-%d} to {when:%Y-%m-%d}")
            first = report.runs == 0 and started is not None and when.date() == started
            for name, day in pending:
                late = (when.date() - (day + dt.timedelta(days=1))).days
                if late > max_gap_days and first:
                    notes.append(f"{name}: sealed by the seal's first run on {started}, {late} days after its day closed")
                elif late > max_gap_days:
                    problems.append(f"{name}: sealed on {when:%Y-%m-%d}, {late} days after its day closed "
                                    "(the chain was rebuilt, or the seal did not run)")
            pending = []
            if kind == "alarm":
                problems.append(f"alarm at chain.sha256 line {n} ({fields[1]}): the seal found the chain's tail "
                                "replaced — lines removed, or the chain deleted or rebuilt")
            elif kind == "start":
                notes.append(f"seal started {fields[1]} (chain.sha256 line {n}): a new pod, or the chain's start")
            elif kind == "heartbeat" and int(fields[2]) != len(sealed):
                problems.append(f"heartbeat at chain.sha256 line {n} counts {fields[2]} sealed files, the chain {len(sealed)}")
            report.runs += kind == "heartbeat"
            report.first_run = report.first_run or when
            last_run = when
            continue
        digest, name = fields
        day = dt.date.fromisoformat(_FILE.match(name).group(1))  # type: ignore[union-attr]
        if name in sealed:
            problems.append(f"{name}: sealed twice (chain.sha256 line {n})")
        sealed.add(name)
        pending.append((name, day))
        path = directory / name
        if not path.exists():
            if day >= limit:
                problems.append(f"{name}: sealed file removed within the retention period ({retention_days} days)")
        elif _sha256(path) != digest:
            problems.append(f"{name}: content changed since it was sealed (a line edited, added or deleted)")
    report.sealed, report.last_run = len(sealed), last_run
    if broken:
        return report
    if last_run is None:
        problems.append("chain.sha256: no heartbeat — the seal never completed a run")
    elif (today - last_run.date()).days > max_gap_days:
        problems.append(f"no seal run since {last_run:%Y-%m-%dT%H:%M:%SZ} ({(today - last_run.date()).days} days before "
                        f"{today}, tolerance {max_gap_days}): the newest entries may have been removed, or the seal stopped")
    for path in sorted(directory.glob("audit-*.jsonl")):
        m = _FILE.match(path.name)
        if m and path.name not in sealed and (today - dt.date.fromisoformat(m.group(1))).days - 1 > max_gap_days:
            problems.append(f"{path.name}: a closed day that is not sealed")
    if key is not None:
        report.authenticated = True
    return report


def verify_chain(directory: Path, today: dt.date, retention_days: int, key: bytes | None = None,
                 max_gap_days: int = 1, started: dt.date | None = None) -> list[str]:
    """The problems of `check_chain`; without a key, the unverified links are themselves a problem."""
    report = check_chain(directory, today, retention_days, key, max_gap_days, started)
    if key is None:
        return report.problems + ["links NOT verified (no key): the chain cannot be called intact"]
    return report.problems

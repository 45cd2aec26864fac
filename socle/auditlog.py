"""Verification of the audit log's seal chain (TRACE-04), the counterpart of the rendered `seal.sh`.

`chain.sha256` holds one line per sealed daily file: `LINK  FILE_SHA256  FILE_NAME`, where
LINK = sha256("PREV_LINK FILE_SHA256 FILE_NAME\\n") and the first PREV_LINK is 64 zeros. A file may be missing
only when the retention removed it (older than the retention period); its entry stays in the chain.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

GENESIS = "0" * 64
_FILE = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_LINE = re.compile(r"^([0-9a-f]{64})  ([0-9a-f]{64})  (audit-\d{4}-\d{2}-\d{2}\.jsonl)$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_chain(directory: Path, today: dt.date, retention_days: int) -> list[str]:
    """Every problem found, in chain order: the first one names the first broken file."""
    chain_file = directory / "chain.sha256"
    if not chain_file.is_file():
        return [f"{chain_file}: no seal chain"]
    limit = today - dt.timedelta(days=retention_days)
    problems: list[str] = []
    prev = GENESIS
    sealed: set[str] = set()
    for n, line in enumerate(chain_file.read_text().splitlines(), start=1):
        m = _LINE.match(line)
        if not m:
            problems.append(f"chain.sha256 line {n}: not a chain entry")
            break
        link, digest, name = m.groups()
        if hashlib.sha256(f"{prev} {digest} {name}\n".encode()).hexdigest() != link:
            problems.append(f"{name}: chain link broken at chain.sha256 line {n} (the chain was edited)")
            break
        sealed.add(name)
        path = directory / name
        day = dt.date.fromisoformat(_FILE.match(name).group(1))  # type: ignore[union-attr]
        if not path.exists():
            if day >= limit:
                problems.append(f"{name}: sealed file removed within the retention period ({retention_days} days)")
        elif _sha256(path) != digest:
            problems.append(f"{name}: content changed since it was sealed (a line edited, added or deleted)")
        prev = link
    for path in sorted(directory.glob("audit-*.jsonl")):
        m = _FILE.match(path.name)
        if m and path.name not in sealed and dt.date.fromisoformat(m.group(1)) < today and not problems:
            problems.append(f"{path.name}: a closed day that is not sealed")
    return problems

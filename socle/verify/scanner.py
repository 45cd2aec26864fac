"""The independent scanner: checkov on the rendered manifests, judged against the reviewed acceptance file
(security/checkov-accepted.yaml). Every failed check must be listed there for its object, with a justification."""
from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ACCEPTED_FILE = ROOT / "security" / "checkov-accepted.yaml"


@dataclass
class ScanResult:
    passed: int
    failed: int
    skipped: int
    accepted: list[tuple[str, str, str]] = field(default_factory=list)  # (check, resource, file)
    unjustified: list[tuple[str, str, str, str]] = field(default_factory=list)  # (check, title, resource, file)
    version: str = ""

    @property
    def ok(self) -> bool:
        return not self.unjustified

    def summary(self) -> str:
        return (f"checkov {self.version}: {self.passed} passed, {self.failed} failed ({len(self.accepted)} accepted, "
                f"{len(self.unjustified)} unjustified), {self.skipped} skipped")


def checkov_path() -> str | None:
    found = shutil.which("checkov")
    if found:
        return found
    tools = ROOT / ".venv-tools" / "bin" / "checkov"
    return str(tools) if tools.exists() else None


def load_accepted(path: Path = ACCEPTED_FILE) -> list[dict]:
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    for i, e in enumerate(entries):
        missing = [k for k in ("check", "objects", "justification") if not e.get(k)]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {', '.join(missing)}")
    return entries


def _accepted(check: str, resource: str, entries: list[dict]) -> bool:
    return any(e["check"] == check and any(fnmatch.fnmatchcase(resource, pattern) for pattern in e["objects"]) for e in entries)


def scan(manifests: Path, accepted: list[dict] | None = None) -> ScanResult:
    exe = checkov_path()
    if exe is None:
        raise RuntimeError("checkov is not installed (pip install checkov==3.3.30, or let .ci/run create .venv-tools)")
    entries = load_accepted() if accepted is None else accepted
    run = subprocess.run([exe, "-d", str(manifests), "--framework", "kubernetes", "--skip-download", "-o", "json", "--quiet",
                          "--compact"], capture_output=True, text=True, timeout=600)
    try:
        data = json.loads(run.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"checkov produced no report: {run.stderr.strip()[-500:]}") from None
    data = data[0] if isinstance(data, list) else data
    if data.get("summary", {}).get("parsing_errors"):
        raise RuntimeError(f"checkov could not parse {data['summary']['parsing_errors']} file(s) of {manifests}")
    summary = data["summary"]
    result = ScanResult(summary["passed"], summary["failed"], summary["skipped"], version=summary.get("checkov_version", ""))
    for f in data["results"]["failed_checks"]:
        item = (f["check_id"], f["resource"], f["file_path"])
        if _accepted(f["check_id"], f["resource"], entries):
            result.accepted.append(item)
        else:
            result.unjustified.append((f["check_id"], f["check_name"], f["resource"], f["file_path"]))
    return result

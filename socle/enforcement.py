"""Where each requirement is enforced, from the one catalogue: at preview (the policy pack, socle/policy), at
admission (the platform layer's ValidatingAdmissionPolicies, socle.constants.ADMISSION_POLICIES), by the audit
(checked controls), by real daemons running the rendered configuration (`socle verify`'s probes and host checks),
or only by a document (manual controls).

`python -m socle.enforcement --write` regenerates docs/enforcement.md; a test keeps it current. The audit report
shows the same line for each requirement."""
from __future__ import annotations

import ast
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DOC = ROOT.parent / "docs" / "enforcement.md"
# The code of `socle verify`: the requirement IDs its probes and host checks report (found in the code, not listed).
VERIFY_SOURCES = (ROOT / "verify", ROOT / "hostchecks.py")
_PROBE_CALLS = {"probe", "Probe", "_check", "HostCheck"}


@dataclass(frozen=True)
class Enforcement:
    requirement: str
    preview: str  # "mandatory" / "advisory" in production, "" when the pack does not judge it
    admission: tuple[str, ...]  # admission policies
    audit: bool  # a checked control
    daemons: bool  # proved by `socle verify` with the real programs
    manual: bool  # only a document proves it


def verified_requirements() -> set[str]:
    """The requirement IDs `socle verify` reports: the first argument of each probe or host check in its code."""
    found: set[str] = set()
    files = [p for src in VERIFY_SOURCES for p in ([src] if src.is_file() else sorted(src.rglob("*.py")))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in _PROBE_CALLS:
                    found.add(node.args[0].value)
    return found


def table() -> list[Enforcement]:
    from socle.audit.controls import catalogue
    from socle.constants import ADMISSION_POLICIES
    from socle.policy import MANDATORY

    admission: dict[str, list[str]] = {}
    for name, rid in ADMISSION_POLICIES.items():
        admission.setdefault(rid, []).append(name)
    verified = verified_requirements()
    return [Enforcement(c.id, "" if c.manual else ("mandatory" if c.severity in MANDATORY else "advisory"),
                        tuple(sorted(admission.get(c.id, ()))), not c.manual, c.id in verified, c.manual)
            for c in catalogue()]


def where(e: Enforcement) -> list[str]:
    """The enforcement points of one requirement, in the order of the ladder (English, as the docs table)."""
    out = []
    if e.preview:
        out.append(f"preview ({e.preview} in production)")
    if e.admission:
        out.append("admission (" + ", ".join(e.admission) + ")")
    if e.audit:
        out.append("audit")
    if e.daemons:
        out.append("real daemons (socle verify)")
    if e.manual:
        out.append("manual evidence")
    return out


def markdown() -> str:
    rows = table()
    lines = ["# Where each requirement is enforced", "",
             "Generated from the control catalogue by `python -m socle.enforcement --write`; kept current by a test.",
             "Preview: socle's policy pack at `pulumi preview`/`up` (`socle preview|up` run it; mandatory for critical "
             "and high controls in production, advisory otherwise). Admission: the platform layer's "
             "ValidatingAdmissionPolicies, bound with Deny to the kit's namespaces and objects. Audit: `socle audit` "
             "of a render, a snapshot or a live cluster. Real daemons: `socle verify` runs the rendered configuration "
             "in the real programs. Manual: only a document proves it.", "",
             "| Requirement | Preview | Admission | Audit | Real daemons | Manual |", "|---|---|---|---|---|---|"]
    for e in rows:
        lines.append(f"| {e.requirement} | {e.preview or '—'} | {', '.join(e.admission) or '—'} | "
                     f"{'checked' if e.audit else '—'} | {'proved' if e.daemons else '—'} | {'yes' if e.manual else '—'} |")
    lines += ["", f"{sum(1 for e in rows if e.preview)} requirements judged at preview, "
              f"{sum(1 for e in rows if e.admission)} at admission, {sum(1 for e in rows if e.audit)} by the audit, "
              f"{sum(1 for e in rows if e.daemons)} proved with real daemons, {sum(1 for e in rows if e.manual)} by "
              "documents only.", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = markdown()
    if "--write" in argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            tmp = DOC.with_name(f".{DOC.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, DOC)
        return 0
    if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
        print(f"{DOC}: out of date; run python -m socle.enforcement --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

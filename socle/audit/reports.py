"""Audit reports: JSON (the reference form), self-contained HTML, Markdown, JUnit XML and SARIF 2.1.0.

Every report names the target, the evidence source, the kit and blueprint versions, the profile judged (and where
it came from) and the date judged; when that date (`--as-of`) is not the day of the audit, every format says so in
its headline. Output is deterministic: the same audit, date judged and day of the audit give byte-identical files
(no clock time, sorted content).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jinja2

from .controls import SOURCES
from .evidence import Evidence
from .model import FAMILIES, FRAMEWORKS, ControlResult, Finding
from .runner import Audit

STATUS_ORDER = ("fail", "waived", "pass", "not-applicable", "manual")
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
REPORT_FILES = ("report.html", "report.md", "report.json", "junit.xml", "report.sarif")


def _finding(f: Finding, ev: Evidence | None, waiver: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "waived" if waiver else f.status, "kind": f.obj.kind, "namespace": f.obj.namespace,
                           "name": f.obj.name, "reason": f.reason}
    if f.file:
        out["config_file"] = f.file
    rendered = ev.ref_file(f.obj) if ev else ""
    if rendered:
        out["rendered_file"] = rendered
    if waiver:
        out["waiver"] = waiver
    return out


def _control(r: ControlResult, ev: Evidence | None) -> dict[str, Any]:
    c = r.control
    findings = [_finding(f, ev) for f in r.findings] + [_finding(f, ev, w) for f, w in r.waived]
    findings.sort(key=lambda f: (STATUS_ORDER.index(f["status"]), f["kind"], f["namespace"], f["name"], f["reason"]))
    return {
        "id": c.id,
        "family": c.family,
        "title": c.title,
        "severity": c.severity,
        "frameworks": [FRAMEWORKS[f] for f in c.frameworks],
        "sources": [SOURCES[s] for s in c.sources],
        "remediation": c.remediation,
        "status": r.status,
        "manual_evidence": c.manual_evidence or None,
        "failures": [f for f in findings if f["status"] == "fail"],
        "findings": findings,
        "notes": sorted(r.notes),
    }


def to_dict(audit: Audit, ev: Evidence | None = None) -> dict[str, Any]:
    controls = [_control(r, ev) for r in audit.results]
    frameworks: dict[str, dict[str, Any]] = {}
    for key, title in FRAMEWORKS.items():
        mine = [c for c, r in zip(controls, audit.results) if key in r.control.frameworks]
        counts = {s: sum(1 for c in mine if c["status"] == s) for s in STATUS_ORDER}
        frameworks[key] = {"title": title, "controls": [c["id"] for c in mine], **counts}
    return {
        "report": {
            "tool": "socle audit",
            "kit_version": audit.kit_version,
            "target": audit.target,
            "evidence_source": audit.source,
            "date": audit.date.isoformat(),
            "audit_day": (audit.audit_day or audit.date).isoformat(),
            "as_of_notice": audit.as_of_notice,
            "profile": audit.context.profile,
            "profile_origin": audit.context.profile_origin,
            "blueprints": audit.blueprints,
            "objects": audit.object_count,
            "result": "fail" if audit.failed else "pass",
        },
        "summary": audit.counts(),
        "frameworks": frameworks,
        "families": FAMILIES,
        "controls": controls,
    }


def to_json(audit: Audit, ev: Evidence | None = None) -> str:
    return json.dumps(to_dict(audit, ev), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("socle.audit", "templates"), autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def to_html(audit: Audit, ev: Evidence | None = None) -> str:
    return _env().get_template("report.html.j2").render(r=to_dict(audit, ev), order=STATUS_ORDER)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(audit: Audit, ev: Evidence | None = None) -> str:
    d = to_dict(audit, ev)
    rep = d["report"]
    lines = [f"# socle audit — {rep['target']}", ""]
    if rep["as_of_notice"]:
        lines += [f"> **Date: {rep['as_of_notice']}**: waivers and dated evidence are judged at that date.", ""]
    lines += [
        f"- Result: **{rep['result'].upper()}** on the checked requirements; {d['summary']['manual']} need manual evidence",
        f"- Evidence: `{rep['evidence_source']}` ({rep['objects']} objects)",
        f"- Profile judged: {rep['profile']} ({rep['profile_origin']})",
        f"- Kit: socle {rep['kit_version']}; blueprint(s): {', '.join(rep['blueprints']) or 'none declared'}",
        f"- Date: {rep['as_of_notice'] or rep['date']}",
        "",
        "## Summary by framework",
        "",
        "| Framework | Pass | Fail | Waived | N/A | Manual |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for fw in d["frameworks"].values():
        lines.append(f"| {fw['title']} | {fw['pass']} | {fw['fail']} | {fw['waived']} | {fw['not-applicable']} | {fw['manual']} |")
    lines += ["", "## Requirements", "", "| ID | Status | Severity | Requirement |", "|---|---|---|---|"]
    for c in d["controls"]:
        lines.append(f"| [{c['id']}](#{c['id'].lower()}) | {c['status']} | {c['severity']} | {_md(c['title'])} |")
    for c in d["controls"]:
        lines += ["", f"### {c['id']}", "", f"**{_md(c['title'])}** — {c['status']} ({c['severity']})", ""]
        lines.append(f"- Frameworks: {', '.join(c['frameworks'])}")
        lines.append(f"- Sources: {'; '.join(c['sources'])}")
        lines.append(f"- Remediation: {c['remediation']}")
        if c["manual_evidence"]:
            lines.append(f"- Manual evidence: {c['manual_evidence']}")
        for n in c["notes"]:
            lines.append(f"- Note: {_md(n)}")
        if c["findings"]:
            lines += ["", "| Status | Object | Evidence | Reason |", "|---|---|---|---|"]
            for f in c["findings"]:
                obj = f"{f['kind']}/{f['namespace'] + '/' if f['namespace'] else ''}{f['name']}"
                where = " ".join(x for x in (f.get("rendered_file", ""), f.get("config_file", "")) if x)
                reason = f["reason"] + (f" — {f['waiver']}" if f.get("waiver") else "")
                lines.append(f"| {f['status']} | `{obj}` | {_md(where)} | {_md(reason)} |")
    return "\n".join(lines) + "\n"


def _headline(rep: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts every report states first: what was judged, against which profile, as of which date."""
    out = [("target", rep["target"]), ("evidence_source", rep["evidence_source"]), ("profile", rep["profile"]),
           ("profile_origin", rep["profile_origin"]), ("date", rep["date"]), ("audit_day", rep["audit_day"])]
    if rep["as_of_notice"]:
        out.append(("as_of_notice", rep["as_of_notice"]))
    return out


def to_junit(audit: Audit, ev: Evidence | None = None) -> str:
    d = to_dict(audit, ev)
    suites = ET.Element("testsuites", name=f"socle audit {d['report']['target']}")
    for family in FAMILIES:
        controls = [c for c in d["controls"] if c["family"] == family]
        suite = ET.SubElement(suites, "testsuite", name=f"socle.{family}")
        props = ET.SubElement(suite, "properties")
        for key, value in _headline(d["report"]):
            ET.SubElement(props, "property", name=key, value=value)
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for c in controls:
            cases = c["findings"] or [None]
            for f in cases:
                obj = "" if f is None else f"{f['kind']}/{f['namespace'] + '/' if f['namespace'] else ''}{f['name']}"
                case = ET.SubElement(suite, "testcase", classname=f"socle.{family}.{c['id']}",
                                     name=f"{c['id']} {obj}".strip())
                counts["tests"] += 1
                status = c["status"] if f is None else f["status"]
                if status == "fail":
                    counts["failures"] += 1
                    failure = ET.SubElement(case, "failure", message=f["reason"] if f else c["title"], type=c["severity"])
                    failure.text = f"Remediation: {c['remediation']}"
                elif status in ("not-applicable", "manual"):
                    counts["skipped"] += 1
                    ET.SubElement(case, "skipped", message=(f["reason"] if f else "; ".join(c["notes"])) or status)
                elif status == "waived" and f is not None:
                    out = ET.SubElement(case, "system-out")
                    out.text = f"{f['reason']} — {f['waiver']}"
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", "0")
        suite.set("skipped", str(counts["skipped"]))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def to_sarif(audit: Audit, ev: Evidence | None = None) -> str:
    d = to_dict(audit, ev)
    rules = []
    index = {}
    for i, c in enumerate(d["controls"]):
        index[c["id"]] = i
        rules.append({
            "id": c["id"],
            "name": c["id"].replace("-", ""),
            "shortDescription": {"text": c["title"]},
            "fullDescription": {"text": f"{c['title']}. Sources: {'; '.join(c['sources'])}"},
            "help": {"text": c["remediation"]},
            "defaultConfiguration": {"level": SARIF_LEVEL[c["severity"]]},
            "properties": {"tags": [c["family"], *c["frameworks"]], "severity": c["severity"]},
        })
    results = []
    for c in d["controls"]:
        for f in c["findings"]:
            if f["status"] not in ("fail", "waived"):
                continue
            obj = f"{f['kind']}/{f['namespace'] + '/' if f['namespace'] else ''}{f['name']}"
            location: dict[str, Any] = {"logicalLocations": [{"fullyQualifiedName": obj, "kind": "resource"}]}
            if f.get("rendered_file"):
                location["physicalLocation"] = {"artifactLocation": {"uri": f["rendered_file"], "uriBaseId": "RENDER"}}
            result: dict[str, Any] = {
                "ruleId": c["id"],
                "ruleIndex": index[c["id"]],
                "level": SARIF_LEVEL[c["severity"]],
                "message": {"text": f"{obj}: {f['reason']}" + (f" ({f['config_file']})" if f.get("config_file") else "")},
                "locations": [location],
            }
            if f["status"] == "waived":
                result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": f["waiver"]}]
            results.append(result)
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "socle", "version": d["report"]["kit_version"], "rules": rules}},
            "invocations": [{"executionSuccessful": True}],
            "properties": {**dict(_headline(d["report"])), "blueprints": d["report"]["blueprints"]},
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


def write_reports(audit: Audit, ev: Evidence | None, out: Path) -> list[Path]:
    """Write the five reports into `out`, each replaced atomically; other files in `out` are left alone.
    Raises socle.output.OutputError (one sentence) for a symlink, a protected directory, a read-only or full disk."""
    from ..output import write_files

    writers = {"report.html": to_html, "report.md": to_markdown, "report.json": to_json, "junit.xml": to_junit,
               "report.sarif": to_sarif}
    return write_files(out, {name: writers[name](audit, ev) for name in REPORT_FILES})

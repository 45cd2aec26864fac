"""Audit reports: JSON (the reference form), self-contained HTML (printable, and a PDF when WeasyPrint is installed),
Markdown, JUnit XML and SARIF 2.1.0.

Every report names the target, the evidence source, the kit and blueprint versions, the profile judged (and where
it came from) and the date judged; when that date (`--as-of`) is not the day of the audit, every format says so in
its headline. A report a certification body can sign also states the time of the audit (UTC, given by the caller),
the SHA-256 of the stack file, of the snapshot, of every evidence object and of the kit, the cluster's identity,
the scope, the method and the limitations, the confidence and status legend and a signature block.

Text comes from the catalogue of the language asked for (socle/audit/i18n, French by default); JSON keeps its
machine keys and statuses. Output is deterministic: the same audit, date judged, time given and files give
byte-identical reports (no clock read here, sorted content).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup

from . import model as _model
from . import runner as _runner
from .controls import SOURCES
from .requirements import REQUIREMENTS
from .evidence import Evidence, meta
from .i18n import DEFAULT_LANG, Catalogue, I18nError, load
from .model import FAMILIES, FRAMEWORKS, ControlResult, Finding
from .runner import Audit

# Statuses in report order; a status this list does not know (added by the checks) is shown after them, as it is.
STATUS_ORDER = ("fail", "evidence-missing", "declared", "waived", "pass", "not-applicable", _model.MANUAL_MISSING,
                _model.MANUAL_RECORDED)
NOT_RUN = ("not-applicable", _model.MANUAL_MISSING, _model.MANUAL_RECORDED, "declared")  # JUnit: skipped
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
REPORT_FILES = ("report.html", "report.md", "report.json", "junit.xml", "report.sarif")
PDF_FILE = "report.pdf"
CONFIDENCE_REGULATORY = ("P", "S")  # read in a primary text, or known through a secondary one
CONFIDENCE_DESIGN = ("D",)  # a design choice of the kit


def _status_rank(status: str) -> tuple[int, str]:
    return (STATUS_ORDER.index(status), "") if status in STATUS_ORDER else (len(STATUS_ORDER), status)


def _statuses(counts: dict[str, int]) -> list[str]:
    """Every status to show: the known ones in report order, then any other the audit counted."""
    return [*STATUS_ORDER, *sorted((s for s in counts if s not in STATUS_ORDER), key=_status_rank)]


COLUMN_ORDER = ("pass", "fail", "evidence-missing", "declared", "waived", "not-applicable", _model.MANUAL_MISSING,
                _model.MANUAL_RECORDED)  # the framework summary


def _columns(counts: dict[str, int]) -> list[str]:
    return [*COLUMN_ORDER, *(s for s in _statuses(counts) if s not in COLUMN_ORDER)]


def _counts(audit: Audit) -> dict[str, int]:
    """Controls per status: every status the model knows (0 or more), then any other a control has."""
    out = dict.fromkeys(getattr(_model, "CONTROL_STATUSES", STATUS_ORDER), 0)
    for r in audit.results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


COLUMN_LABELS = {"pass": "column_pass", "fail": "column_fail", "waived": "column_waived",
                 "not-applicable": "column_not_applicable", _model.MANUAL_MISSING: "column_manual_missing",
                 _model.MANUAL_RECORDED: "column_manual_recorded", "declared": "column_declared"}


def _column(cat: Catalogue, status: str) -> str:
    """The heading of a status column of the framework summary: its short label, else the status word."""
    return cat.label(COLUMN_LABELS[status]) if status in COLUMN_LABELS else _or(cat.status, status, status)


def _or(lookup: Callable[[str], str], key: str, fallback: str) -> str:
    """The catalogue's text for `key`, or `fallback` (the code's text, or the raw status) when it has none."""
    try:
        return lookup(key)
    except I18nError:
        return fallback


# --- facts of a signable report: fingerprints, kit, cluster, scope ---------------------------------------

def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _object_digest(obj: dict) -> str:
    """SHA-256 of an object in canonical JSON (sorted keys, no spaces, UTF-8): what was judged, byte for byte."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def evidence_digests(ev: Evidence) -> list[dict[str, str]]:
    return [{"kind": o["kind"], "namespace": meta(o).get("namespace") or "", "name": meta(o)["name"],
             "sha256": _object_digest(o)} for o in ev.objects]


def evidence_digest(objects: list[dict[str, str]]) -> str:
    """SHA-256 of the lines `kind/namespace/name sha256`, one per object in report order."""
    text = "".join(f"{o['kind']}/{o['namespace']}/{o['name']} {o['sha256']}\n" for o in objects)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


PACKAGE = Path(__file__).resolve().parent.parent  # socle/


@lru_cache(maxsize=None)
def kit_identity() -> dict[str, Any]:
    """The kit's commit (`git rev-parse HEAD` in its checkout, else None) and the SHA-256 of its package files
    (sorted relative paths and contents; bytecode left out). Read once per process."""
    commit = None
    if (PACKAGE.parent / ".git").exists():
        try:
            run = subprocess.run(["git", "-C", str(PACKAGE.parent), "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=10, check=False)
            commit = run.stdout.strip() if run.returncode == 0 and run.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            commit = None
    h = hashlib.sha256()
    files = sorted(p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in (".pyc", ".pyo"))
    for p in files:
        rel = p.relative_to(PACKAGE.parent).as_posix()
        h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return {"commit": commit, "sha256": h.hexdigest(), "files": len(files)}


def _cluster(ev: Evidence | None, audit: Audit) -> dict[str, Any] | None:
    """What the evidence records of the cluster (live and snapshot audits); None for an offline render."""
    source = ev.source if ev else audit.source
    if not source.startswith(("live:", "snapshot:")):
        return None
    uid = None
    if ev is not None:
        for o in ev.objects:
            if o["kind"] == "Namespace" and meta(o).get("name") == "kube-system":
                uid = meta(o).get("uid") or None
    server = None
    target = ev.target if ev else audit.target
    if source.startswith("live:") and target.endswith(")") and "(" in target:
        server = target[target.rindex("(") + 1:-1]
    return {"api_server": server, "uid": uid, "kubernetes_version": None}  # the sources record no server version


_RESERVATION_KEYS = {_model.MANUAL_MISSING: "manual_missing", "declared": "declared"}


def _scope(ev: Evidence | None) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    namespaces: set[str] = set()
    for o in ev.objects if ev else []:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
        ns = meta(o).get("namespace")
        if ns:
            namespaces.add(ns)
        elif o["kind"] == "Namespace":
            namespaces.add(meta(o)["name"])
    return {"kinds": dict(sorted(kinds.items())), "namespaces": sorted(namespaces)}


def _utc(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("the time of the audit must carry its zone (an aware datetime)")
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _profile_origin(origin: str, cat: Catalogue) -> str:
    for const, key in ((_runner.PROFILE_GIVEN, "profile_given"), (_runner.PROFILE_AUDITOR, "profile_auditor"),
                       (_runner.PROFILE_STACK, "profile_stack")):
        if origin == const or (key == "profile_stack" and origin.startswith(const)):
            return _or(cat.label, key, const) + origin[len(const):]
    return origin


def _as_of_notice(audit: Audit, cat: Catalogue) -> str | None:
    if not audit.as_of_notice or audit.audit_day is None:
        return audit.as_of_notice
    return cat.label("as_of_notice", date=audit.date.isoformat(), audit_day=audit.audit_day.isoformat())


# --- the judged line ------------------------------------------------------------------------------------------

def _judged_line(f: Finding, ev: Evidence | None) -> dict[str, Any] | None:
    """The line of the configuration file the finding quotes: the finding's own line number when it has one,
    else the line of the file (a ConfigMap key) that the reason quotes word for word. None when neither exists."""
    if not f.file or ev is None:
        return None
    obj = next((o for o in ev.objects if o["kind"] == f.obj.kind and meta(o).get("name") == f.obj.name
                and (meta(o).get("namespace") or "") == f.obj.namespace), None) if f.obj.kind == "ConfigMap" else None
    text = (obj.get("data") or {}).get(f.file) if obj else None
    number = getattr(f, "line", None)
    if not isinstance(text, str):
        return {"file": f.file, "line": number, "text": None} if isinstance(number, int) else None
    lines = text.splitlines()
    if isinstance(number, int) and 1 <= number <= len(lines):
        return {"file": f.file, "line": number, "text": lines[number - 1].strip()}
    for i, line in enumerate(lines, 1):
        quoted = line.strip().rstrip(";").strip()
        if len(quoted) >= 8 and not quoted.startswith("#") and quoted in f.reason:
            return {"file": f.file, "line": i, "text": line.strip()}
    # else the first line holding most of the configuration words the reason names (ssl_ciphers, $request_body…)
    words = {w.strip("().,;:'\"`") for w in f.reason.split()}
    words = {w for w in words if len(w) >= 4 and re.search(r"[_$]|\w-\w|\d", w) and not w.startswith("/")}
    best, best_score = 0, 0
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("#"):
            continue
        score = sum(1 for w in words if re.search(rf"(?<![\w$]){re.escape(w)}(?![\w])", line))
        if score > best_score:
            best, best_score = i, score
    if best_score and (best_score >= 2 or len(words) == 1):
        return {"file": f.file, "line": best, "text": lines[best - 1].strip()}
    return None


# --- the report as data ---------------------------------------------------------------------------------------

def _finding(f: Finding, ev: Evidence | None, waiver: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "waived" if waiver else f.status, "kind": f.obj.kind, "namespace": f.obj.namespace,
                           "name": f.obj.name, "reason": f.reason}
    if f.file:
        out["config_file"] = f.file
    rendered = ev.ref_file(f.obj) if ev else ""
    if rendered:
        out["rendered_file"] = rendered
    line = _judged_line(f, ev)
    if line:
        out["judged_line"] = line
    if waiver:
        out["waiver"] = waiver
    return out


BASIS_LABELS = {"regulatory": "basis_regulatory", "guidance": "basis_guidance", "design": "basis_design"}


LEVEL_LABELS = {"mandatory": "level_mandatory", "advisory": "level_advisory"}


@functools.lru_cache(maxsize=1)
def _enforcement() -> dict:
    from socle.enforcement import table

    return {e.requirement: e for e in table()}


def _enforced(rid: str, cat: Catalogue) -> list[str]:
    """Where the requirement is enforced (socle.enforcement): preview, admission, audit, real daemons, documents."""
    e = _enforcement().get(rid)
    if e is None:
        return []
    out = []
    if e.preview:
        out.append(cat.label("enforced_preview", level=cat.label(LEVEL_LABELS[e.preview])))
    if e.admission:
        out.append(cat.label("enforced_admission", policies=", ".join(e.admission)))
    if e.audit:
        out.append(cat.label("enforced_audit"))
    if e.daemons:
        out.append(cat.label("enforced_daemons"))
    if e.manual:
        out.append(cat.label("enforced_manual"))
    return out


BASIS_LABELS = {"regulatory": "basis_regulatory", "guidance": "basis_guidance", "design": "basis_design"}


def _basis(rid: str, cat: Catalogue) -> dict[str, Any]:
    """What the requirement rests on (socle/audit/requirements.py): binding text, guidance or the kit's design, the
    source cited, the confidence, and the values that are the kit's own choice."""
    r = REQUIREMENTS[rid]
    return {"kind": r.basis, "label": cat.label(BASIS_LABELS[r.basis]), "confidence": r.confidence, "source": r.source,
            "design_values": list(r.design_values)}


def _control(r: ControlResult, ev: Evidence | None, cat: Catalogue) -> dict[str, Any]:
    c = r.control
    findings = [_finding(f, ev) for f in r.findings] + [_finding(f, ev, w) for f, w in r.waived]
    findings.sort(key=lambda f: (_status_rank(f["status"]), f["kind"], f["namespace"], f["name"], f["reason"]))
    manual = _or(cat.manual_evidence, c.id, c.manual_evidence) if c.manual_evidence else ""
    return {
        "id": c.id,
        "family": c.family,
        "title": _or(cat.title, c.id, c.title),
        "severity": c.severity,
        "frameworks": [_or(cat.framework, f, FRAMEWORKS[f]) for f in c.frameworks],
        "sources": [_or(cat.source, s, SOURCES[s]) for s in c.sources],
        "basis": _basis(c.id, cat),
        "enforced": _enforced(c.id, cat),
        "remediation": _or(cat.remediation, c.id, c.remediation),
        "status": r.status,
        "manual": c.manual,
        "manual_evidence": manual or None,
        "failures": [f for f in findings if f["status"] == "fail"],
        "findings": findings,
        "notes": sorted(r.notes),
    }


def to_dict(audit: Audit, ev: Evidence | None = None, *, lang: str = DEFAULT_LANG,
            generated_at: dt.datetime | None = None, stack_file: Path | None = None,
            snapshot_file: Path | None = None) -> dict[str, Any]:
    """The report as data. `generated_at`: the time of the audit (an aware datetime, given by the caller, never
    read here); `stack_file`, `snapshot_file`: the files whose SHA-256 the report states (the snapshot is found
    from a `snapshot:` evidence source when not given)."""
    cat = load(lang)
    controls = [_control(r, ev, cat) for r in audit.results]
    frameworks: dict[str, dict[str, Any]] = {}
    counts_all = _counts(audit)
    statuses = _columns(counts_all)
    for key, title in FRAMEWORKS.items():
        mine = [c for c, r in zip(controls, audit.results) if key in r.control.frameworks]
        counts = {s: sum(1 for c in mine if c["status"] == s) for s in statuses}
        frameworks[key] = {"title": _or(cat.framework, key, title), "controls": [c["id"] for c in mine], **counts}
    if snapshot_file is None and audit.source.startswith("snapshot:"):
        candidate = Path(audit.source.removeprefix("snapshot:"))
        snapshot_file = candidate if candidate.is_file() else None
    objects = evidence_digests(ev) if ev else []
    kit = kit_identity()
    manual = [c["id"] for c in controls if c["manual"]]
    source = audit.source
    limitations = [cat.label("limitations_text")]
    if manual:
        limitations.append(cat.label("limitation_manual", count=len(manual), ids=", ".join(manual)))
    limitations.append(cat.label("limitation_render") if source.startswith("render:") else cat.label("limitation_cluster"))
    limitations.append(cat.label("limitation_seal"))  # what TRACE-04's seal proves, and what it does not
    if lang != "en":
        limitations.append(cat.label("limitation_reasons"))
    return {
        "report": {
            "tool": "socle audit",
            "lang": lang,
            "kit_version": audit.kit_version,
            "target": audit.target,
            "evidence_source": audit.source,
            "date": audit.date.isoformat(),
            "audit_day": (audit.audit_day or audit.date).isoformat(),
            "generated_at": _utc(generated_at),
            # the runner's own words (compared by tools), then the same in the report's language
            "as_of_notice": audit.as_of_notice,
            "as_of_notice_text": _as_of_notice(audit, cat),
            "profile": audit.context.profile,
            "profile_origin": audit.context.profile_origin,
            "profile_origin_text": _profile_origin(audit.context.profile_origin, cat),
            "blueprints": audit.blueprints,
            "objects": audit.object_count,
            "result": "fail" if audit.failed else "pass",
        },
        "kit": {"version": audit.kit_version, "commit": kit["commit"], "sha256": kit["sha256"], "files": kit["files"]},
        "hashes": {
            "stack_file": {"path": str(stack_file), "sha256": sha256_file(stack_file)} if stack_file else None,
            "snapshot": {"path": str(snapshot_file), "sha256": sha256_file(snapshot_file)} if snapshot_file else None,
            "evidence_objects": evidence_digest(objects) if ev else None,
        },
        "cluster": _cluster(ev, audit),
        "scope": {"objects": len(objects) if ev else audit.object_count, **_scope(ev)},
        "coverage": audit.coverage or None,
        "certification": getattr(audit, "certification", None),  # socle.certify.audit_section; None without a stack
        "method": {"catalogue": cat.label("catalogue_text", version=audit.kit_version, count=len(controls)),
                   "requirements": len(controls), "checked": len(controls) - len(manual), "manual": len(manual),
                   "evidence_source": audit.source, "profile": audit.context.profile,
                   "profile_origin": _profile_origin(audit.context.profile_origin, cat)},
        "limitations": limitations,
        "summary": counts_all,
        # Not failures, never passes: listed beside the result in every format.
        "reservations": {_RESERVATION_KEYS[s]: counts_all[s] for s in _model.RESERVED_STATUSES if counts_all.get(s)},
        "frameworks": frameworks,
        "families": {k: _or(cat.family, k, v) for k, v in FAMILIES.items()},
        "controls": controls,
        "evidence_objects": objects,
    }


def to_json(audit: Audit, ev: Evidence | None = None, *, lang: str = DEFAULT_LANG, **opts: Any) -> str:
    return json.dumps(_report(audit, ev, lang, opts), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _report(audit: Audit, ev: Evidence | None, lang: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The report's data: given by write_reports (`_data`, built once for the five formats), else built here."""
    data = opts.pop("_data", None)
    return data if data is not None else to_dict(audit, ev, lang=lang, **opts)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("socle.audit", "templates"), autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["css"] = css_class
    return env


def css_class(status: str) -> str:
    """A status as a CSS class name: `manual: missing` -> `manual-missing`."""
    return re.sub(r"[^a-z0-9]+", "-", str(status).lower()).strip("-")


def _words(cat: Catalogue) -> dict[str, Callable[..., str]]:
    return {"L": cat.label, "S": lambda s: _or(cat.status, s, s), "V": lambda s: _or(cat.severity, s, s),
            "G": lambda s: _or(cat.legend, s, s), "C": lambda s: _column(cat, s), "Q": _css_string}


def _css_string(text: str) -> Markup:
    """`text` as a quoted CSS string, for the print stylesheet (HTML escaping does not apply inside <style>)."""
    escaped = "".join(c if c.isalnum() or c in " -—.,:;/()'_" else f"\\{ord(c):x} " for c in str(text))
    return Markup(f'"{escaped}"')


def to_html(audit: Audit, ev: Evidence | None = None, *, lang: str = DEFAULT_LANG, **opts: Any) -> str:
    cat = load(lang)
    d = _report(audit, ev, lang, opts)
    page = _env().get_template("report.html.j2").render(
        r=d, order=_statuses(d["summary"]), columns=_columns(d["summary"]), lang=lang, confidence=dict(cat.data["confidence"]),
        regulatory=CONFIDENCE_REGULATORY, design=CONFIDENCE_DESIGN, **_words(cat))
    from socle.certify import html as certification_html

    section = certification_html(d.get("certification"), lang)  # before the limitations (socle.certify)
    anchor = '<h2 id="limitations">'
    return page.replace(anchor, section + anchor, 1) if section and anchor in page else page


def to_pdf(html: str, moment: dt.datetime | dt.date) -> bytes:
    """The HTML report printed to PDF by WeasyPrint (its print stylesheet: A4, page numbers, table of contents).
    Raises ImportError when WeasyPrint (or the Pango library it needs) is not installed.

    Byte-identical for the same HTML and `moment` (the time of the audit): the subset fonts WeasyPrint embeds carry
    a modification time, which fontTools takes from SOURCE_DATE_EPOCH when it is set, else from the clock."""
    import os

    import weasyprint

    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.combine(moment, dt.time(), dt.timezone.utc)
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.timestamp()))
    try:
        return weasyprint.HTML(string=html).write_pdf()
    finally:
        if before is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(audit: Audit, ev: Evidence | None = None, *, lang: str = DEFAULT_LANG, **opts: Any) -> str:
    cat = load(lang)
    L, S, V = cat.label, _words(cat)["S"], _words(cat)["V"]
    d = _report(audit, ev, lang, opts)
    rep = d["report"]
    nr = L("not_recorded")
    lines = [f"# {L('report_title', target=rep['target'])}", ""]
    if rep["as_of_notice"]:
        lines += [f"> **{L('as_of_date', notice=rep['as_of_notice_text'])}**: {L('as_of_explanation')}", ""]
    result = L("result_fail") if rep["result"] == "fail" else L("result_pass")
    lines += [
        f"- {L('md_result', result=result)}",
        *(f"- {L('reservation_' + k, count=n)}" for k, n in d["reservations"].items()),
        f"- {L('md_evidence', source=rep['evidence_source'], count=rep['objects'])}",
        f"- {L('md_profile', profile=rep['profile'], origin=rep['profile_origin_text'])}",
        f"- {L('md_kit', version=rep['kit_version'], blueprints=', '.join(rep['blueprints']) or L('none_declared'))}",
        f"- {L('md_date', date=rep['as_of_notice_text'] or rep['date'])}",
        f"- {L('audit_day')}: {rep['audit_day']}; {L('time_of_audit')}: {rep['generated_at'] or nr}",
        f"- {L('report_language')}: {rep['lang']}",
        "",
        f"## {L('scope')}",
        "",
        f"- {L('scope_objects')}: {d['scope']['objects']}",
        f"- {L('scope_kinds')}: " + (", ".join(f"{k} ({n})" for k, n in d["scope"]["kinds"].items()) or nr),
        f"- {L('scope_namespaces')}: " + (", ".join(d["scope"]["namespaces"]) or nr),
        "",
        f"## {L('method')}",
        "",
        L("method_text"),
        "",
        f"- {L('catalogue_version')}: {d['method']['catalogue']}",
        f"- {L('coverage')}: " + L("coverage_summary", checked=d["method"]["checked"], total=d["method"]["requirements"],
                                   manual=d["method"]["manual"]),
        f"- {L('evidence_source')}: `{d['method']['evidence_source']}`",
        f"- {L('profile_judged')}: {d['method']['profile']} ({d['method']['profile_origin']})",
        "",
        f"## {L('hashes')}",
        "",
    ]
    h, kit = d["hashes"], d["kit"]
    if h["stack_file"]:
        lines.append(f"- {L('hash_stack_file')} (`{h['stack_file']['path']}`): `{h['stack_file']['sha256']}`")
    if h["snapshot"]:
        lines.append(f"- {L('hash_snapshot')} (`{h['snapshot']['path']}`): `{h['snapshot']['sha256']}`")
    if h["evidence_objects"]:
        lines.append(f"- {L('hash_evidence')}: `{h['evidence_objects']}` "
                     f"({L('hash_evidence_text', count=len(d['evidence_objects']))})")
    lines += [f"- {L('kit_version')}: socle {kit['version']}; {L('kit_commit')}: `{kit['commit'] or L('unknown')}`",
              f"- {L('hash_kit')}: `{kit['sha256']}` ({L('kit_files', count=kit['files'])})", "",
              f"## {L('cluster_identity')}", ""]
    if d["cluster"] is None:
        lines.append(L("cluster_not_applicable"))
    else:
        cl = d["cluster"]
        lines += [f"- {L('api_server')}: {cl['api_server'] or nr}", f"- {L('cluster_uid')}: {cl['uid'] or nr}",
                  f"- {L('kubernetes_version')}: {cl['kubernetes_version'] or nr}"]
    from socle.certify import markdown as certification_markdown

    lines += certification_markdown(d.get("certification"), lang)
    lines += ["", f"## {L('limitations')}", ""] + [f"- {_md(x)}" for x in d["limitations"]]
    statuses = _columns(d["summary"])
    lines += [
        "",
        f"## {L('summary_by_framework')}",
        "",
        f"| {L('framework')} | " + " | ".join(_column(cat, s) for s in statuses) + " |",
        "|---|" + "---:|" * len(statuses),
    ]
    for fw in d["frameworks"].values():
        lines.append(f"| {fw['title']} | " + " | ".join(str(fw.get(s, 0)) for s in statuses) + " |")
    lines += ["", f"## {L('requirements')}", "", f"| {L('id')} | {L('status')} | {L('severity')} | {L('requirement')} |",
              "|---|---|---|---|"]
    for c in d["controls"]:
        lines.append(f"| [{c['id']}](#{c['id'].lower()}) | {S(c['status'])} | {V(c['severity'])} | {_md(c['title'])} |")
    for c in d["controls"]:
        lines += ["", f"### {c['id']}", "", f"**{_md(c['title'])}** — {S(c['status'])} ({V(c['severity'])})", ""]
        lines.append(f"- {L('frameworks')}: {', '.join(c['frameworks'])}")
        lines.append(f"- {L('sources')}: {'; '.join(c['sources'])}")
        lines.append(f"- {L('enforced_at')}: {'; '.join(c['enforced'])}")
        b = c["basis"]
        lines.append(f"- {L('basis')}: {b['label']} ({L('confidence')} {b['confidence']}) — {_md(b['source'])}")
        if b["design_values"]:
            lines.append(f"- {L('design_values')}: {_md('; '.join(b['design_values']))}")
        lines.append(f"- {L('remediation')}: {c['remediation']}")
        if c["manual_evidence"]:
            lines.append(f"- {L('manual_evidence')}: {c['manual_evidence']}")
        for n in c["notes"]:
            lines.append(f"- {L('note')}: {_md(n)}")
        if c["findings"]:
            lines += ["", f"| {L('status')} | {L('object')} | {L('evidence')} | {L('reason')} |", "|---|---|---|---|"]
            for f in c["findings"]:
                obj = f"{f['kind']}/{f['namespace'] + '/' if f['namespace'] else ''}{f['name']}"
                where = " ".join(x for x in (f.get("rendered_file", ""), f.get("config_file", "")) if x)
                reason = f["reason"] + (f" — {f['waiver']}" if f.get("waiver") else "")
                jl = f.get("judged_line")
                if jl:
                    reason += f" — {L('judged_line')} ({L('line_in_file', file=jl['file'], line=jl['line'])})" + \
                        (f": `{jl['text']}`" if jl["text"] else "")
                lines.append(f"| {S(f['status'])} | `{obj}` | {_md(where)} | {_md(reason)} |")
    lines += ["", f"## {L('legend')}", "", f"### {L('statuses_legend')}", ""]
    lines += [f"- **{S(s)}**: {_or(cat.legend, s, s)}" for s in _statuses(d["summary"])]
    lines += ["", f"### {L('confidence_legend')}", "", f"{L('confidence_regulatory')}:", ""]
    lines += [f"- **{k}**: {cat.confidence(k)}" for k in CONFIDENCE_REGULATORY]
    lines += ["", f"{L('confidence_design')}:", ""] + [f"- **{k}**: {cat.confidence(k)}" for k in CONFIDENCE_DESIGN]
    lines += ["", f"## {L('signature_block')}", "", f"| {L('auditor')} | |", "|---|---|"]
    lines += [f"| {L(k)} | |" for k in ("name", "role", "organisation", "place", "date", "signature")]
    lines += ["", L("footer", version=rep["kit_version"], source=rep["evidence_source"])]
    return "\n".join(lines) + "\n"


def _headline(rep: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts every report states first: what was judged, against which profile, as of which date."""
    out = [("target", rep["target"]), ("evidence_source", rep["evidence_source"]), ("profile", rep["profile"]),
           ("profile_origin", rep["profile_origin"]), ("date", rep["date"]), ("audit_day", rep["audit_day"])]
    if rep["as_of_notice"]:
        out.append(("as_of_notice", rep["as_of_notice"]))
    out += [("lang", rep["lang"]), ("generated_at", rep["generated_at"] or "not recorded")]
    return out


def _fingerprints(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The fingerprints of a report as properties (JUnit, SARIF)."""
    h = d["hashes"]
    out = [("kit_commit", d["kit"]["commit"] or "unknown"), ("kit_sha256", d["kit"]["sha256"])]
    for key in ("stack_file", "snapshot"):
        if h[key]:
            out += [(f"{key}_path", h[key]["path"]), (f"{key}_sha256", h[key]["sha256"])]
    if h["evidence_objects"]:
        out.append(("evidence_objects_sha256", h["evidence_objects"]))
    return out


def to_junit(audit: Audit, ev: Evidence | None = None, *, lang: str = DEFAULT_LANG, **opts: Any) -> str:
    cat = load(lang)
    d = _report(audit, ev, lang, opts)
    suites = ET.Element("testsuites", name=f"socle audit {d['report']['target']}")
    for family in FAMILIES:
        controls = [c for c in d["controls"] if c["family"] == family]
        suite = ET.SubElement(suites, "testsuite", name=f"socle.{family}")
        props = ET.SubElement(suite, "properties")
        for key, value in _headline(d["report"]) + _fingerprints(d):
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
                if status in ("fail", "evidence-missing"):
                    counts["failures"] += 1
                    failure = ET.SubElement(case, "failure", message=f["reason"] if f else c["title"], type=c["severity"])
                    failure.text = cat.label("junit_remediation", remediation=c["remediation"])
                elif status in NOT_RUN:
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


def to_sarif(audit: Audit, ev: Evidence | None = None, *, lang: str = DEFAULT_LANG, **opts: Any) -> str:
    cat = load(lang)
    d = _report(audit, ev, lang, opts)
    rules = []
    index = {}
    for i, c in enumerate(d["controls"]):
        index[c["id"]] = i
        rules.append({
            "id": c["id"],
            "name": c["id"].replace("-", ""),
            "shortDescription": {"text": c["title"]},
            "fullDescription": {"text": cat.label("sarif_full_description", title=c["title"], sources="; ".join(c["sources"]))},
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
            "properties": {**dict(_headline(d["report"])), "blueprints": d["report"]["blueprints"],
                           **dict(_fingerprints(d))},
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


def write_reports(audit: Audit, ev: Evidence | None, out: Path, *, lang: str = DEFAULT_LANG, pdf: bool = False,
                  **opts: Any) -> list[Path]:
    """Write the five reports into `out` (and report.pdf with `pdf=True` when WeasyPrint is installed), each replaced
    atomically; other files in `out` are left alone. `opts`: the time of the audit and the files to fingerprint
    (see to_dict). Raises socle.output.OutputError (one sentence) for a symlink, a protected directory, a read-only or
    full disk."""
    from ..output import write_files

    writers = {"report.html": to_html, "report.md": to_markdown, "report.json": to_json, "junit.xml": to_junit,
               "report.sarif": to_sarif}
    data = to_dict(audit, ev, lang=lang, **opts)  # every object hashed once, not once per format
    files: dict[str, str | bytes] = {name: writers[name](audit, ev, lang=lang, _data=data) for name in REPORT_FILES}
    if pdf and pdf_available() is None:
        files[PDF_FILE] = to_pdf(str(files["report.html"]), opts.get("generated_at") or audit.date)
    return write_files(out, files)


def pdf_available() -> str | None:
    """None when report.pdf can be written; else why not (one sentence)."""
    try:
        import weasyprint  # noqa: F401
    except ImportError as exc:
        return f"report.pdf not written: WeasyPrint is not installed ({exc})"
    except OSError as exc:  # the Pango library WeasyPrint loads is missing
        return f"report.pdf not written: WeasyPrint cannot load its libraries ({exc})"
    return None

"""A report a certification body can sign (issue 9, part 8): French by default, English on request; the time of the
audit with its zone; SHA-256 of the stack file, the snapshot, every evidence object and the kit; the cluster's
identity; scope, method, limitations, legend and a signature block; a print stylesheet and a PDF checked page by page."""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import html as htmllib
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from socle.audit import reports, runner
from socle.audit.evidence import Evidence
from socle.audit.i18n import load
from socle.audit.model import ObjRef
from socle.cli import app
from tests.audit_fixtures import FAILING, build
from tests.conftest import ROOT, rendered_stack

TODAY = dt.date(2026, 11, 27)
AT = dt.datetime(2026, 11, 27, 10, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 09:30:05 UTC
FR, EN = load("fr"), load("en")
cli = CliRunner()


def _demo():
    stack, rendered, _ = rendered_stack("demo")
    ev = Evidence(source="render:demo", objects=rendered.objects, target="stack demo (stacks/Pulumi.demo.yaml)",
                  files={ObjRef.of(o): f"{o['metadata'].get('namespace', '_cluster')}/{o['kind'].lower()}-"
                                       f"{o['metadata']['name']}.yaml" for o in rendered.objects})
    ctx = runner.make_context(ev, TODAY, stack_profile="dev")
    return runner.run(ev, ctx, stack.audit, audit_day=TODAY), ev


OPTS = {"generated_at": AT, "stack_file": ROOT / "stacks" / "Pulumi.demo.yaml"}


def _text(html: str) -> str:
    return htmllib.unescape(html)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- language ---------------------------------------------------------------------------------------------

def test_french_is_the_default_language():
    audit, ev = _demo()
    page, md = _text(reports.to_html(audit, ev, **OPTS)), reports.to_markdown(audit, ev, **OPTS)
    for text in (page, md):
        assert FR.title("TLS-01") in text and EN.title("TLS-01") not in text
        assert FR.remediation("GW-01") in text and EN.remediation("GW-01") not in text
        assert FR.label("summary_by_framework") in text and "Summary by framework" not in text
        assert FR.status("pass") in text
    assert '<html lang="fr">' in page
    data = reports.to_dict(audit, ev, **OPTS)
    assert data["report"]["lang"] == "fr"
    tls01 = next(c for c in data["controls"] if c["id"] == "TLS-01")
    assert tls01["title"] == FR.title("TLS-01") and tls01["status"] == "pass"  # machine keys stay
    assert data["report"]["profile_origin"].startswith(runner.PROFILE_STACK)  # the runner's words, for tools
    assert data["report"]["profile_origin_text"].startswith(FR.label("profile_stack"))


def test_english_on_request_is_todays_english():
    audit, ev = _demo()
    page, md = _text(reports.to_html(audit, ev, lang="en", **OPTS)), reports.to_markdown(audit, ev, lang="en", **OPTS)
    for text in (page, md):
        assert EN.title("TLS-01") in text and FR.title("TLS-01") not in text
        assert "Summary by framework" in text and "Remediation" in text and "Sources" in text
        assert FR.label("summary_by_framework") not in text
    assert '<html lang="en">' in page and "<th>Framework</th><th>Pass</th><th>Fail</th>" in page
    assert md.startswith(f"# socle audit — {audit.target}\n")
    assert "| Framework | Pass | Fail |" in md
    assert reports.to_dict(audit, ev, lang="en")["controls"][0]["title"] == EN.title(audit.results[0].control.id)


def test_junit_and_sarif_say_the_language():
    audit, ev = _demo()
    suite = ET.fromstring(reports.to_junit(audit, ev, **OPTS)).find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["lang"] == "fr" and props["generated_at"] == "2026-11-27T09:30:05Z"
    assert props["stack_file_sha256"] == _sha(ROOT / "stacks" / "Pulumi.demo.yaml")
    sarif = json.loads(reports.to_sarif(audit, ev, lang="en", **OPTS))
    assert sarif["runs"][0]["properties"]["lang"] == "en"


def test_lang_option_of_the_command(tmp_path, chdir_root):
    res = cli.invoke(app, ["audit", "--render", "demo", "--lang", "de"])
    assert res.exit_code == 2 and "--lang must be fr or en" in res.output
    res = cli.invoke(app, ["audit", "--render", "demo", "--as-of", "2026-11-27", "--lang", "en", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["report"]["lang"] == "en" and data["controls"][0]["title"] == EN.title(data["controls"][0]["id"])


# --- what a certification body needs ----------------------------------------------------------------------

def test_time_of_the_audit_is_utc_with_its_zone():
    audit, ev = _demo()
    assert reports.to_dict(audit, ev, **OPTS)["report"]["generated_at"] == "2026-11-27T09:30:05Z"
    assert "2026-11-27T09:30:05Z" in reports.to_html(audit, ev, **OPTS)
    assert "2026-11-27T09:30:05Z" in reports.to_markdown(audit, ev, **OPTS)
    assert reports.to_dict(audit, ev)["report"]["generated_at"] is None  # not given: not invented
    assert FR.label("not_recorded") in reports.to_markdown(audit, ev)
    with pytest.raises(ValueError, match="zone"):
        reports.to_dict(audit, ev, generated_at=dt.datetime(2026, 11, 27, 9, 30))


def test_fingerprints_are_present_and_correct():
    audit, ev = _demo()
    data = reports.to_dict(audit, ev, **OPTS)
    stack = ROOT / "stacks" / "Pulumi.demo.yaml"
    assert data["hashes"]["stack_file"] == {"path": str(stack), "sha256": _sha(stack)}
    assert data["hashes"]["snapshot"] is None
    objects = data["evidence_objects"]
    assert len(objects) == len(ev.objects) == data["scope"]["objects"]
    first = ev.objects[0]
    canonical = json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    assert objects[0]["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    listing = "".join(f"{o['kind']}/{o['namespace']}/{o['name']} {o['sha256']}\n" for o in objects)
    assert data["hashes"]["evidence_objects"] == hashlib.sha256(listing.encode()).hexdigest()
    kit = data["kit"]
    assert kit["version"] == audit.kit_version and re.fullmatch(r"[0-9a-f]{64}", kit["sha256"])
    if (ROOT / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert kit["commit"] == head
    page, md = reports.to_html(audit, ev, **OPTS), reports.to_markdown(audit, ev, **OPTS)
    for text in (page, md):
        assert _sha(stack) in text and data["hashes"]["evidence_objects"] in text and kit["sha256"] in text


def test_scope_method_limitations_legend_and_signature_sections():
    audit, ev = _demo()
    page = _text(reports.to_html(audit, ev, **OPTS))
    md = reports.to_markdown(audit, ev, **OPTS)
    for key in ("scope", "method", "hashes", "cluster", "limitations", "legend", "signature"):
        assert f'id="{key}"' in page and f'href="#{key}"' in page  # a section, listed in the table of contents
    for label in ("scope", "method", "limitations", "hashes", "cluster_identity", "legend", "signature_block"):
        assert f"## {FR.label(label)}" in md and FR.label(label) in page
    assert FR.label("method_text") in page and FR.label("limitations_text") in page
    manual = [r.control.id for r in audit.results if r.control.manual]
    assert FR.label("limitation_manual", count=len(manual), ids=", ".join(manual)) in page
    assert FR.label("limitation_render") in page and FR.label("cluster_not_applicable") in page
    assert "chdemo-gateway" in page and "ConfigMap (" in page  # namespaces and kinds audited
    for level in ("P", "S", "D"):
        assert FR.confidence(level) in page
    assert page.index(FR.label("confidence_regulatory")) < page.index(FR.label("confidence_design"))
    for s in ("pass", "fail", "waived", "not-applicable", "declared", "manual: missing", "manual: evidence recorded"):
        assert FR.legend(s) in page
    # the signature block ends the report, after the last requirement
    sig = page.index('id="signature"')
    assert sig > max(page.index(f'id="{r.control.id}"') for r in audit.results)
    block = page[sig:]
    for label in ("auditor", "name", "role", "organisation", "place", "date", "signature"):
        assert f"<td>{FR.label(label)}</td>" in block or f">{FR.label(label)}</th>" in block
    assert md.index(f"## {FR.label('signature_block')}") > md.index("### " + audit.results[-1].control.id)


def test_snapshot_audit_states_the_snapshot_hash_and_the_cluster_identity(tmp_path, chdir_root):
    objs = copy.deepcopy(rendered_stack("demo")[1].objects)
    objs.append({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": "kube-system", "uid": "5c0ffee0-1234-4abc-9def-000000000001"}})
    snap = tmp_path / "cluster.yaml"
    snap.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs}, sort_keys=False))
    res = cli.invoke(app, ["audit", "--snapshot", str(snap), "--stack", "demo", "--as-of", "2026-11-27",
                           "--report-dir", str(tmp_path / "rep")])
    assert res.exit_code in (0, 1), res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["hashes"]["snapshot"] == {"path": str(snap), "sha256": _sha(snap)}
    assert data["hashes"]["stack_file"]["sha256"] == _sha(ROOT / "stacks" / "Pulumi.demo.yaml")
    assert data["cluster"] == {"api_server": None, "uid": "5c0ffee0-1234-4abc-9def-000000000001",
                               "kubernetes_version": None}  # the export records no server version
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["report"]["generated_at"])
    page = (tmp_path / "rep" / "report.html").read_text()
    assert _sha(snap) in page and "5c0ffee0-1234-4abc-9def-000000000001" in page
    assert FR.label("not_recorded") in page and FR.label("limitation_cluster") in _text(page)


def test_the_judged_line_is_quoted_with_its_file_and_line():
    ev = Evidence(source="test:demo", objects=build(FAILING["TLS-02"]), target="test demo")
    audit = runner.run(ev, runner.make_context(ev, TODAY, stack_profile="dev"))
    tls02 = next(c for c in reports.to_dict(audit, ev)["controls"] if c["id"] == "TLS-02")
    line = tls02["failures"][0]["judged_line"]
    assert line["file"] == "nginx.conf" and line["text"].startswith("ssl_ciphers AES128-SHA")
    cm = next(o for o in ev.objects if o["kind"] == "ConfigMap" and "nginx.conf" in (o.get("data") or {})
              and "AES128-SHA" in o["data"]["nginx.conf"])
    assert cm["data"]["nginx.conf"].splitlines()[line["line"] - 1].strip() == line["text"]
    page = _text(reports.to_html(audit, ev))
    assert f"{FR.label('judged_line')} ({FR.label('line_in_file', file='nginx.conf', line=line['line'])})" in page


def test_a_status_the_reports_do_not_know_is_shown_through_the_catalogue_or_as_it_is():
    audit, ev = _demo()
    audit.results[0].status = "manual: evidence recorded"  # type: ignore[assignment]
    audit.results[1].status = "frobbed"  # type: ignore[assignment]
    assert reports.to_dict(audit, ev)["summary"]["frobbed"] == 1
    page = _text(reports.to_html(audit, ev))
    assert FR.status("manual: evidence recorded") in page and FR.legend("manual: evidence recorded") in page
    assert ">frobbed<" in page
    assert "frobbed" in reports.to_markdown(audit, ev)


def test_reports_are_byte_identical_for_identical_inputs(tmp_path):
    for lang in ("fr", "en"):
        a = reports.write_reports(*_demo(), tmp_path / f"a-{lang}", lang=lang, **OPTS)
        b = reports.write_reports(*_demo(), tmp_path / f"b-{lang}", lang=lang, **OPTS)
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


# --- print: stylesheet and PDF ----------------------------------------------------------------------------

def test_print_stylesheet_numbers_pages_and_lists_the_contents():
    page = reports.to_html(*_demo(), **OPTS)
    assert "@page" in page and 'counter(page) " / " counter(pages)' in page
    assert "target-counter(attr(href), page)" in page and "break-before: page" in page
    assert f"<h2 id=\"toc\">{FR.label('table_of_contents')}</h2>" in page


@pytest.fixture(scope="module")
def demo_pdf(tmp_path_factory) -> Path:
    why = reports.pdf_available()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("demo-audit")
    res = CliRunner().invoke(app, ["audit", "--render", str(ROOT / "stacks" / "Pulumi.demo.yaml"),
                                   "--as-of", "2026-11-27", "--report-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.pdf").is_file()
    return out / "report.pdf"


def test_demo_pdf_pages_are_printed_and_not_blank(demo_pdf, tmp_path):
    for tool in ("pdftoppm", "pdftotext", "pdfinfo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (Debian package poppler-utils)")
    from PIL import Image, ImageStat

    info = subprocess.run(["pdfinfo", str(demo_pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages >= 10  # cover, contents, scope…, one chapter per family, legend, signature
    subprocess.run(["pdftoppm", "-r", "30", "-gray", "-png", str(demo_pdf), str(tmp_path / "p")], check=True)
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) == pages
    for image in images:
        with Image.open(image) as im:
            body = im.convert("L").crop((0, im.height // 10, im.width, im.height * 9 // 10))  # no running head, foot
            assert ImageStat.Stat(body).var[0] > 5, f"{image.name} is blank"
            dark = sum(body.histogram()[:200])
            assert dark > body.width * body.height // 2000, f"{image.name}: nothing printed"
    text = " ".join(subprocess.run(["pdftotext", str(demo_pdf), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert FR.label("report_heading") in text and FR.label("signature_block") in text
    assert f"{FR.label('page')} 1 / {pages}" in text and f"{FR.label('page')} {pages} / {pages}" in text
    assert " ".join(FR.title("GW-01").split()) in text


def test_the_pdf_is_byte_identical_for_the_same_report(demo_pdf):
    """Before: each PDF differed (the subset fonts carried the time they were made)."""
    import datetime as dt

    html = (demo_pdf.parent / "report.html").read_text(encoding="utf-8")
    moment = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.timezone.utc)
    first = reports.to_pdf(html, moment)
    assert first == reports.to_pdf(html, moment)
    assert b"%PDF-" in first[:8] and "SOURCE_DATE_EPOCH" not in __import__("os").environ


def test_live_audit_states_the_api_server_and_the_cluster_uid(tmp_path, chdir_root):
    from tests.test_audit_live import FakeApi, responses

    objs = copy.deepcopy(rendered_stack("demo")[1].objects)
    objs.append({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": "kube-system"}})
    with FakeApi(responses(objs)) as api:
        res = cli.invoke(app, ["audit", "--live", "--kubeconfig", str(api.kubeconfig(tmp_path)), "--stack", "demo",
                               "--as-of", "2026-11-27", "--lang", "en", "--report-dir", str(tmp_path / "rep")])
    assert res.exit_code in (0, 1), res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    cluster = data["cluster"]
    assert cluster["api_server"].startswith("http://127.0.0.1:") and cluster["kubernetes_version"] is None
    assert re.fullmatch(r"[0-9a-f-]{36}", cluster["uid"])  # the uid the API server gave kube-system
    assert data["hashes"]["snapshot"] is None and data["hashes"]["stack_file"]["sha256"]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert cluster["api_server"] in page and cluster["uid"] in page and "Cluster UID (kube-system namespace)" in page and "not recorded" in page

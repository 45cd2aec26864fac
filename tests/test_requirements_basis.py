"""What each requirement rests on, as the report shows it, and the corrections of issue 11 that rest on primary
sources: the 60-day certificate alert (ANS), the trace retention floor (CSP R.6113-9-2) and the CNIL's one-year
advice, FINESS numbers of Corsica."""
from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from socle import hostchecks
from socle.audit import reports, requirements, runner
from socle.audit.controls import by_id, catalogue
from socle.stackfile import load
from tests.audit_fixtures import edit_file, objects_of
from tests.test_audit import evidence
from tests.test_hostchecks import LOCAL, NOW, _cert, _failed
from tests.test_stackfile import DEMO, P, mutated, problems_of, write_stack


def test_every_requirement_of_the_catalogue_has_its_basis_and_no_other():
    assert list(requirements.REQUIREMENTS) == [c.id for c in catalogue()]
    for rid, r in requirements.REQUIREMENTS.items():
        assert r.basis in ("regulatory", "guidance", "design") and r.source, rid
        assert r.confidence and set(r.confidence) <= set("PSD/"), rid


def test_the_requirements_document_shows_the_current_basis_table():
    assert requirements.main([]) == 0, "run python -m socle.audit.requirements --write"
    assert "| TRACE-01 | P | regulatory | CSP R.6113-9-2" in requirements.DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_report_says_what_each_requirement_rests_on_and_which_values_are_the_kits(lang):
    ev, ctx = evidence(objects_of("demo"), "demo")
    audit, moment = runner.run(ev, ctx), dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
    data = json.loads(reports.to_json(audit, ev, lang=lang, generated_at=moment))
    by = {c["id"]: c for c in data["controls"]}
    assert by["TRACE-01"]["basis"]["kind"] == "regulatory" and "R.6113-9-2" in by["TRACE-01"]["basis"]["source"]
    assert by["TLS-03"]["basis"]["design_values"] == ["HSTS max-age 31536000 s (no source sets a value)"]
    assert by["GW-06"]["basis"]["kind"] == "design"
    label = {"en": "The kit's own choices", "fr": "Choix propres au kit"}[lang]
    md = reports.to_markdown(audit, ev, lang=lang, generated_at=moment)
    assert f"- {label} (no source sets them)" in md or f"- {label} (aucune source ne les fixe)" in md
    assert "HSTS max-age 31536000 s" in md
    html = reports.to_html(audit, ev, lang=lang, generated_at=moment)
    assert label in html and "CSP R.6113-9-2" in html


def test_certificates_are_flagged_sixty_days_before_expiry_as_ans_warns(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    in_45_days, in_90_days = _cert(tmp_path, "soon", key, 45), _cert(tmp_path, "later", key, 90)
    failed = _failed(hostchecks.certificates(LOCAL, [str(in_45_days), str(in_90_days)], NOW.date()))
    assert "soon" in failed["PKI-03"] and "later" not in failed["PKI-03"]
    assert "alert 60 days before" in by_id()["PKI-03"].title


def test_trace_retention_cites_the_floor_and_flags_more_than_the_cnils_year():
    objs = objects_of("demo")
    edit_file(objs, "audit-seal", "seal.sh", "RETENTION_DAYS=365", "RETENTION_DAYS=800")
    ev, ctx = evidence(objs, "demo")
    seal = [f for f in by_id()["TRACE-01"].check(ev, ctx) if f.obj.kind == "ConfigMap" and f.obj.name.startswith("audit-seal")]
    assert [f.status for f in seal] == ["pass"]
    assert "CSP R.6113-9-2" in seal[0].reason and "CNIL's recommended one year" in seal[0].reason
    ev, ctx = evidence(objects_of("demo"), "demo")
    seal = [f for f in by_id()["TRACE-01"].check(ev, ctx) if f.obj.kind == "ConfigMap" and f.obj.name.startswith("audit-seal")]
    assert "CNIL" not in seal[0].reason


def test_validate_warns_above_one_year_of_records_and_still_accepts(tmp_path):
    def longer(p):
        p.setdefault("audit", {})["retention_days"] = 800
    path = write_stack(tmp_path, mutated(DEMO, longer))
    result = subprocess.run(["socle", "validate", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: Pulumi.broken.yaml:{P}.audit.retention_days: TRACE-01: records kept 800 days; the CNIL" in result.stderr
    plain = subprocess.run(["socle", "validate", str(DEMO)], capture_output=True, text=True)
    assert plain.returncode == 0 and "warning" not in plain.stderr


@pytest.mark.parametrize("finess,ok", [("2A0000014", True), ("2B0000020", True), ("750712184", True),
                                        ("2C0000014", False), ("2a0000014", False), ("75071218", False)])
def test_finess_numbers_of_corsica_are_accepted(tmp_path, finess, ok):
    def set_finess(p):
        p["organisation"]["finess"] = finess
    path = write_stack(tmp_path, mutated(DEMO, set_finess))
    if ok:
        assert load(str(path)).params.organisation.finess == finess
    else:
        assert f"{P}.organisation.finess" in dict(problems_of(path))


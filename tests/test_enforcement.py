"""Where each requirement is enforced: one table from the catalogue, in the docs and in every audit report."""
from __future__ import annotations

import datetime as dt
import json

from socle import enforcement
from socle.audit import reports, runner
from socle.audit.controls import catalogue
from socle.constants import ADMISSION_POLICIES
from tests.audit_fixtures import objects_of
from tests.test_audit import evidence


def test_the_docs_table_is_current():
    assert enforcement.main([]) == 0, "run python -m socle.enforcement --write"


def test_every_checked_control_is_judged_at_preview_and_every_admission_policy_is_a_checked_control():
    rows = {e.requirement: e for e in enforcement.table()}
    checked = {c.id for c in catalogue() if not c.manual}
    assert {r for r, e in rows.items() if e.preview} == checked == {r for r, e in rows.items() if e.audit}
    assert set(ADMISSION_POLICIES.values()) <= checked
    assert rows["K8S-03"].admission == ("socle-k8s-03",) and rows["TLS-02"].admission == ()
    assert {r for r, e in rows.items() if e.manual} == {c.id for c in catalogue() if c.manual}


def test_the_real_daemon_column_comes_from_the_code_of_socle_verify():
    found = enforcement.verified_requirements()
    assert {"TLS-01", "MSS-01", "TRACE-04", "PKI-03"} <= found  # probes and host checks
    assert "HDS-03" not in found  # a document, never a daemon


def test_each_report_says_where_its_requirement_is_enforced():
    ev, ctx = evidence(objects_of("demo"), "demo")
    audit = runner.run(ev, ctx)
    moment = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
    by = {c["id"]: c for c in json.loads(reports.to_json(audit, ev, lang="en", generated_at=moment))["controls"]}
    assert by["K8S-03"]["enforced"] == ["preview (policy pack, mandatory in production)", "admission (socle-k8s-03)", "audit"]
    assert by["HDS-03"]["enforced"] == ["manual evidence"]
    fr = reports.to_markdown(audit, ev, lang="fr", generated_at=moment)
    assert "- Appliquée à: la prévisualisation (pack de politiques, bloquant en production); l'admission (socle-k8s-03); l'audit" in fr

"""The French and English text of the audit (socle/audit/i18n): complete, aligned with each other and with the code."""
from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import pytest

from socle.audit import runner
from socle.audit.controls import SOURCES, catalogue
from socle.audit.i18n import LANGS, SECTIONS, Catalogue, I18nError, load
from socle.audit.model import FAMILIES, FRAMEWORKS, ControlStatus, Severity

ROOT = Path(__file__).resolve().parent.parent
AUDIT = ROOT / "socle" / "audit"

# Statuses the reports are gaining (manual evidence recorded or missing, facts declared in the stack file).

# Labels of the report being designed: not in the code yet, so not compared with it.
NEW_LABELS = {
    "report_heading", "table_of_contents", "executive_summary", "scope", "out_of_scope", "method", "method_text",
    "limitations", "limitations_text", "coverage", "coverage_summary", "checked_automatically", "judged_on_documents",
    "cluster_identity", "api_server", "cluster_uid", "kubernetes_version", "stack_file", "snapshot", "hashes",
    "hash_stack_file", "hash_snapshot", "hash_kit", "as_of", "audit_day", "generated_on", "signature_block",
    "signature", "signature_file", "verify_with", "auditor", "name", "role", "organisation", "place", "date", "page",
    "page_of", "confidence", "family", "findings", "notes", "legend", "waiver", "waivers", "owner", "approved_on",
    "expires_on", "justification", "recorded_evidence",
    # the signable report (scope, method, fingerprints, limitations, legend)
    "report_language", "time_of_audit", "not_recorded", "unknown", "kit_commit", "kit_files", "hash_evidence",
    "hash_evidence_text", "cluster_not_applicable", "scope_objects", "scope_kinds", "scope_namespaces",
    "catalogue_version", "catalogue_text", "limitation_manual", "limitation_render", "limitation_cluster",
    "limitation_reasons", "judged_line", "line_in_file", "confidence_regulatory", "confidence_design",
    "statuses_legend", "confidence_legend",
    # reservations beside the result, and the evidence coverage
    "limitation_seal", "reservation_manual_missing", "reservation_declared", "evidence_coverage", "namespaces_expected", "namespaces_found",
    "namespaces_missing", "namespaces_without_label", "objects_in_scope", "configuration_of", "configuration_missing",
    "none_expected", "none", "column_manual_missing", "column_manual_recorded", "column_declared",
}
# Labels whose English text is a constant of the runner (split over several source lines there).
RUNNER_LABELS = {"profile_given": runner.PROFILE_GIVEN, "profile_stack": runner.PROFILE_STACK,
                 "profile_auditor": runner.PROFILE_AUDITOR}

# Entries whose French is the English: proper names and words spelled the same in both languages. Keep it short.
SAME_IN_BOTH = {
    ("frameworks", "doctrine"), ("frameworks", "hds"), ("frameworks", "pgssi-s"), ("frameworks", "mssante"),
    ("frameworks", "psc"), ("sources", "ci-sis-transport"),
    ("labels", "sources"), ("labels", "signature"), ("labels", "date"), ("labels", "page"), ("labels", "justification"),
}


def _leaves(node: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(node, dict) or hasattr(node, "items"):
        out: dict[tuple[str, ...], Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, path + (k,)))
        return out
    return {path: node}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _literals(text: str) -> list[str]:
    return [lit for lit, _, _, _ in string.Formatter().parse(text) if lit]


@pytest.fixture(scope="module")
def fr() -> Catalogue:
    return load("fr")


@pytest.fixture(scope="module")
def en() -> Catalogue:
    return load("en")


def test_every_control_has_french_text(fr):
    controls = catalogue()
    assert set(fr.data["controls"]) == {c.id for c in controls}
    for c in controls:
        assert fr.title(c.id).strip(), c.id
        assert fr.remediation(c.id).strip(), c.id
        if c.manual_evidence:
            assert fr.manual_evidence(c.id).strip(), f"{c.id}: French manual evidence missing"
        else:
            assert "manual_evidence" not in fr.control(c.id), f"{c.id} has no manual evidence in the code"


def test_french_and_english_have_the_same_keys(fr, en):
    assert list(fr.data) == list(en.data)
    assert set(_leaves(fr.data)) == set(_leaves(en.data))
    for section in SECTIONS:  # same order too: sections are displayed in file order
        assert list(fr.data[section]) == list(en.data[section]), section


def test_english_is_the_text_of_the_code(en):
    for c in catalogue():
        assert en.title(c.id) == c.title, c.id
        assert en.remediation(c.id) == c.remediation, c.id
        assert en.manual_evidence(c.id) == c.manual_evidence, c.id
    assert list(en.data["controls"]) == [c.id for c in catalogue()]
    assert dict(en.families) == FAMILIES and list(en.families) == list(FAMILIES)
    assert dict(en.frameworks) == FRAMEWORKS and list(en.frameworks) == list(FRAMEWORKS)
    assert dict(en.sources) == SOURCES
    for section in ("statuses", "severities"):  # the reports print the status and severity words as they are
        assert all(k == v for k, v in en.data[section].items()), section


def test_english_confidence_is_the_preamble_of_requirements(en):
    preamble = " ".join((ROOT / "docs" / "REQUIREMENTS.md").read_text(encoding="utf-8").split())
    for level, text in en.data["confidence"].items():
        assert f"**{level}** = {text}" in preamble, level


def test_english_labels_are_the_strings_of_the_reports(en):
    code = "\n".join(p.read_text(encoding="utf-8") for p in
                     (AUDIT / "reports.py", AUDIT / "templates" / "report.html.j2", AUDIT / "runner.py"))
    for key, text in en.labels.items():
        if key in NEW_LABELS:
            continue
        if key in RUNNER_LABELS:
            assert text == RUNNER_LABELS[key], key
            continue
        if re.search(rf"""['"]{re.escape(key)}['"]""", code):
            continue  # the reports print this label from the catalogue (reports.load(lang).label(key))
        for literal in _literals(text):
            assert literal in code, f"label {key}: {literal!r} is no longer in reports.py, report.html.j2 or runner.py"


def test_new_labels_exist(en):
    assert NEW_LABELS <= set(en.labels)


def test_french_is_not_left_in_english(fr, en):
    french, english = _leaves(fr.data), _leaves(en.data)
    assert SAME_IN_BOTH <= set(english)
    same = sorted("/".join(p) for p, v in english.items() if french[p] == v and p not in SAME_IN_BOTH)
    assert not same, f"French text identical to the English: {same}"


ENGLISH_WORDS = re.compile(r"\b(the|and|with|every|never|only|must|should|is|are|not|which|when|without|from|of|to|by)\b",
                           re.IGNORECASE)


def _prose(text: str) -> str:
    """The text without code: backtick spans, URLs, identifiers (dots, underscores, =, $, /, camelCase)."""
    text = re.sub(r"`[^`]*`|https?://\S+", " ", text)
    return " ".join(w for w in text.split() if not re.search(r"[_=$/]|\w\.\w|[a-z][A-Z][a-z]", w))


def test_no_english_words_in_french(fr):
    leftovers = {"/".join(p): m.group(0) for p, v in _leaves(fr.data).items()
                 if p[0] != "lang" and (m := ENGLISH_WORDS.search(_prose(v)))}
    assert not leftovers, leftovers


def _code_tokens(text: str) -> set[str]:
    """What must stay untranslated: backtick spans, URLs, identifiers (a dot inside, _, =, $, camelCase)."""
    tokens = set(re.findall(r"`[^`]*`|https?://[^\s;,]*[^\s;,.]", text))
    for word in re.sub(r"`[^`]*`", " ", text).split():
        word = word.strip("().,;:")
        if re.search(r"[_=$]|\w\.\w|[a-z][A-Z][a-z]", word) and "://" not in word:
            tokens.add(word)
    return tokens


@pytest.mark.parametrize("field", ("title", "remediation", "manual_evidence"))
def test_code_stays_untranslated(fr, en, field):
    missing = {}
    for c in catalogue():
        english, french = en.control(c.id).get(field, ""), fr.control(c.id).get(field, "")
        # a plural of a FHIR resource name is singular in French (les AuditEvent)
        lost = sorted(t for t in _code_tokens(english) if t not in french and t.removesuffix("s") not in french)
        if lost:
            missing[c.id] = lost
    assert not missing, missing


def test_label_fields_are_the_same_in_both_languages(fr, en):
    for key, text in en.labels.items():
        assert _fields(fr.label(key)) == _fields(text), key
        dummy = {name: "x" for name in _fields(text)}
        assert fr.label(key, **dummy) if dummy else fr.label(key)


def test_keys_match_the_model(fr, en):
    for cat in (fr, en):
        assert list(cat.families) == list(FAMILIES)
        assert list(cat.frameworks) == list(FRAMEWORKS)
        assert set(cat.sources) == set(SOURCES)
        assert list(cat.data["statuses"]) == list(get_args(ControlStatus))
        assert list(cat.data["severities"]) == list(get_args(Severity))
        assert list(cat.data["confidence"]) == ["P", "S", "D"]
        assert list(cat.data["legend"]) == list(cat.data["statuses"])


def test_french_status_words(fr):
    assert [fr.status(s) for s in ("pass", "fail", "waived", "not-applicable", "declared", "manual: missing",
                                   "manual: evidence recorded")] == \
        ["conforme", "non conforme", "dérogé", "sans objet", "déclaré", "preuve manuelle : manquante",
         "preuve manuelle : enregistrée"]


def test_french_uses_french_quotes(fr):
    assert not [p for p, v in _leaves(fr.data).items() if '"' in v]


@pytest.mark.parametrize("lang", ["de", "FR", "", "fr_FR"])
def test_unknown_language_is_refused(lang):
    with pytest.raises(I18nError, match="unknown report language .*choose one of fr, en"):
        load(lang)
    with pytest.raises(ValueError):
        load(lang)


def test_loader(fr, en):
    assert LANGS == ("fr", "en")
    assert load("fr") is fr and load() is fr  # read once; French by default
    assert fr.lang == "fr" and en.lang == "en"
    assert fr.title("TLS-01").startswith("TLS 1.2")
    assert fr.manual_evidence("TLS-01") == "" and fr.manual_evidence("HDS-03")
    assert fr.status("waived") == "dérogé" and fr.severity("critical") == "critique"
    assert fr.family("TRACE") == "Traçabilité" and fr.framework("hds") == "Hébergement de données de santé (HDS)"
    assert fr.confidence("D") and fr.legend("manual: missing") and fr.source("hds")
    assert en.label("objects_count", count=12) == "12 objects"
    assert fr.label("objects_count", count=12) == "12 objets"
    assert fr.label("remediation") == "Mesure corrective"
    with pytest.raises(I18nError, match="fr.yaml: no controls entry 'NOPE-01'"):
        fr.title("NOPE-01")
    with pytest.raises(I18nError, match="no labels entry"):
        fr.label("no-such-label")
    with pytest.raises(I18nError, match="needs the field 'count'"):
        fr.label("objects_count", other=1)
    with pytest.raises(TypeError):
        fr.data["labels"]["target"] = "x"  # type: ignore[index]


def test_files_are_package_data():
    for lang in LANGS:
        assert resources.files("socle.audit.i18n").joinpath(f"{lang}.yaml").is_file()

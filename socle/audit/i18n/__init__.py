"""The text of the audit catalogue and reports in French (the default for assessors) and English, as data.

`fr.yaml` and `en.yaml` hold, under the same keys, the title, remediation and manual evidence of every control, the
names of families, frameworks and sources, the status, severity and confidence words, the status legend and the
fixed labels of the reports. `en.yaml` is the text of the code today, so English reports stay byte-identical.

    cat = load("fr")
    cat.title("TLS-01"), cat.status("waived"), cat.label("objects_count", count=12)

Files are read once per language (yaml.safe_load) through importlib.resources, as package data of this package.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

import yaml

LANGS: tuple[str, ...] = ("fr", "en")
DEFAULT_LANG = "fr"
SECTIONS: tuple[str, ...] = ("controls", "families", "frameworks", "sources", "statuses", "severities", "confidence",
                             "legend", "labels")
CONTROL_FIELDS: tuple[str, ...] = ("title", "remediation", "manual_evidence")


class I18nError(LookupError, ValueError):
    """An unknown language, or a key the language file does not have (one sentence, names the file)."""


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    return value


@dataclass(frozen=True)
class Catalogue:
    """The text of one language. Lookups raise I18nError naming the file and the missing key."""

    lang: str
    data: Mapping[str, Any] = field(repr=False)

    @property
    def file(self) -> str:
        return f"socle/audit/i18n/{self.lang}.yaml"

    def _get(self, section: str, key: str) -> Any:
        try:
            return self.data[section][key]
        except KeyError:
            raise I18nError(f"{self.file}: no {section} entry {key!r}") from None

    # --- controls -----------------------------------------------------------------------------------------------
    def control(self, control_id: str) -> Mapping[str, str]:
        return self._get("controls", control_id)

    def title(self, control_id: str) -> str:
        return self.control(control_id)["title"]

    def remediation(self, control_id: str) -> str:
        return self.control(control_id)["remediation"]

    def manual_evidence(self, control_id: str) -> str:
        """"" for a control with a check (as Control.manual_evidence)."""
        return self.control(control_id).get("manual_evidence", "")

    # --- names and words ----------------------------------------------------------------------------------------
    def family(self, code: str) -> str:
        return self._get("families", code)

    def framework(self, key: str) -> str:
        return self._get("frameworks", key)

    def source(self, key: str) -> str:
        return self._get("sources", key)

    def status(self, status: str) -> str:
        return self._get("statuses", status)

    def severity(self, severity: str) -> str:
        return self._get("severities", severity)

    def confidence(self, level: str) -> str:
        """What a confidence level (P, S, D) of REQUIREMENTS.md means."""
        return self._get("confidence", level)

    def legend(self, status: str) -> str:
        """One line explaining a status, for the legend of a report."""
        return self._get("legend", status)

    def label(self, key: str, /, **fields: Any) -> str:
        """A fixed string of the reports; with fields, formatted (`label("objects_count", count=3)`)."""
        text = self._get("labels", key)
        if not fields:
            return text
        try:
            return text.format(**fields)
        except (KeyError, IndexError) as e:
            raise I18nError(f"{self.file}: label {key!r} needs the field {e.args[0]!r}") from None

    # --- whole sections, in file order (display order) ----------------------------------------------------------
    @property
    def families(self) -> Mapping[str, str]:
        return self.data["families"]

    @property
    def frameworks(self) -> Mapping[str, str]:
        return self.data["frameworks"]

    @property
    def sources(self) -> Mapping[str, str]:
        return self.data["sources"]

    @property
    def labels(self) -> Mapping[str, str]:
        return self.data["labels"]


def _read(lang: str) -> dict[str, Any]:
    name = f"{lang}.yaml"
    try:
        text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise I18nError(f"{__package__}: {name} is not installed (package data of socle.audit.i18n)") from None
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or data.get("lang") != lang:
        raise I18nError(f"socle/audit/i18n/{name}: not a {lang!r} language file (top-level `lang: {lang}` missing)")
    missing = [s for s in SECTIONS if not isinstance(data.get(s), dict)]
    if missing:
        raise I18nError(f"socle/audit/i18n/{name}: missing section(s) {', '.join(missing)}")
    return data


def load(lang: str = DEFAULT_LANG) -> Catalogue:
    """The text of `lang` ("fr" or "en"), read once."""
    if lang not in LANGS:
        raise I18nError(f"unknown report language {lang!r}: choose one of {', '.join(LANGS)}")
    return _load(lang)


@lru_cache(maxsize=None)
def _load(lang: str) -> Catalogue:
    return Catalogue(lang, _freeze(_read(lang)))

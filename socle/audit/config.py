"""The `socle:audit` section of a stack file: waivers and references to manual evidence.

    socle:audit:
      evidence:
        HDS-03: {reference: "HDS certificate n° ..., activities 1-6, valid until 2028-03-31", owner: rssi@..., date: "2026-09-01"}
      waivers:
        - control: K8S-01
          objects: [Namespace/chdemo-mss]
          justification: Postfix's master process must start as root ...
          owner: rssi@chdemo.test
          approved: "2026-11-27"
          expires: "2027-11-27"

A waiver is bounded: it names the objects it covers (`Kind/name` or `Kind/namespace/name`; the only wildcard is a
ConfigMap's content-hash suffix, `ConfigMap/namespace/name-*`), it has an owner and a justification of some length,
and it expires at most 12 months after its approval.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from .model import ObjRef



_GO_MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2}) 00:00:00 \+0000 UTC$")


def _day(value: Any) -> Any:
    """A calendar day: a YAML date, "YYYY-MM-DD", or what the Pulumi CLI writes back for a YAML date when it saves a
    stack file (Go's "2026-11-27 00:00:00 +0000 UTC"): the same day, not an error. Write dates quoted to keep them
    as written."""
    if isinstance(value, str) and (m := _GO_MIDNIGHT.match(value.strip())):
        return m.group(1)
    return value


Day = Annotated[dt.date, BeforeValidator(_day)]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_WAIVER_MONTHS = 12
OWNER_MIN = 3  # non-space characters
JUSTIFICATION_MIN = 20  # non-space characters
_GLOB = set("*?[]")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
_HASH_SUFFIX = "-*"
_HASH = "[0-9a-z]+"  # a content hash: one token, no '-' (postfix-* never names postfix-log-forwarder-<hash>)


def _solid(text: str) -> int:
    """Characters that are not white space."""
    return len("".join(text.split()))


def object_problem(text: str) -> str | None:
    """Why `text` does not name objects a waiver may cover, or None."""
    try:
        ref = ObjRef.parse(text)
    except ValueError as exc:
        return str(exc)
    if text.strip() != text or any(c.isspace() for c in text):
        return f"object reference {text!r} must not contain white space"
    if _GLOB & set(ref.kind + ref.namespace):
        return (f"object reference {text!r}: a waiver names its objects; no wildcard in the kind or the namespace "
                f"(the only wildcard is a ConfigMap's content-hash suffix, ConfigMap/namespace/name-*)")
    if not _KIND.fullmatch(ref.kind):
        return f"object reference {text!r}: the kind must be written as Kubernetes spells it (e.g. ConfigMap, Namespace)"
    if _GLOB & set(ref.name):
        stem = ref.name[:-len(_HASH_SUFFIX)]
        if not (ref.kind == "ConfigMap" and ref.namespace and ref.name.endswith(_HASH_SUFFIX) and stem
                and not _GLOB & set(stem)):
            return (f"object reference {text!r}: the only wildcard is a ConfigMap's content-hash suffix "
                    f"(ConfigMap/namespace/name-*)")
    return None


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later (the last day of the month when that day does not exist)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in range(day.day, 27, -1):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    return dt.date(year, month, day.day)


class EvidenceRef(_Strict):
    """Manual evidence, typed: what the document is, who answers for it, its date, how long it holds, and the
    document itself (where it is kept and its SHA-256), so that the auditor can check it is the one recorded."""

    reference: str = Field(min_length=3, description="Where the auditor finds the document (register entry, certificate number…)")
    owner: str = Field(min_length=1, description="Who answers for it")
    date: Day = Field(description="The date of the evidence: the test run, the certificate issued, the review made")
    valid_until: Day | None = Field(default=None, description="When the document stops holding (a certificate's "
                                                                   "expiry); required by controls whose document expires")
    document: str | None = Field(default=None, description="The document itself: a path or URL of the file kept as evidence")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                               description="SHA-256 of the document (64 lower-case hex digits)")

    @field_validator("reference", "owner")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("valid_until")
    @classmethod
    def _after_date(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        day = info.data.get("date")
        if value is not None and day is not None and value < day:
            raise ValueError(f"{value} is before the evidence's date ({day})")
        return value

    @field_validator("sha256")
    @classmethod
    def _with_document(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("document"):
            raise ValueError("a SHA-256 is the hash of a document: name the document too (document)")
        return value

    def problems(self, today: dt.date, max_age_days: int | None = None, needs_validity: bool = False) -> list[str]:
        """Why this evidence does not hold on `today` (empty: it does)."""
        out = []
        if self.date > today:
            out.append(f"dated {self.date}, after the day judged ({today})")
        elif max_age_days is not None and (today - self.date).days > max_age_days:
            out.append(f"dated {self.date}: {(today - self.date).days} days old on {today}, "
                       f"more than the {max_age_days} days allowed")
        if self.valid_until is not None and self.valid_until < today:
            out.append(f"expired on {self.valid_until}")
        elif needs_validity and self.valid_until is None:
            out.append("no valid_until: the document expires, its expiry date must be recorded")
        return out

    def document_check(self, base_dir: Path | None) -> tuple[bool | None, str]:
        """Whether the recorded document is the one hashed: (True, how) when a local file hashes to `sha256`,
        (False, why) when it does not or cannot be read, (None, why) when the audit cannot fetch it (a URL, no
        hash recorded, no stack folder to resolve it from): the auditor checks it."""
        if not self.document or not self.sha256:
            return None, "no document and SHA-256 recorded: the auditor checks the reference"
        if re.match(r"^[a-z][a-z0-9+.-]*://", self.document):
            return None, f"document {self.document} is not local: the auditor checks its SHA-256"
        if base_dir is None:
            return None, "no stack folder to find the document from: the auditor checks its SHA-256"
        path = (base_dir / self.document)
        try:
            with path.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            return False, f"document {self.document} cannot be read ({exc.strerror or exc})"
        if digest != self.sha256:
            return False, f"document {self.document} has SHA-256 {digest}, not the {self.sha256} recorded"
        return True, f"document {self.document} read: its SHA-256 is the one recorded"

    def describe(self) -> str:
        extra = [f"valid until {self.valid_until}"] if self.valid_until else []
        extra += [f"document {self.document}"] if self.document else []
        extra += [f"sha256 {self.sha256}"] if self.sha256 else []
        return "; ".join(extra)


class Waiver(_Strict):
    control: str = Field(pattern=r"^[A-Z0-9]+-[0-9]{2}$")
    objects: list[str] = Field(min_length=1, description="Kind/name or Kind/namespace/name of each waived object; "
                                                         "`*` only as a ConfigMap's content-hash suffix (ConfigMap/ns/postfix-*)")
    justification: str = Field(description=f"Why the rule cannot be met and what compensates (≥ {JUSTIFICATION_MIN} "
                                           "non-space characters)")
    owner: str = Field(description=f"Who answers for the exception (≥ {OWNER_MIN} non-space characters)")
    approved: Day = Field(description="When the exception was approved")
    expires: Day = Field(description=f"At most {MAX_WAIVER_MONTHS} months after the approval")

    @field_validator("objects")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        problems = [p for p in (object_problem(item) for item in value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("justification")
    @classmethod
    def _justified(cls, value: str) -> str:
        if _solid(value) < JUSTIFICATION_MIN:
            raise ValueError(f"must say why the rule cannot be met and what compensates "
                             f"(at least {JUSTIFICATION_MIN} characters other than spaces)")
        return value

    @field_validator("owner")
    @classmethod
    def _owned(cls, value: str) -> str:
        if _solid(value) < OWNER_MIN:
            raise ValueError(f"must name who answers for the exception (at least {OWNER_MIN} characters other than spaces)")
        return value

    @field_validator("expires")
    @classmethod
    def _bounded(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        approved = info.data.get("approved")
        if approved is None:
            return value  # approved itself is reported
        if value < approved:
            raise ValueError(f"{value} is before the approval ({approved})")
        limit = add_months(approved, MAX_WAIVER_MONTHS)
        if value > limit:
            raise ValueError(f"{value} is more than {MAX_WAIVER_MONTHS} months after the approval ({approved}): "
                             f"at most {limit}, then review and approve the waiver again")
        return value

    def matching(self, ref: ObjRef) -> str | None:
        """The object pattern of this waiver that names `ref`, if any."""
        text = str(ref)
        for o in self.objects:
            if o == text:
                return o
            if o.endswith(_HASH_SUFFIX) and ref.kind == "ConfigMap" and re.fullmatch(re.escape(o[:-1]) + _HASH, text):
                return o
        return None

    def expired(self, today: dt.date) -> bool:
        return self.expires < today


class AuditConfig(_Strict):
    evidence: dict[str, EvidenceRef] = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)
    # Not part of the stack file's section: the kit's namespaces (name -> block) the stack's inventory names, set
    # when the stack is loaded, so that an audit with a stack knows what the evidence must hold.
    _namespaces: dict[str, str] = PrivateAttr(default_factory=dict)
    # The folder of the stack file: local evidence documents are found from there and their SHA-256 checked.
    _base_dir: Path | None = PrivateAttr(default=None)

    def with_namespaces(self, namespaces: dict[str, str]) -> "AuditConfig":
        self._namespaces = dict(namespaces)
        return self

    def with_base_dir(self, base_dir: Path) -> "AuditConfig":
        self._base_dir = base_dir
        return self

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir


def reference_problems(cfg: AuditConfig | dict) -> list[tuple[str, str]]:
    """(key path, message) for evidence and waivers naming unknown or unsuitable requirement IDs.

    Takes the validated section or, when its shapes are wrong, the raw mapping: every problem is reported at once."""
    from .controls import by_id

    controls = by_id()
    if isinstance(cfg, AuditConfig):
        evidence: list = list(cfg.evidence)
        waivers: list = [w.control for w in cfg.waivers]
    else:
        evidence = list(cfg.get("evidence") or {}) if isinstance(cfg.get("evidence"), dict) else []
        raw = cfg.get("waivers") if isinstance(cfg.get("waivers"), list) else []
        waivers = [w.get("control") if isinstance(w, dict) else None for w in raw]
    problems = []
    for key in evidence:
        if key not in controls:
            problems.append((f"evidence.{key}", "unknown requirement ID"))
        elif not controls[key].manual:
            problems.append((f"evidence.{key}", "this control is checked on objects; evidence references are for manual controls"))
    for i, control in enumerate(waivers):
        if not isinstance(control, str) or not re.fullmatch(r"[A-Z0-9]+-[0-9]{2}", control):
            continue  # its shape is reported by the model
        if control not in controls:
            problems.append((f"waivers[{i}].control", f"unknown requirement ID {control}"))
        elif controls[control].manual:
            problems.append((f"waivers[{i}].control", f"{control} is a manual control; record its evidence instead"))
    return problems

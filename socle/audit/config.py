"""The `socle:audit` section of a stack file: waivers and references to manual evidence.

    socle:audit:
      evidence:
        HDS-03: {reference: "HDS certificate n° ..., activities 1-6, valid until 2028-03-31", owner: rssi@..., date: 2026-09-01}
      waivers:
        - control: K8S-01
          objects: [Namespace/chdemo-mss]
          justification: Postfix's master process must start as root ...
          owner: rssi@chdemo.test
          expires: 2027-11-30
"""
from __future__ import annotations

import datetime as dt
import fnmatch

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .model import ObjRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvidenceRef(_Strict):
    reference: str = Field(min_length=3, description="Where the auditor finds the document (register entry, certificate number…)")
    owner: str = Field(min_length=1, description="Who answers for it")
    date: dt.date = Field(description="When the evidence was recorded or last reviewed")


class Waiver(_Strict):
    control: str = Field(pattern=r"^[A-Z0-9]+-[0-9]{2}$")
    objects: list[str] = Field(min_length=1, description="Kind/name or Kind/namespace/name of each waived object; "
                                                         "`*` matches a ConfigMap's content hash (postfix-*)")
    justification: str = Field(min_length=20, description="Why the rule cannot be met and what compensates")
    owner: str = Field(min_length=1)
    expires: dt.date

    @field_validator("objects")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        for item in value:
            ObjRef.parse(item)
        return value

    def matching(self, ref: ObjRef) -> str | None:
        """The object pattern of this waiver that names `ref`, if any."""
        return next((o for o in self.objects if fnmatch.fnmatchcase(str(ref), o)), None)

    def expired(self, today: dt.date) -> bool:
        return self.expires < today


class AuditConfig(_Strict):
    evidence: dict[str, EvidenceRef] = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)


def reference_problems(cfg: AuditConfig) -> list[tuple[str, str]]:
    """(key path, message) for evidence and waivers naming unknown or unsuitable requirement IDs."""
    from .controls import by_id

    controls = by_id()
    problems = []
    for key in cfg.evidence:
        if key not in controls:
            problems.append((f"evidence.{key}", "unknown requirement ID"))
        elif not controls[key].manual:
            problems.append((f"evidence.{key}", "this control is checked on objects; evidence references are for manual controls"))
    for i, w in enumerate(cfg.waivers):
        if w.control not in controls:
            problems.append((f"waivers[{i}].control", f"unknown requirement ID {w.control}"))
        elif controls[w.control].manual:
            problems.append((f"waivers[{i}].control", f"{w.control} is a manual control; record its evidence instead"))
    return problems

"""Parameter model of the `etablissement` (hospital) blueprint, version 1: one établissement's cell on a platform of
its own. Its groups, types and refusals are shared with the other blueprints (socle/blueprints/shared): every field has a
default that is safe for the `dev` profile; `production_refusals` lists what the production profile refuses, each
message starting with the requirement ID it protects."""
from __future__ import annotations

from socle.blueprints.shared.groups import BLOCKS, CellParams, Images, Relay
from socle.blueprints.shared.refusals import advisories, production_refusals

VERSION = "1.0.0"


class Params(CellParams):
    """The hospital blueprint's parameters (`socle:params` of its stack files)."""


__all__ = ["BLOCKS", "VERSION", "Images", "Params", "Relay", "advisories", "production_refusals"]

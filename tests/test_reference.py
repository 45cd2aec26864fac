"""docs/parameters.md is the blueprints' parameter models as they are, and every parameter is described."""
from __future__ import annotations

from socle import reference
from socle.blueprints import registry


def test_the_parameter_reference_is_current():
    assert reference.PAGE.read_text(encoding="utf-8") == reference.page(), f"run {reference.REGENERATE}"


def test_every_parameter_of_every_blueprint_has_a_description():
    undescribed = [(bp.name, path) for bp in registry().values() for path, _, _, desc in reference.rows(bp.model)
                   if not desc]
    assert undescribed == []


def test_the_reference_names_what_a_user_writes():
    text = reference.page()
    for row in ("| `gateway.apis[*].sensitivity` | one of: public, restricted, sensitive |",
                "| `tenants.<key>.tier` | one of: shared, dedicated | `\"shared\"` |",
                "| `organisation.finess` | str | **required** |"):
        assert row in text, row
    assert "0x" not in text  # nothing of the interpreter's memory: the page is the same on every machine

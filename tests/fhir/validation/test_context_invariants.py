"""An extension's contextInvariant (R4: FHIRPath on the element it sits on, %extension being
the extension) must hold: an extension allowed on a Questionnaire item in general may still
be wrong for this item."""

from __future__ import annotations

import pytest

from socle.fhir.validation import get_validator

SD = "http://hl7.org/fhir/StructureDefinition/"


def _questionnaire(item: dict) -> dict:
    return {"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", **item}]}


def _errors(resource: dict) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (i.diagnostics or "", i.expression)
        for i in get_validator().validate(resource)
        if i.severity == "error"
    ]


UNIT = {
    "url": SD + "questionnaire-unit",
    "valueCoding": {"system": "http://unitsofmeasure.org", "code": "kg"},
}


@pytest.mark.parametrize("item_type", ["decimal", "integer"])
def test_a_unit_on_a_number_item_is_fine(item_type):
    assert _errors(_questionnaire({"type": item_type, "text": "Poids", "extension": [UNIT]})) == []


def test_a_unit_on_a_text_item_breaks_the_context_invariant():
    [(message, where)] = _errors(
        _questionnaire({"type": "string", "text": "Poids", "extension": [UNIT]})
    )
    assert "questionnaire-unit" in message and "type='integer' or type='decimal'" in message
    assert where == ("Questionnaire.item[0].extension[0].url",)


@pytest.mark.parametrize(
    ("required", "min_occurs", "holds"),
    [(True, 2, True), (False, 0, True), (False, 2, False)],
)
def test_an_invariant_reading_the_extension_itself(required, min_occurs, holds):
    """questionnaire-minOccurs: `required=true or %extension.valueInteger=0`."""
    extension = {"url": SD + "questionnaire-minOccurs", "valueInteger": min_occurs}
    item = {"type": "string", "text": "Nom", "required": required, "extension": [extension]}
    assert (_errors(_questionnaire(item)) == []) is holds


def test_list_change_base_only_on_a_change_list():
    base = {"url": SD + "list-changeBase", "valueReference": {"reference": "List/1"}}
    changes = {"resourceType": "List", "status": "current", "mode": "changes", "extension": [base]}
    assert _errors(changes) == []
    assert _errors({**changes, "mode": "snapshot"})

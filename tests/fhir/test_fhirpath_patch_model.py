"""FHIRPath Patch on a list against a Python list model: random insert, move, delete and
replace sequences, with primitive extensions that must stay with their values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.fhir.outcome import FhirError
from socle.fhir.patch import apply_fhirpath_patch

from .helpers import create, patch_operation, patient

PATH = "Patient.name[0].given"
EXT = "https://socle.example.org/fhir/StructureDefinition/test-note"

# (kind, first integer, second integer, noted): what each integer means depends on the kind
steps = st.tuples(
    st.sampled_from(["insert", "move", "delete", "replace"]),
    st.integers(-1, 7),
    st.integers(-1, 7),
    st.booleans(),
)


def note(text: str) -> dict[str, Any]:
    return {"extension": [{"url": EXT, "valueString": text}]}


def as_operation(step: tuple[str, int, int, bool], label: str) -> dict[str, Any]:
    kind, first, second, noted = step
    value = {"valueString": label, **({"_valueString": note(label)} if noted else {})}
    if kind == "insert":
        return patch_operation(kind, PATH, index=first, value=value)
    if kind == "move":
        return patch_operation(kind, PATH, source=first, destination=second)
    if kind == "delete":
        return (
            patch_operation(kind, f"{PATH}[{first}]") if first >= 0 else patch_operation(kind, PATH)
        )
    return patch_operation(kind, f"{PATH}[{max(first, 0)}]", value=value)


def model_apply(
    model: list[tuple[str, bool]], step: tuple[str, int, int, bool], label: str
) -> bool:
    """Applies `step` to the model; False when the patch must refuse it (and nothing changes)."""
    kind, first, second, noted = step
    size = len(model)
    if kind == "insert":
        if not 0 <= first <= size:
            return False
        model.insert(first, (label, noted))
    elif kind == "move":
        if not (0 <= first < size and 0 <= second < size):
            return False
        model.insert(second, model.pop(first))
    elif kind == "delete":
        if first < 0:  # the whole list: one element is deleted, none is nothing, more refused
            if size > 1:
                return False
            model.clear()
        elif first < size:
            del model[first]
    else:
        if max(first, 0) >= size:
            return False
        model[max(first, 0)] = (label, noted)
    return True


def expected(model: list[tuple[str, bool]]) -> dict[str, Any]:
    name: dict[str, Any] = {"family": "L"}
    if model:
        name["given"] = [label for label, _ in model]
    if any(noted for _, noted in model):
        name["_given"] = [note(label) if noted else None for label, noted in model]
    return name


def start(model: list[tuple[str, bool]]) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p", "name": [expected(model)]}


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=12))
def test_list_operations_agree_with_a_list_model(sequence):
    model = [("a", False), ("b", True), ("c", False)]
    resource = start(model)
    for n, step in enumerate(sequence):
        label = f"v{n}"
        allowed = model_apply(model, step, label)
        parameters = {"resourceType": "Parameters", "parameter": [as_operation(step, label)]}
        if allowed:
            resource = apply_fhirpath_patch(resource, parameters)
        else:
            with pytest.raises(FhirError) as refused:
                apply_fhirpath_patch(resource, parameters)
            assert refused.value.status == 422
            assert refused.value.issues[0].expression[0].startswith("Parameters.parameter[0]")
        assert resource["name"] == [expected(model)]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(steps, min_size=1, max_size=6))
def test_one_patch_of_many_list_operations_over_http(client, sequence):
    """All the operations in one PATCH: the model's result, or a 422 at the first refused one
    with nothing written."""
    model = [("a", False), ("b", True), ("c", False)]
    body = patient(name=[expected(model)])
    url = f"/Patient/{create(client, body)['id']}"
    refused_at = None
    for n, step in enumerate(sequence):
        if not model_apply(model, step, f"v{n}"):
            refused_at = n
            break
    operations = [as_operation(step, f"v{n}") for n, step in enumerate(sequence)]
    r = client.patch(url, json={"resourceType": "Parameters", "parameter": operations})
    if refused_at is None:
        assert r.status_code == 200, r.text
        assert r.json()["name"] == [expected(model)]
    else:
        assert r.status_code == 422, r.text
        located = r.json()["issue"][0]["expression"][0]
        assert located.startswith(f"Parameters.parameter[{refused_at}]"), located
        assert client.get(url).json()["meta"]["versionId"] == "1"

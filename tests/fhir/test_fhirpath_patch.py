"""FHIRPath Patch over HTTP: each operation type, list edges, extensions, and refusals located
at the part at fault."""

from __future__ import annotations

from typing import Any

import httpx

from .helpers import assert_outcome, create, observation, patch_operation, patient

EXT = "https://socle.example.org/fhir/StructureDefinition/test-note"


def send(client: httpx.Client, url: str, *operations: dict[str, Any]) -> httpx.Response:
    return client.patch(url, json={"resourceType": "Parameters", "parameter": list(operations)})


def patched(client: httpx.Client, url: str, *operations: dict[str, Any]) -> dict[str, Any]:
    r = send(client, url, *operations)
    assert r.status_code == 200, r.text
    return r.json()


def given_names(client: httpx.Client, *names: str) -> str:
    return f"/Patient/{create(client, patient(name=[{'family': 'L', 'given': list(names)}]))['id']}"


# add


def test_add_appends_to_a_repeating_element_and_sets_a_single_one(client):
    url = f"/Patient/{create(client, patient())['id']}"
    body = patched(
        client,
        url,
        patch_operation(
            "add", "Patient", name="identifier", value={"valueIdentifier": {"value": "2"}}
        ),
        patch_operation("add", "Patient", name="active", value={"valueBoolean": False}),
        patch_operation("add", "Patient.name[0]", name="given", value={"valueString": "Zoé"}),
    )
    assert body["identifier"][-1] == {"value": "2"} and len(body["identifier"]) == 2
    assert body["active"] is False
    assert body["name"][0]["given"] == ["Hélène", "Marie", "Zoé"]


def test_add_of_a_single_element_already_there_is_refused(client):
    url = f"/Patient/{create(client, patient())['id']}"
    r = send(
        client,
        url,
        patch_operation("add", "Patient", name="active", value={"valueBoolean": True}),
        patch_operation("add", "Patient", name="gender", value={"valueCode": "male"}),
    )
    assert_outcome(r, 422, expression="Parameters.parameter[1].part[2]")
    assert client.get(url).json()["meta"]["versionId"] == "1"


def test_add_builds_a_backbone_element_from_parts_and_a_choice_from_its_type(client):
    url = f"/Patient/{create(client, patient())['id']}"
    contact = {
        "part": [
            {"name": "name", "valueHumanName": {"family": "Proche"}},
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "0102"}},
        ]
    }
    body = patched(
        client,
        url,
        patch_operation("add", "Patient", name="contact", value=contact),
        patch_operation("add", "Patient", name="deceased", value={"valueBoolean": False}),
    )
    assert body["contact"] == [
        {"name": {"family": "Proche"}, "telecom": [{"system": "phone", "value": "0102"}]}
    ]
    assert body["deceasedBoolean"] is False


def test_add_a_choice_by_its_typed_name(client):
    url = f"/Patient/{create(client, patient())['id']}"
    typed = patch_operation("add", "Patient", name="deceasedBoolean", value={"valueBoolean": True})
    assert patched(client, url, typed)["deceasedBoolean"] is True
    url = f"/Patient/{create(client, patient())['id']}"
    other = patch_operation("add", "Patient", name="deceasedDateTime", value={"valueBoolean": True})
    assert_outcome(send(client, url, other), 422, expression="Parameters.parameter[0].part[3]")


def test_add_an_extension_to_a_primitive_and_a_nested_one(client):
    url = f"/Patient/{create(client, patient())['id']}"
    extension = {"part": [{"name": "url", "valueUri": EXT}, {"name": "value", "valueCode": "c"}]}
    outer = {"part": [{"name": "url", "valueUri": EXT}]}
    inner = {"part": [{"name": "url", "valueUri": "part"}, {"name": "value", "valueString": "i"}]}
    body = patched(
        client,
        url,
        patch_operation("add", "Patient.birthDate", name="extension", value=extension),
        patch_operation("add", "Patient.name[0].given[1]", name="extension", value=extension),
        patch_operation("add", "Patient", name="extension", value=outer),
        patch_operation("add", f"Patient.extension('{EXT}')", name="extension", value=inner),
    )
    assert body["birthDate"] == "1980-02-29"
    assert body["_birthDate"] == {"extension": [{"url": EXT, "valueCode": "c"}]}
    assert body["name"][0]["_given"] == [None, {"extension": [{"url": EXT, "valueCode": "c"}]}]
    assert body["extension"] == [{"url": EXT, "extension": [{"url": "part", "valueString": "i"}]}]


# insert


def test_insert_first_last_and_into_an_empty_list(client):
    url = given_names(client, "b", "c")
    body = patched(
        client,
        url,
        patch_operation("insert", "Patient.name[0].given", index=0, value={"valueString": "a"}),
        patch_operation("insert", "Patient.name[0].given", index=3, value={"valueString": "d"}),
        patch_operation(
            "insert",
            "Patient.telecom",
            index=0,
            value={"valueContactPoint": {"system": "phone", "value": "1"}},
        ),
    )
    assert body["name"][0]["given"] == ["a", "b", "c", "d"]
    assert body["telecom"] == [{"system": "phone", "value": "1"}]


def test_insert_out_of_range_is_refused_at_the_index(client):
    url = given_names(client, "b", "c")
    beyond = patch_operation("insert", "Patient.name[0].given", index=3, value={"valueString": "x"})
    assert_outcome(send(client, url, beyond), 422, expression="Parameters.parameter[0].part[2]")
    negative = patch_operation(
        "insert", "Patient.name[0].given", index=-1, value={"valueString": "x"}
    )
    fine = patch_operation("insert", "Patient.name[0].given", index=0, value={"valueString": "x"})
    r = send(client, url, fine, negative)
    assert_outcome(r, 422, expression="Parameters.parameter[1].part[2]")
    assert client.get(url).json()["name"][0]["given"] == ["b", "c"]


def test_insert_keeps_primitive_extensions_with_their_values(client):
    url = given_names(client, "a", "b")
    note = {"extension": [{"url": EXT, "valueString": "n"}]}
    body = patched(
        client,
        url,
        patch_operation(
            "insert",
            "Patient.name[0].given",
            index=1,
            value={"valueString": "x", "_valueString": note},
        ),
        patch_operation("insert", "Patient.name[0].given", index=0, value={"valueString": "0"}),
    )
    assert body["name"][0]["given"] == ["0", "a", "x", "b"]
    assert body["name"][0]["_given"] == [None, None, note, None]


# delete


def test_delete_one_element_first_and_last_of_a_list(client):
    url = given_names(client, "a", "b", "c", "d")
    body = patched(
        client,
        url,
        patch_operation("delete", "Patient.name[0].given.first()"),
        patch_operation("delete", "Patient.name[0].given.last()"),
        patch_operation("delete", "Patient.gender"),
    )
    assert body["name"][0]["given"] == ["b", "c"] and "gender" not in body


def test_delete_of_nothing_changes_nothing(client):
    url = f"/Patient/{create(client, patient())['id']}"
    body = patched(
        client,
        url,
        patch_operation("delete", "Patient.telecom"),
        patch_operation("delete", "Patient.identifier.where(system='urn:nowhere')"),
    )
    assert body["meta"]["versionId"] == "1"


def test_delete_of_several_elements_is_refused(client):
    url = given_names(client, "a", "b")
    r = send(client, url, patch_operation("delete", "Patient.name[0].given"))
    assert_outcome(r, 422, expression="Parameters.parameter[0].part[1]")


def test_delete_a_primitive_with_its_extensions_and_a_nested_extension(client):
    body = patient(
        birthDate="1980-02-29",
        _birthDate={"extension": [{"url": EXT, "valueCode": "c"}]},
        extension=[
            {
                "url": EXT,
                "extension": [
                    {"url": "keep", "valueString": "k"},
                    {"url": "drop", "valueString": "d"},
                ],
            }
        ],
    )
    url = f"/Patient/{create(client, body)['id']}"
    result = patched(
        client,
        url,
        patch_operation("delete", "Patient.birthDate"),
        patch_operation("delete", f"Patient.extension('{EXT}').extension('drop')"),
    )
    assert "birthDate" not in result and "_birthDate" not in result
    assert result["extension"] == [{"url": EXT, "extension": [{"url": "keep", "valueString": "k"}]}]


def test_delete_of_the_resource_itself_is_refused(client):
    url = f"/Patient/{create(client, patient())['id']}"
    assert_outcome(send(client, url, patch_operation("delete", "Patient")), 422)


# replace


def test_replace_an_item_of_a_list_and_a_primitive_extension_value(client):
    body = patient(
        birthDate="1980-02-29", _birthDate={"extension": [{"url": EXT, "valueCode": "c"}]}
    )
    url = f"/Patient/{create(client, body)['id']}"
    result = patched(
        client,
        url,
        patch_operation("replace", "Patient.name[0].given[1]", value={"valueString": "Maria"}),
        patch_operation("replace", "Patient.birthDate.extension.value", value={"valueCode": "d"}),
    )
    assert result["name"][0]["given"] == ["Hélène", "Maria"]
    assert result["birthDate"] == "1980-02-29"
    assert result["_birthDate"] == {"extension": [{"url": EXT, "valueCode": "d"}]}


def test_replace_a_choice_element_with_another_type(client):
    subject = f"Patient/{create(client, patient())['id']}"
    url = f"/Observation/{create(client, observation(subject))['id']}"
    result = patched(
        client, url, patch_operation("replace", "Observation.value", value={"valueString": "élevé"})
    )
    assert result["valueString"] == "élevé" and "valueQuantity" not in result


def test_replace_the_whole_resource(client):
    pid = create(client, patient())["id"]
    replacement = {"resourceType": "Patient", "id": pid, "active": True}
    result = patched(
        client,
        f"/Patient/{pid}",
        patch_operation("replace", "Patient", value={"resource": replacement}),
    )
    assert result["active"] is True and "name" not in result
    assert result["meta"]["versionId"] == "2"


def test_replace_needs_exactly_one_element(client):
    url = given_names(client, "a", "b")
    none = patch_operation(
        "replace", "Patient.telecom", value={"valueContactPoint": {"system": "phone", "value": "1"}}
    )
    assert_outcome(send(client, url, none), 422, expression="Parameters.parameter[0].part[1]")
    several = patch_operation("replace", "Patient.name.given", value={"valueString": "x"})
    assert_outcome(send(client, url, several), 422, expression="Parameters.parameter[0].part[1]")


def test_the_patched_resource_is_validated_like_an_update(client):
    url = f"/Patient/{create(client, patient())['id']}"
    r = send(
        client, url, patch_operation("replace", "Patient.gender", value={"valueCode": "robot"})
    )
    assert r.status_code in (400, 422), r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["gender"] == "female"


# move


def test_move_first_to_last_last_to_first_and_in_place(client):
    url = given_names(client, "a", "b", "c", "d")
    path = "Patient.name[0].given"
    first_to_last = patched(client, url, patch_operation("move", path, source=0, destination=3))
    assert first_to_last["name"][0]["given"] == ["b", "c", "d", "a"]
    last_to_first = patched(client, url, patch_operation("move", path, source=3, destination=0))
    assert last_to_first["name"][0]["given"] == ["a", "b", "c", "d"]
    in_place = patched(client, url, patch_operation("move", path, source=2, destination=2))
    assert in_place["name"][0]["given"] == ["a", "b", "c", "d"]


def test_move_of_complex_items_and_primitives_with_extensions(client):
    note = {"extension": [{"url": EXT, "valueString": "n"}]}
    body = patient(
        name=[
            {"family": "Un", "given": ["a", "b", "c"], "_given": [note, None, None]},
            {"family": "Deux"},
        ]
    )
    url = f"/Patient/{create(client, body)['id']}"
    result = patched(
        client,
        url,
        patch_operation("move", "Patient.name", source=1, destination=0),
        patch_operation("move", "Patient.name.where(family='Un').given", source=0, destination=2),
    )
    assert [n["family"] for n in result["name"]] == ["Deux", "Un"]
    assert result["name"][1]["given"] == ["b", "c", "a"]
    assert result["name"][1]["_given"] == [None, None, note]


def test_move_out_of_range_is_refused_at_the_index(client):
    url = given_names(client, "a", "b")
    path = "Patient.name[0].given"
    source = send(client, url, patch_operation("move", path, source=2, destination=0))
    assert_outcome(source, 422, expression="Parameters.parameter[0].part[2]")
    destination = send(client, url, patch_operation("move", path, source=0, destination=2))
    assert_outcome(destination, 422, expression="Parameters.parameter[0].part[3]")
    empty = send(client, url, patch_operation("move", "Patient.telecom", source=0, destination=0))
    assert_outcome(empty, 422, expression="Parameters.parameter[0].part[2]")
    assert client.get(url).json()["meta"]["versionId"] == "1"


# the Parameters themselves


def test_malformed_operations_are_400_at_the_part(client):
    url = given_names(client, "a")
    unknown = {"name": "operation", "part": [{"name": "type", "valueCode": "swap"}]}
    assert_outcome(send(client, url, unknown), 400, expression="Parameters.parameter[0].part[0]")
    no_index = patch_operation("insert", "Patient.name[0].given", value={"valueString": "x"})
    assert_outcome(send(client, url, no_index), 400, expression="Parameters.parameter[0]")
    stray = patch_operation("delete", "Patient.gender", index=0)
    assert_outcome(send(client, url, stray), 400, expression="Parameters.parameter[0].part[2]")
    bad_path = patch_operation("delete", "Patient.name.resolve()")
    assert_outcome(send(client, url, bad_path), 400, expression="Parameters.parameter[0].part[1]")
    bad_criteria = patch_operation("delete", "Patient.name.where(family = )")
    r = send(client, url, bad_criteria)
    assert_outcome(r, 400, expression="Parameters.parameter[0].part[1]")
    other_type = patch_operation("delete", "Observation.status")
    assert_outcome(send(client, url, other_type), 400, expression="Parameters.parameter[0].part[1]")


def test_fhirpath_patch_in_a_transaction(client):
    url = given_names(client, "a", "b", "c")
    parameters = {
        "resourceType": "Parameters",
        "parameter": [patch_operation("move", "Patient.name[0].given", source=2, destination=0)],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": parameters, "request": {"method": "PATCH", "url": url[1:]}}],
    }
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    assert client.get(url).json()["name"][0]["given"] == ["c", "a", "b"]
    parameters["parameter"] = [
        patch_operation("move", "Patient.name[0].given", source=0, destination=3)
    ]
    r = client.post("", json=bundle)
    assert_outcome(r, 422, expression="Bundle.entry[0].resource.parameter[0].part[3]")
    assert client.get(url).json()["meta"]["versionId"] == "2"


def test_paths_into_a_contained_resource(client):
    organization = {"resourceType": "Organization", "id": "o", "name": "Avant", "alias": ["a"]}
    body = patient(contained=[organization], managingOrganization={"reference": "#o"})
    url = f"/Patient/{create(client, body)['id']}"
    result = patched(
        client,
        url,
        patch_operation(
            "replace", "Patient.contained.ofType(Organization).name", value={"valueString": "Après"}
        ),
        patch_operation(
            "insert", "Patient.contained.where(id='o').alias", index=0, value={"valueString": "z"}
        ),
    )
    assert result["contained"] == [
        {"resourceType": "Organization", "id": "o", "name": "Après", "alias": ["z", "a"]}
    ]

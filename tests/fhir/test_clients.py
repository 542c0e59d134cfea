"""Socle driven, unmodified, by the Python FHIR clients vendors use: fhirpy and fhirclient."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, ResourceNotFound

from socle.testing import token_for

from .helpers import unique


class _Bearer:
    """fhirclient's hook for signing requests, with a token from the test harness."""

    ready = True

    def __init__(self, token: str) -> None:
        self.token = token

    def can_sign_headers(self) -> bool:
        return True

    def signed_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "Authorization": f"Bearer {self.token}"}


@pytest.fixture()
def fhirpy_client(server):
    return SyncFHIRClient(server.fhir, authorization=f"Bearer {token_for(server)}")


def test_fhirpy_crud_search_and_paging(fhirpy_client):
    family = f"Fhirpy{unique()}"
    for i in range(7):
        p = fhirpy_client.resource(
            "Patient",
            name=[{"family": family, "given": [f"G{i}"]}],
            gender="female",
            birthDate=f"198{i}-01-01",
        )
        p.save()
        assert p.id and p.meta.versionId == "1"
    search = fhirpy_client.resources("Patient").search(family=family)
    assert search.count() == 7
    everyone = list(search.limit(3))  # follows next links (they must be on our base URL)
    assert len(everyone) == 7
    first = search.sort("birthdate").first()
    assert first.birthDate == "1980-01-01"
    first.gender = "male"
    first.save()
    assert fhirpy_client.resources("Patient").search(_id=first.id).get().gender == "male"
    # merge-style PATCH, as fhirpy sends it
    patched = fhirpy_client.resources("Patient").search(_id=first.id).patch(active=True)
    assert patched.active is True and patched.meta.versionId == "3"
    fhirpy_client.resource("Patient", id=first.id).delete()
    with pytest.raises(ResourceNotFound):
        fhirpy_client.reference("Patient", first.id).to_resource()


def test_fhirpy_conditional_operations(fhirpy_client):
    ident = {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": unique()}
    patients = fhirpy_client.resources("Patient").search(
        identifier=f"{ident['system']}|{ident['value']}"
    )
    new = fhirpy_client.resource("Patient", identifier=[ident], gender="female")
    created, was_created = patients.get_or_create(new)
    assert was_created
    again, was_created = patients.get_or_create(new)
    assert not was_created and again.id == created.id
    updated, was_created = patients.update(
        fhirpy_client.resource("Patient", identifier=[ident], gender="male")
    )
    assert not was_created and updated.id == created.id and updated.gender == "male"
    family = f"Twin{unique()}"
    for _ in range(2):
        fhirpy_client.resource("Patient", name=[{"family": family}]).save()
    with pytest.raises(MultipleResourcesFound):
        fhirpy_client.resources("Patient").search(family=family).get_or_create(
            fhirpy_client.resource("Patient", name=[{"family": family}])
        )


def test_fhirclient_models(server):
    from fhirclient import client
    from fhirclient.models.humanname import HumanName
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    smart = client.FHIRClient(settings={"app_id": "socle-tests", "api_base": server.fhir})
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    smart.server.auth = _Bearer(token_for(server))
    p = Patient()
    name = HumanName()
    name.family = f"Fhirclient{unique()}"
    name.given = ["Zoé"]
    p.name = [name]
    p.gender = "female"
    response = p.create(smart.server)
    assert response["id"]
    read = Patient.read(response["id"], smart.server)
    assert read.name[0].given == ["Zoé"]
    read.gender = "other"
    read.update(smart.server)
    assert Patient.read(read.id, smart.server).gender == "other"
    found = Patient.where(struct={"family": name.family}).perform_resources(smart.server)
    assert [x.id for x in found] == [read.id]
    obs = Observation(
        {
            "status": "final",
            "code": {"text": "poids"},
            "subject": {"reference": f"Patient/{read.id}"},
            "valueQuantity": {"value": 72.5, "unit": "kg"},
        }
    )
    assert obs.create(smart.server)["id"]
    read.delete()

"""`Patient/[id]/$activation-code`: an establishment issues a patient's activation code over
the API; the code then opens the activation page like one an operator issued. Who may is the
policy's (a professional of the patient's care, not an outsider, never the patient), the
identity must be qualified, and the issuing is audited."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from socle.testing import Database, ServerProcess, server_beside

from ..messaging.world import poll
from ..record.world import RecordWorld

INS_NIR_OID = "1.2.250.1.213.1.4.8"


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[ServerProcess]:
    """A server on a database of its own: the test reads its audit log."""
    with server_beside(database, "socle_activation") as srv:
        yield srv


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[RecordWorld]:
    yield RecordWorld(server)


def _issue(client: httpx.Client, patient: str, **params: Any) -> httpx.Response:
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if params:
        body["parameter"] = [{"name": k, "valueInteger": v} for k, v in params.items()]
    return client.post(f"/Patient/{patient}/$activation-code", json=body)


def test_a_professional_of_the_patients_care_issues_a_code_that_activates(
    world: RecordWorld, server: ServerProcess
) -> None:
    with world.pro("author") as c:
        r = _issue(c, world.patient, days=7)
    assert r.status_code == 200, r.text
    out = {p["name"]: p for p in r.json()["parameter"]}
    code = out["code"]["valueString"]
    assert len(code.replace("-", "")) == 12 and "expires" in out
    patient = world.op.get(f"/Patient/{world.patient}").json()
    ins = next(i["value"] for i in patient["identifier"] if i["system"].endswith(INS_NIR_OID))
    with httpx.Client(base_url=server.base, timeout=30) as http:
        form = http.get("/activation")
        assert form.status_code == 200
        step = http.post(
            "/activation", data={"code": code, "ins": ins, "naissance": patient["birthDate"]}
        )
        assert step.status_code == 200, step.text
        assert 'name="mot_de_passe"' in step.text
    # a second code withdraws the first
    with world.pro("author") as c:
        assert _issue(c, world.patient).status_code == 200
    with httpx.Client(base_url=server.base, timeout=30) as http:
        stale = http.post(
            "/activation", data={"code": code, "ins": ins, "naissance": patient["birthDate"]}
        )
        assert stale.status_code == 400
    # audited as an operation on the patient (in his access history), by whom
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:

        def audited() -> Any:
            return conn.execute(
                "SELECT patients FROM audit_log WHERE event LIKE %s AND %s = ANY(patients)",
                ("%$activation-code%", world.patient),
            ).fetchone()

        assert poll(audited)[0] == [world.patient]


@pytest.mark.parametrize(
    ("who", "patient", "status"),
    [
        ("outsider", "patient", 403),  # no care relationship: the policy refuses
        ("patient", "patient", 403),  # a patient does not issue his own code
        ("author", "provisional", 422),  # a provisional identity: the INS cannot be asked
        ("author", "nobody", 404),
    ],
)
def test_who_may_not_and_for_whom_not(
    world: RecordWorld, who: str, patient: str, status: int
) -> None:
    pid = {"patient": world.patient, "provisional": world.provisional}.get(patient, "no-such")
    client = world.client(f"patient:{world.patient}") if who == "patient" else world.pro(who)
    with client as c:
        r = _issue(c, pid)
    assert r.status_code in (status, 404 if status == 403 else status), r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_days_out_of_range_is_a_located_400(world: RecordWorld) -> None:
    with world.pro("author") as c:
        r = _issue(c, world.patient, days=365)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter.where(name = 'days')"]

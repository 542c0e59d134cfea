"""The CapabilityStatement tells the truth: what it lists works, over HTTP."""

from __future__ import annotations

import httpx
import pytest

from socle.fhir.definitions import definitions
from socle.testing import auth_headers

from .helpers import unique
from .minimal import minimal

VALUES = {
    "string": "x",
    "token": "x",
    "reference": "Patient/x",
    "date": "ge2020-01-01",
    "number": "gt1",
    "quantity": "gt1",
    "uri": "http://x",
    "composite": None,
    "special": "x",
}


def test_metadata_is_public_and_r4(client):
    cs = client.get("/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {
        "transaction",
        "batch",
        "history-system",
        "search-system",
    }
    assert len(rest["resource"]) > 140


# The sweep's ~4,000 requests in shards, so the test processes share them
SHARDS = 4


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_listed_search_parameter_is_supported(server, shard):
    cs = httpx.get(server.fhir + "/metadata").json()
    failures = []
    headers = {"Prefer": "handling=strict", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, timeout=30, headers=headers) as c:
        for res in cs["rest"][0]["resource"][shard::SHARDS]:
            for sp in res["searchParam"]:
                value = VALUES[sp["type"]]
                if sp["type"] == "composite":
                    param = definitions().params_for(res["type"])[sp["name"]]
                    value = "$".join(
                        VALUES[definitions().params_by_url[u].type] or ""
                        for u, _ in param.components
                    )
                assert value is not None, f"{res['type']}.{sp['name']} of type {sp['type']} listed"
                r = c.get(f"/{res['type']}", params={sp["name"]: value, "_count": 1})
                if r.status_code != 200:
                    failures.append((res["type"], sp["name"], r.status_code, r.text[:200]))
                missing = c.get(
                    f"/{res['type']}", params={f"{sp['name']}:missing": "true", "_count": 1}
                )
                if (
                    sp["name"] not in ("_id", "_lastUpdated", "_list")
                    and missing.status_code != 200
                ):
                    failures.append((res["type"], sp["name"] + ":missing", missing.status_code))
    assert not failures, failures[:20]


def test_listed_includes_work(server):
    cs = httpx.get(server.fhir + "/metadata").json()
    with httpx.Client(base_url=server.fhir, timeout=30, headers=auth_headers(server)) as c:
        for res in cs["rest"][0]["resource"][:40]:
            for inc in res["searchInclude"][:5]:
                r = c.get(f"/{res['type']}", params={"_include": inc, "_count": 1})
                assert r.status_code == 200, (inc, r.text)


def test_every_listed_type_supports_every_listed_interaction(server):
    """For each type: create, read, vread, update, patch, history, search, delete."""
    cs = httpx.get(server.fhir + "/metadata").json()
    with httpx.Client(base_url=server.fhir, timeout=30, headers=auth_headers(server)) as c:
        for res in cs["rest"][0]["resource"]:
            rtype = res["type"]
            codes = {i["code"] for i in res["interaction"]}
            if rtype == "DocumentReference":
                # the shared record's entries: PDSm rules on every write (tests/record)
                assert codes >= {"read", "create", "patch", "search-type"}
                continue
            if rtype == "AuditEvent":  # the audit trail: read-only, written by the server
                # served from the lean audit table: no history, no includes
                assert codes == {"read", "vread", "search-type"}
                assert not res["searchInclude"] and not res["searchRevInclude"]
                r = c.post(f"/{rtype}", json=minimal(rtype))
                assert r.status_code == 403, r.text
                assert c.get(f"/{rtype}", params={"_count": 1}).status_code == 200
                continue
            assert codes == {
                "read",
                "vread",
                "update",
                "patch",
                "delete",
                "history-instance",
                "history-type",
                "create",
                "search-type",
            }
            body = {**minimal(rtype), "id": f"cap-{unique()}"}
            r = c.put(f"/{rtype}/{body['id']}", json=body)
            assert r.status_code == 201, (rtype, r.text)
            assert c.get(f"/{rtype}/{body['id']}").status_code == 200
            created = c.post(f"/{rtype}", json=body)
            assert created.status_code == 201, (rtype, created.text)
            patch = [{"op": "add", "path": "/meta/tag", "value": [{"code": "cap"}]}]
            r = c.patch(
                f"/{rtype}/{body['id']}",
                json=patch,
                headers={"Content-Type": "application/json-patch+json"},
            )
            assert r.status_code == 200, (rtype, r.text)
            assert c.get(f"/{rtype}/{body['id']}/_history/2").status_code == 200
            assert c.get(f"/{rtype}/{body['id']}/_history").status_code == 200
            assert c.get(f"/{rtype}/_history", params={"_count": 1}).status_code == 200
            assert c.get(f"/{rtype}", params={"_id": body["id"]}).json()["entry"]
            assert c.delete(f"/{rtype}/{body['id']}").status_code in (200, 204)

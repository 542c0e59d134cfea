"""Search as the engine uses it (conditional operations, clients); the search tests
extend this."""

from __future__ import annotations

from .helpers import create, observation, patient, unique


def test_string_search_is_accent_and_case_insensitive_prefix(client):
    family = f"Lœvy-Hélène{unique()}"
    pid = create(client, patient(family))["id"]
    for query in (family, family.upper(), "loevy-helene" + family[-12:], family[:6]):
        ids = [
            e["resource"]["id"]
            for e in client.get("/Patient", params={"family": query}).json().get("entry", [])
        ]
        assert pid in ids, query
    exact = client.get("/Patient", params={"family:exact": family.lower()}).json()
    assert not exact.get("entry")


def test_token_date_quantity_and_chain(client):
    pid = create(client, patient(f"Chain{unique()}"))["id"]
    family = client.get(f"/Patient/{pid}").json()["name"][0]["family"]
    oid = create(client, observation(f"Patient/{pid}", value="72.50"))["id"]
    params = {
        "subject:Patient.family": family,
        "code": "http://loinc.org|29463-7",
        "date": "ge2024-03-05",
        "value-quantity": "gt70|http://unitsofmeasure.org|kg",
    }
    ids = [e["resource"]["id"] for e in client.get("/Observation", params=params).json()["entry"]]
    assert ids == [oid]
    assert (
        not client.get("/Observation", params={**params, "date": "lt2024-03-05"})
        .json()
        .get("entry")
    )
    assert (
        not client.get("/Observation", params={**params, "value-quantity": "lt70"})
        .json()
        .get("entry")
    )
    # _has: patients with such an observation
    has = client.get("/Patient", params={"_has:Observation:subject:_id": oid}).json()
    assert [e["resource"]["id"] for e in has["entry"]] == [pid]


def test_include_revinclude_and_paging_links_on_request_base(client):
    family = f"Page{unique()}"
    pids = [create(client, patient(family))["id"] for _ in range(5)]
    for pid in pids:
        create(client, observation(f"Patient/{pid}"))
    page = client.get(
        "/Patient", params={"family": family, "_count": 2, "_revinclude": "Observation:subject"}
    ).json()
    modes = [e["search"]["mode"] for e in page["entry"]]
    assert modes.count("match") == 2 and modes.count("include") == 2
    seen = [e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "match"]
    url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert url.startswith(str(client.base_url))
    while url:
        page = client.get(url).json()
        seen += [e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(pids)
    obs = client.get(
        "/Observation", params={"subject:Patient.family": family, "_include": "Observation:subject"}
    ).json()
    assert sum(1 for e in obs["entry"] if e["search"]["mode"] == "include") == 5


def test_sort_and_total(client):
    family = f"Sort{unique()}"
    for day in ("1990-01-03", "1990-01-01", "1990-01-02"):
        create(client, patient(family, birthDate=day))
    bundle = client.get(
        "/Patient", params={"family": family, "_sort": "-birthdate", "_total": "accurate"}
    ).json()
    assert bundle["total"] == 3
    assert [e["resource"]["birthDate"] for e in bundle["entry"]] == [
        "1990-01-03",
        "1990-01-02",
        "1990-01-01",
    ]
    summary = client.get("/Patient", params={"family": family, "_summary": "count"}).json()
    assert summary["total"] == 3 and not summary.get("entry")


def test_post_search_and_elements(client):
    family = f"Post{unique()}"
    create(client, patient(family))
    r = client.post(
        "/Patient/_search",
        content=f"family={family}&_elements=name",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    entry = r.json()["entry"][0]["resource"]
    assert "name" in entry and "birthDate" not in entry
    assert any(t["code"] == "SUBSETTED" for t in entry["meta"]["tag"])


def test_patient_everything_pages_the_compartment_with_references(client):
    org = create(client, {"resourceType": "Organization", "name": f"CH {unique()}"})
    pid = create(client, patient(managingOrganization={"reference": f"Organization/{org['id']}"}))[
        "id"
    ]
    other = create(client, patient())["id"]
    obs_ids = {create(client, observation(f"Patient/{pid}"))["id"] for _ in range(5)}
    create(client, observation(f"Patient/{other}"))
    page = client.get(f"/Patient/{pid}/$everything", params={"_count": 3}).json()
    seen, included = set(), set()
    while True:
        for e in page["entry"]:
            (seen if e["search"]["mode"] == "match" else included).add(e["resource"]["id"])
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = client.get(nxt[0]).json()
    assert seen == obs_ids | {pid}
    assert org["id"] in included
    only_obs = client.get(f"/Patient/{pid}/$everything", params={"_type": "Observation"}).json()
    assert {
        e["resource"]["id"] for e in only_obs["entry"] if e["search"]["mode"] == "match"
    } == obs_ids
    assert client.get("/Patient/unknown-patient/$everything").status_code == 404


def test_search_timeout_is_a_clear_error(server):
    import httpx

    from socle.testing import auth_headers, start_server, stop_server

    slow = start_server(server.database, extra_env={"SOCLE_SEARCH_TIMEOUT_MS": "1"})
    try:
        r = httpx.get(
            slow.fhir + "/Patient",
            params={"name:contains": "e", "_total": "accurate"},
            headers=auth_headers(slow),
        )
        assert r.status_code in (200, 422)  # 1 ms may or may not be enough on a small database
        if r.status_code == 422:
            assert r.json()["issue"][0]["code"] == "too-costly"
    finally:
        stop_server(slow)


def test_identifier_of_type_tells_ins_from_nss(client):
    """INS-NIR and the NSS billing number share an OID: the identifier type tells them apart."""
    nir = "1" + unique()[:6].translate(str.maketrans("abcdef", "123456")) + "00000000"
    oid = "urn:oid:1.2.250.1.213.1.4.8"
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    fr = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
    with_ins = create(
        client,
        patient(
            identifier=[
                {
                    "type": {"coding": [{"system": fr, "code": "INS-NIR"}]},
                    "system": oid,
                    "value": nir,
                }
            ]
        ),
    )
    with_nss = create(
        client,
        patient(
            identifier=[
                {"type": {"coding": [{"system": v2, "code": "NH"}]}, "system": oid, "value": nir}
            ]
        ),
    )
    both = client.get("/Patient", params={"identifier": f"{oid}|{nir}"}).json()
    assert {e["resource"]["id"] for e in both["entry"]} == {with_ins["id"], with_nss["id"]}
    ins = client.get("/Patient", params={"identifier:of-type": f"{fr}|INS-NIR|{nir}"}).json()
    assert [e["resource"]["id"] for e in ins["entry"]] == [with_ins["id"]]
    assert client.get("/Patient", params={"identifier:of-type": "INS-NIR"}).status_code == 400


def test_sorted_paging_with_ties_and_missing_values_visits_each_once_in_order(client):
    family = f"Keyset{unique()}"
    births = [
        "1990-05-01",
        "1985-01-01",
        None,
        "1990-05-01",
        "2001-12-31",
        None,
        "1985-01-01",
        "1970-07-14",
        "1990-05-01",
    ]
    ids = {}
    for b in births:
        body = patient(family)
        if b is None:
            body.pop("birthDate")
        else:
            body["birthDate"] = b
        ids[create(client, body)["id"]] = b
    for sort, desc in (("-birthdate", True), ("birthdate", False)):
        seen, url, params = [], "/Patient", {"family": family, "_sort": f"{sort},-_id", "_count": 2}
        while url:
            page = client.get(url, params=params).json()
            seen += [(e["resource"]["id"], e["resource"].get("birthDate")) for e in page["entry"]]
            url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
            params = None
        assert sorted(i for i, _ in seen) == sorted(ids)  # each once
        dated = [(b, i) for i, b in seen if b]
        expected = sorted(dated, key=lambda x: x[1], reverse=True)  # -_id within equal dates
        expected = sorted(expected, key=lambda x: x[0], reverse=desc)
        assert dated == expected
        assert all(b is None for _, b in seen[len(dated) :])  # missing values last


def test_composite_components_must_come_from_the_same_element(client):
    """Blood pressure 120/80: systolic 120 matches, 'systolic 80' must not (80 is diastolic)."""
    pid = create(client, patient())["id"]
    loinc, ucum = "http://loinc.org", "http://unitsofmeasure.org"

    def bp(systolic: int, diastolic: int) -> dict:
        def comp(code: str, value: int) -> dict:
            return {
                "code": {"coding": [{"system": loinc, "code": code}]},
                "valueQuantity": {"value": value, "system": ucum, "code": "mm[Hg]"},
            }

        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "component": [comp("8480-6", systolic), comp("8462-4", diastolic)],
        }

    high = create(client, bp(150, 95))["id"]
    normal = create(client, bp(120, 80))["id"]

    def ids(value: str) -> set[str]:
        r = client.get(
            "/Observation",
            params={"subject": f"Patient/{pid}", "component-code-value-quantity": value},
        )
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    assert ids(f"{loinc}|8480-6$gt140") == {high}
    assert ids(f"{loinc}|8480-6$80") == set()  # 80 belongs to the diastolic component
    assert ids(f"{loinc}|8462-4$80|{ucum}|mm[Hg]") == {normal}
    assert ids(f"{loinc}|8480-6$gt100,{loinc}|8462-4$gt90") == {high, normal}
    combo = client.get(
        "/Observation",
        params={"subject": f"Patient/{pid}", "combo-code-value-quantity": "8462-4$ge95"},
    ).json()
    assert [e["resource"]["id"] for e in combo["entry"]] == [high]
    assert (
        client.get("/Observation", params={"component-code-value-quantity": "8480-6"}).status_code
        == 400
    )


def test_list_membership_and_contained_is_explicit(client):
    members = [create(client, patient())["id"] for _ in range(2)]
    outsider = create(client, patient())["id"]
    lst = create(
        client,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": f"Patient/{m}"}} for m in members],
        },
    )
    got = client.get("/Patient", params={"_list": lst["id"]}).json()
    ids = {e["resource"]["id"] for e in got["entry"]}
    assert ids == set(members) and outsider not in ids
    assert client.get("/Patient", params={"_contained": "true"}).status_code == 400
    assert client.get("/Patient", params={"_contained": "false", "_count": 1}).status_code == 200


def test_deceased_is_true_for_a_date_or_true_and_false_otherwise(client):
    """``deceased`` is a FHIRPath expression over a choice element (``deceased[x]``)."""
    family = f"Deceased{unique()}"
    shapes = {
        "date": {"deceasedDateTime": "2024-01-02"},
        "true": {"deceasedBoolean": True},
        "false": {"deceasedBoolean": False},
        "absent": {},
    }
    ids = {}
    for name, extra in shapes.items():
        body = {"resourceType": "Patient", "name": [{"family": family}], **extra}
        ids[name] = client.post("/Patient", json=body).json()["id"]

    def found(value: str) -> set[str]:
        bundle = client.get("/Patient", params={"family": family, "deceased": value}).json()
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    assert found("true") == {ids["date"], ids["true"]}
    assert found("false") == {ids["false"], ids["absent"]}

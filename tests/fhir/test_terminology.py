"""The terminology service over HTTP: CodeSystems, ValueSets and ConceptMaps stored through the
REST API and the R4 operations on them ($expand with filter, paging and displayLanguage,
$validate-code, $lookup, $subsumes, $translate), the R4 core and the record's NOS value sets
loaded at start-up, versions, and the located 4xx every mistake gets."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.fhir.terminology.concepts import Concept, concepts_of, matches
from socle.testing import ServerProcess, run_socle

from .helpers import unique

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
J07 = "https://mos.esante.gouv.fr/NOS/JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS"

# a small hierarchy: 1 > 1.1 > 1.1.1, 1 > 1.2; 2
WORDS = ["hépatite", "hépatique", "fièvre", "fracture", "fémur", "grippe", "gastrite", "angine"]


def code_system(url: str, version: str = "1", extra: list[dict[str, Any]] | None = None) -> dict:
    concepts: list[dict[str, Any]] = [
        {
            "code": "1",
            "display": "Hepatitis",
            "designation": [{"language": "fr", "value": "Hépatite"}],
            "concept": [
                {
                    "code": "1.1",
                    "display": "Viral hepatitis",
                    "designation": [{"language": "fr-FR", "value": "Hépatite virale"}],
                    "concept": [{"code": "1.1.1", "display": "Hepatitis B"}],
                },
                {"code": "1.2", "display": "Toxic hepatitis"},
            ],
        },
        {
            "code": "2",
            "display": "Femur fracture",
            "property": [{"code": "severe", "valueBoolean": True}],
        },
        *(extra or []),
    ]
    return {
        "resourceType": "CodeSystem",
        "url": url,
        "version": version,
        "name": "TestSystem",
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "concept": concepts,
    }


def value_set(url: str, include: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": include},
        **extra,
    }


def created(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def expand(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get("/ValueSet/$expand", params=params)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expansion["expansion"].get("contains", [])]


def params_of(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in body["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value") or k == "part"), None)
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def refusal(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = body["issue"][0]
    return issue


@pytest.fixture(scope="module")
def system(server: ServerProcess) -> dict[str, str]:
    """A stored CodeSystem and a ValueSet of all of it."""
    from socle.testing import auth_headers

    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
        url = f"urn:test:cs:{unique()}"
        cs = created(c, code_system(url))
        vs = created(c, value_set(f"urn:test:vs:{unique()}", [{"system": url}]))
    return {"cs": url, "cs_id": cs["id"], "vs": vs["url"], "vs_id": vs["id"]}


# -- start-up content -----------------------------------------------------------------------------


def test_r4_core_value_sets_are_loaded_at_start_up(client: httpx.Client) -> None:
    out = expand(client, url=GENDER_VS)
    assert sorted(codes(out)) == ["female", "male", "other", "unknown"]
    assert out["expansion"]["total"] == 4
    assert out["status"] == "active"
    assert {"name": "version", "valueUri": f"{GENDER_CS}|4.0.1"} in out["expansion"]["parameter"]


def test_v3_hierarchies_answer_is_a_and_subsumes(client: httpx.Client) -> None:
    out = expand(client, url="http://terminology.hl7.org/ValueSet/v3-ActEncounterCode")
    assert "AMB" in codes(out) and "IMP" in codes(out)
    r = client.get(
        "/CodeSystem/$subsumes",
        params={"system": ACT_CODE, "codeA": "_ActEncounterCode", "codeB": "AMB"},
    )
    assert params_of(r.json()) == {"outcome": "subsumes"}


def test_the_records_nos_value_sets_are_loaded_at_start_up(client: httpx.Client) -> None:
    r = client.get(
        "/ValueSet/$validate-code",
        params={"url": J07, "system": "http://loinc.org", "code": "11488-4"},
    )
    assert params_of(r.json())["result"] is True
    r = client.get(
        "/ValueSet/$validate-code",
        params={"url": J07, "system": "http://loinc.org", "code": "0000-0"},
    )
    assert params_of(r.json())["result"] is False
    a05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
    r = client.get("/CodeSystem/$validate-code", params={"url": a05, "code": "NOPE"})
    out = params_of(r.json())
    assert out["result"] is False and "fragment" in out["message"]


def test_the_fr_core_codes_socle_checks_are_loaded_at_start_up(client: httpx.Client) -> None:
    status = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
    for code, result in (("QUAL", True), ("QUALIF", False)):
        r = client.get("/CodeSystem/$validate-code", params={"url": status, "code": code})
        assert params_of(r.json())["result"] is result
    types = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
    r = client.get("/CodeSystem/$lookup", params={"system": types, "code": "INS-NIR"})
    assert r.status_code == 200, r.text


# -- $expand --------------------------------------------------------------------------------------


def test_expand_a_stored_value_set_by_url_and_by_instance(
    client: httpx.Client, system: dict[str, str]
) -> None:
    by_url = expand(client, url=system["vs"])
    assert codes(by_url) == ["1", "1.1", "1.1.1", "1.2", "2"]  # the code system's order
    r = client.get(f"/ValueSet/{system['vs_id']}/$expand")
    assert r.status_code == 200 and codes(r.json()) == codes(by_url)


def test_filter_is_a_type_ahead_on_words_and_code(
    client: httpx.Client, system: dict[str, str]
) -> None:
    assert codes(expand(client, url=system["vs"], filter="hep")) == ["1", "1.1", "1.1.1", "1.2"]
    assert codes(expand(client, url=system["vs"], filter="vir hep")) == ["1.1"]
    assert codes(expand(client, url=system["vs"], filter="HÉPATITE VIR")) == ["1.1"]
    assert codes(expand(client, url=system["vs"], filter="1.1")) == ["1.1", "1.1.1"]
    assert codes(expand(client, url=system["vs"], filter="zzz")) == []


def test_offset_and_count_page_the_expansion(client: httpx.Client, system: dict[str, str]) -> None:
    pages = [codes(expand(client, url=system["vs"], offset=o, count=2)) for o in (0, 2, 4)]
    assert pages == [["1", "1.1"], ["1.1.1", "1.2"], ["2"]]
    last = expand(client, url=system["vs"], offset=4, count=2)
    assert last["expansion"]["total"] == 5 and last["expansion"]["offset"] == 4


def test_display_language_takes_the_designation(
    client: httpx.Client, system: dict[str, str]
) -> None:
    out = expand(client, url=system["vs"], displayLanguage="fr", filter="hep")
    shown = {c["code"]: c["display"] for c in out["expansion"]["contains"]}
    assert shown["1"] == "Hépatite"
    assert shown["1.1"] == "Hépatite virale"  # fr-FR serves fr
    assert shown["1.2"] == "Toxic hepatitis"  # no French designation: its display


def test_compose_filters_and_excludes(client: httpx.Client, system: dict[str, str]) -> None:
    cs = system["cs"]
    vs = value_set(
        "urn:test:vs:inline",
        [{"system": cs, "filter": [{"property": "concept", "op": "is-a", "value": "1.1"}]}],
    )
    r = client.post(
        "/ValueSet/$expand",
        json={"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]},
    )
    assert codes(r.json()) == ["1.1", "1.1.1"]
    vs["compose"]["include"] = [
        {"system": cs, "filter": [{"property": "concept", "op": "descendent-of", "value": "1"}]}
    ]
    vs["compose"]["exclude"] = [{"system": cs, "concept": [{"code": "1.2"}]}]
    r = client.post(
        "/ValueSet/$expand",
        json={"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]},
    )
    assert codes(r.json()) == ["1.1", "1.1.1"]
    vs["compose"] = {
        "include": [{"system": cs, "filter": [{"property": "severe", "op": "=", "value": "true"}]}]
    }
    r = client.post(
        "/ValueSet/$expand",
        json={"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]},
    )
    assert codes(r.json()) == ["2"]


def test_a_value_set_importing_another(client: httpx.Client, system: dict[str, str]) -> None:
    outer = created(client, value_set(f"urn:test:vs:{unique()}", [{"valueSet": [system["vs"]]}]))
    assert codes(expand(client, url=outer["url"], filter="fem")) == ["2"]


# -- the filter, as a property --------------------------------------------------------------------

TYPED = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèà .", min_size=1, max_size=8)
GENERATED = [
    {"code": f"G{i}", "display": f"{WORDS[i % len(WORDS)]} {WORDS[(i * 3) % len(WORDS)]} {i}"}
    for i in range(40)
]


@pytest.fixture(scope="module")
def generated(server: ServerProcess) -> str:
    from socle.testing import auth_headers

    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
        cs = code_system(f"urn:test:cs:{unique()}", extra=GENERATED)
        created(c, cs)
        vs = created(c, value_set(f"urn:test:vs:{unique()}", [{"system": cs["url"]}]))
    return str(vs["url"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TYPED)
def test_filter_returns_exactly_the_concepts_whose_words_it_starts(
    client: httpx.Client, generated: str, text: str
) -> None:
    if not text.strip():
        return
    cs = code_system("urn:x", extra=GENERATED)
    expected = [c.code for c in concepts_of(cs) if matches(text, c)]
    r = client.get("/ValueSet/$expand", params={"url": generated, "filter": text})
    assert r.status_code == 200, r.text
    assert codes(r.json()) == expected


def test_matches_model() -> None:
    c = Concept(0, "A-12", "Hépatite virale B", [{"language": "en", "value": "Viral hepatitis"}])
    assert matches("hep vir", c) and matches("VIRAL", c) and matches("A-1", c)
    assert not matches("virus", c) and not matches("a-12 x", c)


def test_concepts_of_flattens_nesting_and_parent_properties() -> None:
    cs = {
        "concept": [
            {"code": "a", "concept": [{"code": "b", "concept": [{"code": "c"}]}]},
            {"code": "d", "property": [{"code": "parent", "valueCode": "c"}]},
        ]
    }
    found = {c.code: c for c in concepts_of(cs)}
    assert found["c"].ancestors == ["a", "b"]
    assert found["d"].parents == ["c"] and found["d"].ancestors == ["a", "b", "c"]


# -- $validate-code, $lookup, $subsumes -----------------------------------------------------------


def test_validate_code_in_a_value_set(client: httpx.Client, system: dict[str, str]) -> None:
    ok = client.get(
        "/ValueSet/$validate-code",
        params={"url": system["vs"], "system": system["cs"], "code": "1.1"},
    )
    assert params_of(ok.json()) == {"result": True, "display": "Viral hepatitis"}
    wrong = client.post(
        f"/ValueSet/{system['vs_id']}/$validate-code",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "coding", "valueCoding": {"system": system["cs"], "code": "9"}},
            ],
        },
    )
    assert params_of(wrong.json())["result"] is False
    display = client.get(
        "/ValueSet/$validate-code",
        params={"url": system["vs"], "system": system["cs"], "code": "1", "display": "Nope"},
    )
    assert params_of(display.json())["result"] is False
    concept = client.post(
        "/ValueSet/$validate-code",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "url", "valueUri": system["vs"]},
                {
                    "name": "codeableConcept",
                    "valueCodeableConcept": {
                        "coding": [
                            {"system": "urn:other", "code": "x"},
                            {"system": system["cs"], "code": "2"},
                        ]
                    },
                },
            ],
        },
    )
    assert params_of(concept.json())["result"] is True


def test_validate_code_in_a_code_system(client: httpx.Client, system: dict[str, str]) -> None:
    r = client.get(f"/CodeSystem/{system['cs_id']}/$validate-code", params={"code": "1.1.1"})
    assert params_of(r.json()) == {"result": True, "display": "Hepatitis B"}
    r = client.get("/CodeSystem/$validate-code", params={"url": system["cs"], "code": "nope"})
    assert params_of(r.json())["result"] is False


def test_lookup_gives_display_designations_and_hierarchy(
    client: httpx.Client, system: dict[str, str]
) -> None:
    r = client.get("/CodeSystem/$lookup", params={"system": system["cs"], "code": "1.1"})
    assert r.status_code == 200, r.text
    out = params_of(r.json())
    assert out["name"] == "TestSystem" and out["version"] == "1"
    assert out["display"] == "Viral hepatitis"
    flat = [
        tuple(next(v for k, v in part.items() if k.startswith("value")) for part in p["part"])
        for p in r.json()["parameter"]
        if p["name"] == "property"
    ]
    assert ("parent", "1") in flat and ("child", "1.1.1") in flat
    fr = client.get(
        "/CodeSystem/$lookup",
        params={"system": system["cs"], "code": "1.1", "displayLanguage": "fr"},
    )
    assert params_of(fr.json())["display"] == "Hépatite virale"


def test_subsumes_in_every_direction(client: httpx.Client, system: dict[str, str]) -> None:
    def outcome(a: str, b: str) -> str:
        r = client.get(f"/CodeSystem/{system['cs_id']}/$subsumes", params={"codeA": a, "codeB": b})
        assert r.status_code == 200, r.text
        return str(params_of(r.json())["outcome"])

    assert outcome("1", "1.1.1") == "subsumes"
    assert outcome("1.1.1", "1") == "subsumed-by"
    assert outcome("1.1", "1.2") == "not-subsumed"
    assert outcome("2", "2") == "equivalent"
    issue = refusal(
        client.get(
            "/CodeSystem/$subsumes", params={"system": system["cs"], "codeA": "1", "codeB": "x"}
        ),
        422,
    )
    assert issue["expression"] == ["codeB"]


# -- $translate -----------------------------------------------------------------------------------


def test_translate_with_a_stored_concept_map(client: httpx.Client, system: dict[str, str]) -> None:
    url = f"urn:test:cm:{unique()}"
    cm = created(
        client,
        {
            "resourceType": "ConceptMap",
            "url": url,
            "status": "active",
            "group": [
                {
                    "source": system["cs"],
                    "target": "urn:test:target",
                    "element": [
                        {
                            "code": "1.1.1",
                            "target": [
                                {"code": "B18.1", "display": "HBV", "equivalence": "equivalent"}
                            ],
                        }
                    ],
                }
            ],
        },
    )
    r = client.get(
        "/ConceptMap/$translate", params={"url": url, "system": system["cs"], "code": "1.1.1"}
    )
    out = params_of(r.json())
    assert out["result"] is True
    concept = next(p for p in out["match"] if p["name"] == "concept")
    assert concept["valueCoding"] == {
        "system": "urn:test:target",
        "code": "B18.1",
        "display": "HBV",
    }
    r = client.get(
        f"/ConceptMap/{cm['id']}/$translate",
        params={"system": "urn:test:target", "code": "B18.1", "reverse": "true"},
    )
    assert params_of(r.json())["result"] is True
    r = client.get("/ConceptMap/$translate", params={"system": system["cs"], "code": "2"})
    assert params_of(r.json())["result"] is False


# -- versions, updates, deletes, transactions -----------------------------------------------------


def test_versions_coexist_and_resolve_by_url_and_version(client: httpx.Client) -> None:
    url = f"urn:test:cs:{unique()}"
    created(client, code_system(url, "1"))
    created(client, code_system(url, "2", extra=[{"code": "3", "display": "New in two"}]))
    r = client.get("/CodeSystem/$lookup", params={"system": url, "code": "3"})
    assert params_of(r.json())["version"] == "2"  # the latest
    r = client.get("/CodeSystem/$lookup", params={"system": url, "code": "3", "version": "1"})
    assert refusal(r, 404)["expression"] == ["code"]
    vs = value_set(f"urn:test:vs:{unique()}", [{"system": url, "version": "1"}])
    created(client, vs)
    assert "3" not in codes(expand(client, url=vs["url"]))
    r = client.get("/CodeSystem/$validate-code", params={"url": f"{url}|2", "code": "3"})
    assert params_of(r.json())["result"] is True


def test_update_and_delete_rebuild_the_concepts(client: httpx.Client) -> None:
    url = f"urn:test:cs:{unique()}"
    cs = created(client, code_system(url))
    vs = created(client, value_set(f"urn:test:vs:{unique()}", [{"system": url}]))
    cs["concept"] = [{"code": "only", "display": "Only one"}]
    assert client.put(f"/CodeSystem/{cs['id']}", json=cs).status_code == 200
    assert codes(expand(client, url=vs["url"])) == ["only"]
    assert client.delete(f"/CodeSystem/{cs['id']}").status_code in (200, 204)
    issue = refusal(client.get("/ValueSet/$expand", params={"url": vs["url"]}), 422)
    assert "not known" in issue["diagnostics"]
    assert issue["expression"] == ["ValueSet.compose.include[0].system"]


def test_a_rolled_back_transaction_leaves_no_concepts(client: httpx.Client) -> None:
    url = f"urn:test:cs:{unique()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": code_system(url), "request": {"method": "POST", "url": "CodeSystem"}},
            {
                "resource": {"resourceType": "Patient", "gender": "not-a-gender"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert client.post("/", json=bundle).status_code in (400, 422)
    r = client.get("/CodeSystem/$lookup", params={"system": url, "code": "1"})
    assert refusal(r, 422)["expression"] == ["system"]


# -- mistakes -------------------------------------------------------------------------------------


def test_mistakes_are_located_4xx(client: httpx.Client, system: dict[str, str]) -> None:
    issue = refusal(client.get("/ValueSet/$expand", params={"url": system["vs"], "count": "x"}))
    assert issue["expression"] == ["count"]
    issue = refusal(client.get("/ValueSet/$expand", params={"url": system["vs"], "nope": "1"}))
    assert issue["expression"] == ["nope"]
    issue = refusal(client.get("/ValueSet/$expand", params={"url": "urn:unknown"}), 404)
    assert issue["expression"] == ["url"]
    issue = refusal(client.get("/ValueSet/$expand", params={"url": system["vs"], "count": "5000"}))
    assert issue["expression"] == ["count"]
    issue = refusal(
        client.post(
            "/ValueSet/$expand",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "count", "valueString": "2"}],
            },
        )
    )
    assert issue["expression"] == ["Parameters.parameter[0]"]
    issue = refusal(client.get("/ValueSet/$validate-code", params={"url": system["vs"]}))
    assert "code" in issue["diagnostics"]
    assert refusal(client.get("/ValueSet/$expand"))["code"] == "required"


def test_a_large_expansion_without_paging_is_refused(client: httpx.Client) -> None:
    url = f"urn:test:cs:{unique()}"
    many = [{"code": f"c{i}", "display": f"word{i}"} for i in range(1100)]
    created(
        client,
        {
            "resourceType": "CodeSystem",
            "url": url,
            "status": "active",
            "content": "complete",
            "concept": many,
        },
    )
    vs = created(client, value_set(f"urn:test:vs:{unique()}", [{"system": url}]))
    issue = refusal(client.get("/ValueSet/$expand", params={"url": vs["url"]}), 422)
    assert issue["code"] == "too-costly"
    page = expand(client, url=vs["url"], count=10, offset=1090)
    assert codes(page) == [f"c{i}" for i in range(1090, 1100)]
    assert "total" not in page["expansion"] or page["expansion"]["total"] == 1100


# -- declared -------------------------------------------------------------------------------------


def test_capability_statement_declares_the_operations(client: httpx.Client) -> None:
    cap = client.get("/metadata").json()
    ops = {
        r["type"]: {o["name"] for o in r.get("operation", [])} for r in cap["rest"][0]["resource"]
    }
    assert {"expand", "validate-code"} <= ops["ValueSet"]
    assert {"lookup", "validate-code", "subsumes"} <= ops["CodeSystem"]
    assert "translate" in ops["ConceptMap"]
    r = client.get("/OperationDefinition/ValueSet-expand")
    assert r.status_code == 200 and r.json()["code"] == "expand"


# -- socle terminology load -----------------------------------------------------------------------


def _package(tmp: Path, url: str) -> Path:
    files = {
        "package/package.json": {"name": "test.terminology", "version": "0.1.0"},
        "package/CodeSystem-x.json": code_system(url, "7"),
        "package/ValueSet-x.json": value_set(url + "-vs", [{"system": url}]),
    }
    path = tmp / "test.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_cli_loads_a_package_once(
    client: httpx.Client, server: ServerProcess, tmp_path: Path
) -> None:
    url = f"urn:test:pkg:{unique()}"
    path = _package(tmp_path, url)
    env = {"SOCLE_DATA_DIR": str(server.database.data_dir)}
    first = run_socle(server.database, "terminology", "load", str(path), extra_env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert report["package"] == "test.terminology#0.1.0" and report["loaded"] == 2
    again = run_socle(server.database, "terminology", "load", str(path), extra_env=env)
    assert json.loads(again.stdout.strip().splitlines()[-1])["unchanged"] is True
    assert codes(expand(client, url=url + "-vs", filter="frac")) == ["2"]
    ndjson = tmp_path / "more.ndjson"
    other = f"urn:test:nd:{unique()}"
    ndjson.write_text(json.dumps(code_system(other)) + "\n")
    r = run_socle(server.database, "terminology", "load", str(ndjson), extra_env=env)
    assert r.returncode == 0, r.stderr
    r = client.get("/CodeSystem/$lookup", params={"system": other, "code": "2"})
    assert params_of(r.json())["display"] == "Femur fracture"
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(gzip.compress(b"not a tar"))
    r = run_socle(server.database, "terminology", "load", str(bad), extra_env=env)
    assert r.returncode == 2 and "not a FHIR package" in r.stderr


# -- the lookup API other code checks codes with -------------------------------------------------


def test_the_terminology_api_answers_as_the_operations_do(server: ServerProcess) -> None:
    import asyncio

    from psycopg_pool import AsyncConnectionPool

    from socle.database import embedded_url
    from socle.fhir.terminology.service import Terminology

    url = server.database.url or embedded_url(server.database.data_dir)

    async def run() -> None:
        async with AsyncConnectionPool(url, open=False, min_size=1) as pool:
            await pool.open()
            terminology = Terminology(pool)
            male = await terminology.validate_code(GENDER_VS, GENDER_CS, "male")
            assert male is not None and male.result and male.display == "Male"
            nope = await terminology.validate_code(GENDER_VS, None, "nope")
            assert nope is not None and not nope.result
            assert await terminology.validate_code("urn:unknown", None, "x") is None
            assert await terminology.display(ACT_CODE, "AMB") == "ambulatory"
            page = await terminology.expand(GENDER_VS, text="fem")
            assert page is not None and [r[2] for r in page.rows] == ["female"]

    asyncio.run(run())


def test_a_type_level_operation_needs_the_type_in_the_callers_scopes(
    client: httpx.Client, server: ServerProcess
) -> None:
    from socle.testing import token_for

    patient = created(client, {"resourceType": "Patient", "name": [{"family": f"T{unique()}"}]})
    who = f"patient:{patient['id']}"
    for scope, status in ((None, 200), ("patient/Observation.rs", 403)):
        headers = {"Authorization": f"Bearer {token_for(server, who, scope=scope)}"}
        r = httpx.get(f"{server.fhir}/ValueSet/$expand", params={"url": GENDER_VS}, headers=headers)
        assert r.status_code == status, r.text
    assert "ValueSet" in r.json()["issue"][0]["diagnostics"]


def test_stored_resources_without_rows_are_indexed_at_start_up(
    client: httpx.Client, server: ServerProcess
) -> None:
    """A CodeSystem stored before the terminology tables existed gets its rows at start-up."""
    import asyncio

    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from socle.database import embedded_url
    from socle.fhir.terminology.startup import load_sources

    url = f"urn:test:cs:{unique()}"
    cs = created(client, code_system(url))
    db = server.database.url or embedded_url(server.database.data_dir)

    async def forget() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await conn.execute("DELETE FROM term_resource WHERE resource_id = %s", (cs["id"],))

    async def start_up() -> dict[str, Any]:
        async with AsyncConnectionPool(db, open=False, min_size=1) as pool:
            await pool.open()
            return await load_sources(pool, [])

    asyncio.run(forget())
    assert refusal(client.get("/CodeSystem/$lookup", params={"system": url, "code": "1"}), 422)
    assert asyncio.run(start_up())["stored indexed"] >= 1
    r = client.get("/CodeSystem/$lookup", params={"system": url, "code": "1"})
    assert params_of(r.json())["display"] == "Hepatitis"

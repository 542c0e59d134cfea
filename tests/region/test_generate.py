"""The synthetic region: identities, codes, determinism, references, duplicates."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from socle.fhir.json import decode, encode
from socle.identity import check_nir, is_valid_nir
from socle.region import codes
from socle.region.cli import generate_command
from socle.region.generate import Config, iter_bundles, iter_resources
from socle.region.ids import finess_ok, luhn_ok
from socle.synthetic import SYNTHETIC_TAG_SYSTEM

PATIENTS = 150
SEED = 42
NOM = codes.nomenclatures()
INS_TYPES = {"INS-NIR", "INS-NIA", "NH"}


@pytest.fixture(scope="module")
def region() -> list[dict[str, Any]]:
    return list(iter_resources(PATIENTS, SEED))


def _by_type(region: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in region if r["resourceType"] == kind]


def _tags(res: dict[str, Any]) -> dict[str, str]:
    return {
        t["code"]: t.get("display", "")
        for t in res.get("meta", {}).get("tag", [])
        if t["system"] == SYNTHETIC_TAG_SYSTEM
    }


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            is_ref = k == "reference" or (k == "url" and str(v).startswith("Binary/"))
            if is_ref and isinstance(v, str):
                if not v.startswith("#"):  # contained resources (document authors) are local
                    out.append(v)
            else:
                out.extend(_references(v))
        return out
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def test_size_and_mix(region: list[dict[str, Any]]) -> None:
    counts = Counter(r["resourceType"] for r in region)
    patients = counts["Patient"]
    assert PATIENTS <= patients <= PATIENTS * 1.1
    per_patient = (
        len(region) - counts["Organization"] - counts["Practitioner"] - counts["PractitionerRole"]
    ) / PATIENTS
    assert 25 <= per_patient <= 40
    for kind in (
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "CareTeam",
        "DocumentReference",
        "Binary",
        "PractitionerRole",
    ):
        assert counts[kind] > 0, kind
    ids = [(r["resourceType"], r["id"]) for r in region]
    assert len(ids) == len(set(ids))


def test_every_nir_is_valid_and_matches_the_traits(region: list[dict[str, Any]]) -> None:
    seen_places = set()
    for patient in _by_type(region, "Patient"):
        tags = _tags(patient)
        nirs = [i for i in patient["identifier"] if i["type"]["coding"][0]["code"] in INS_TYPES]
        if "duplicate" not in tags:
            assert nirs or patient["birthDate"] > "2007", patient["id"]
        for ident in nirs:
            nir = ident["value"]
            assert is_valid_nir(nir), nir
            code = ident["type"]["coding"][0]["code"]
            assert ident["system"] == (
                "urn:oid:1.2.250.1.213.1.4.9"
                if code == "INS-NIA"
                else "urn:oid:1.2.250.1.213.1.4.8"
            )
            assert ident["use"] == ("temp" if code == "INS-NIA" else "official")
            if "duplicate" not in tags:
                assert (
                    check_nir(nir, sex=patient["gender"], birth_date=patient["birthDate"]) == []
                ), nir
            seen_places.add(nir[5:7])
    assert {"2A", "2B", "99"} <= seen_places  # Corsica-born and born abroad


def test_patient_shape(region: list[dict[str, Any]]) -> None:
    statuses = Counter()
    for patient in _by_type(region, "Patient"):
        ext = {e["url"]: e for e in patient["extension"]}
        birth = ext[NOM["extensions"]["birth_place"]]["valueAddress"]
        insee = birth["extension"][0]["valueCoding"]["code"]
        assert re.fullmatch(r"(\d{2}|2A|2B)\d{3}", insee)
        rel = ext[NOM["extensions"]["identity_reliability"]]["extension"]
        status = next(e["valueCoding"]["code"] for e in rel if e["url"] == "identityStatus")
        assert status in NOM["identity_status"]
        statuses[status] += 1
        official = [n for n in patient["name"] if n["use"] == "official"]
        assert len(official) == 1 and len(official[0]["given"]) == 1
        assert official[0]["extension"][0]["valueString"].startswith(official[0]["given"][0])
        has_ins = any(
            i["type"]["coding"][0]["code"].startswith("INS-") for i in patient["identifier"]
        )
        assert has_ins == (status == "QUAL")  # the INS travels only with a qualified identity
        home = patient["address"][0]
        commune = home["extension"][0]["valueCoding"]["code"]
        assert commune[:2] in ("2A", "2B") and home["postalCode"].startswith("20")
    assert statuses.most_common(1)[0][0] == "QUAL"
    assert len(statuses) >= 3


def test_codes_are_in_the_allowed_sets(region: list[dict[str, Any]]) -> None:
    measures = {m["code"]: m["unit"] for k, m in NOM["measures"].items() if not k.startswith("_")}
    weight = codes.unverified()["body_weight_loinc"]
    measures[weight["code"]] = weight["unit"]
    for obs in _by_type(region, "Observation"):
        coding = obs["code"]["coding"][0]
        assert coding["system"] == "http://loinc.org"
        assert coding["code"] in measures
        if "component" in obs:
            assert coding["code"] == "85354-9"
            for comp in obs["component"]:
                assert comp["code"]["coding"][0]["code"] in ("8480-6", "8462-4")
                assert comp["valueQuantity"]["code"] == "mm[Hg]"
        else:
            q = obs["valueQuantity"]
            assert q["system"] == "http://unitsofmeasure.org"
            assert q["code"] == measures[coding["code"]]
            if coding["code"] in ("2339-0", "8310-5", weight["code"]):
                assert isinstance(q["value"], Decimal)
    for doc in _by_type(region, "DocumentReference"):
        type_code = doc["type"]["coding"][0]["code"]
        assert type_code in NOM["document_types"]
        assert doc["category"][0]["coding"][0]["code"] in NOM["class_a03"]
        fmt = doc["content"][0]["format"]["code"]
        assert fmt in {m["format"] for m in NOM["cda_models"].values()}
        assert doc["context"]["facilityType"]["coding"][0]["code"] in NOM["secteur_r02"]
    for pr in _by_type(region, "Practitioner"):
        rpps = next(i for i in pr["identifier"] if i["system"] == "https://rpps.esante.gouv.fr")
        assert re.fullmatch(r"\d{11}", rpps["value"]) and luhn_ok(rpps["value"])
        assert pr["qualification"][0]["code"]["coding"][0]["code"] in NOM["professions_g15"]
    for org in _by_type(region, "Organization"):
        fin = [
            i["value"] for i in org["identifier"] if i["system"] == "https://finess.esante.gouv.fr"
        ]
        for value in fin:
            assert re.fullmatch(r"(2A|2B)\d{7}", value) and finess_ok(value)


def test_documents_binary_hash_and_cda_header(region: list[dict[str, Any]]) -> None:
    binaries = {b["id"]: b for b in _by_type(region, "Binary")}
    patients = {p["id"]: p for p in _by_type(region, "Patient")}
    kinds = Counter()
    for doc in _by_type(region, "DocumentReference"):
        att = doc["content"][0]["attachment"]
        binary = binaries[att["url"].removeprefix("Binary/")]
        content = base64.b64decode(binary["data"])
        assert att["size"] == len(content)
        assert att["hash"] == base64.b64encode(hashlib.sha1(content).digest()).decode()
        assert att["contentType"] == binary["contentType"]
        kinds[att["contentType"]] += 1
        if att["contentType"] == "application/pdf":
            assert content.startswith(b"%PDF-")
            continue
        root = etree.fromstring(content)
        ns = {"h": "urn:hl7-org:v3"}
        assert root.find("h:realmCode", ns).get("code") == "FR"
        templates = [t.get("root") for t in root.findall("h:templateId", ns)]
        assert templates[:2] == ["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"]
        assert root.find("h:code", ns).get("code") == doc["type"]["coding"][0]["code"]
        author = root.find("h:author/h:assignedAuthor/h:id", ns)
        assert author.get("root") == "1.2.250.1.71.4.2.1" and author.get("extension")[0] == "8"
        custodian = root.find(".//h:representedCustodianOrganization/h:id", ns)
        assert custodian.get("root") == "1.2.250.1.71.4.2.2"
        patient = patients[doc["subject"]["reference"].removeprefix("Patient/")]
        ids = {
            i.get("root"): i.get("extension")
            for i in root.findall("h:recordTarget/h:patientRole/h:id", ns)
        }
        ins = [
            i["value"]
            for i in patient["identifier"]
            if i["type"]["coding"][0]["code"] in ("INS-NIR", "INS-NIA")
        ]
        status = _status(patient)
        if status == "QUAL":
            assert set(ids.values()) >= set(ins)
        else:
            assert not set(ids) & {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9"}
        if doc["content"][0]["format"]["code"] == "urn:ihe:iti:xds-sd:pdf:2008":
            text = root.find("h:component/h:nonXMLBody/h:text", ns)
            assert base64.b64decode(text.text).startswith(b"%PDF-")
    assert kinds["application/pdf"] and kinds["text/xml"]


def _status(patient: dict[str, Any]) -> str:
    for ext in patient["extension"]:
        for sub in ext.get("extension", []):
            if sub["url"] == "identityStatus":
                return str(sub["valueCoding"]["code"])
    raise AssertionError("no identity status")


def test_references_resolve_to_earlier_resources(region: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for res in region:
        for ref in _references(res):
            assert ref in seen, (res["resourceType"], res["id"], ref)
        seen.add(f"{res['resourceType']}/{res['id']}")


def test_bundles_are_transactions_in_dependency_order() -> None:
    seen: set[str] = set()
    sizes = []
    for bundle in iter_bundles(60, SEED, bundle_size=100):
        assert bundle["type"] == "transaction"
        sizes.append(len(bundle["entry"]))
        urls = set()
        for entry in bundle["entry"]:
            res = entry["resource"]
            url = f"{res['resourceType']}/{res['id']}"
            assert entry["request"] == {"method": "PUT", "url": url}
            assert "fullUrl" not in entry  # R4: a fullUrl must be absolute; PUTs need none
            urls.add(url)
        for entry in bundle["entry"]:
            for ref in _references(entry["resource"]):
                assert ref in seen or ref in urls, ref
        seen |= urls
    assert max(sizes) <= 100 and sum(sizes) / len(sizes) > 50


def test_deterministic_bytes(tmp_path: Path) -> None:
    generate_command(patients=25, seed=5, out=tmp_path / "a")
    generate_command(patients=25, seed=5, out=tmp_path / "b")
    generate_command(patients=25, seed=6, out=tmp_path / "c")

    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert a == b and any(k.startswith("bundles/") for k in a)
    assert a != digest(tmp_path / "c")
    # NDJSON lines and bundle entries are the same resources
    lines = (tmp_path / "a" / "ndjson" / "Patient.ndjson").read_bytes().splitlines()
    first = decode(lines[0])
    assert encode(first) == lines[0]
    bundle = json.loads((tmp_path / "a" / "bundles" / "000001.json").read_text())
    assert bundle["resourceType"] == "Bundle"
    # same as the Python API
    api = [encode(r) for r in iter_resources(25, 5) if r["resourceType"] == "Patient"]
    assert api == lines


def test_decimals_stay_exact() -> None:
    obs = next(
        r
        for r in iter_resources(5, 3)
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "8310-5"
    )
    value = obs["valueQuantity"]["value"]
    assert isinstance(value, Decimal)
    assert f'"value":{value}'.encode() in encode(obs)
    obs["valueQuantity"]["value"] = Decimal("72.50")
    assert b'"value":72.50' in encode(obs)


def test_duplicates_and_homonyms_injected_as_configured() -> None:
    config = Config(duplicate_rate=0.3, homonym_rate=0.2)
    patients = {
        p["id"]: p for p in iter_resources(120, 9, config) if p["resourceType"] == "Patient"
    }
    dups = [p for p in patients.values() if "duplicate" in _tags(p)]
    homs = [p for p in patients.values() if "homonym" in _tags(p)]
    assert 20 <= len(dups) <= 55 and 10 <= len(homs) <= 40
    for dup in dups:
        original = patients[_tags(dup)["duplicate"].removeprefix("Patient/")]
        assert _status(dup) == "PROV"
        assert not any(i["type"]["coding"][0]["code"].startswith("INS-") for i in dup["identifier"])
        slip = next(k for k in _tags(dup) if k.startswith("slip-"))
        o_name = next(n for n in original["name"] if n["use"] == "official")
        d_name = next(n for n in dup["name"] if n["use"] == "official")
        assert (d_name["family"], d_name["given"], dup["birthDate"]) != (
            o_name["family"],
            o_name["given"],
            original["birthDate"],
        ), slip
        if slip == "slip-daymonth":
            o, d = (
                dt.date.fromisoformat(original["birthDate"]),
                dt.date.fromisoformat(dup["birthDate"]),
            )
            assert (o.day, o.month) == (d.month, d.day)
    for hom in homs:
        other = patients[_tags(hom)["homonym"].removeprefix("Patient/")]
        h_name = next(n for n in hom["name"] if n["use"] == "official")
        o_name = next(n for n in other["name"] if n["use"] == "official")
        assert (h_name["family"], h_name["given"], hom["birthDate"]) == (
            o_name["family"],
            o_name["given"],
            other["birthDate"],
        )
        nirs = {
            i["value"]
            for p in (hom, other)
            for i in p["identifier"]
            if i["type"]["coding"][0]["code"] in INS_TYPES
        }
        assert len(nirs) != 1  # two different persons never share a NIR
    none = [
        p
        for p in iter_resources(60, 9, Config(duplicate_rate=0, homonym_rate=0))
        if p["resourceType"] == "Patient" and _tags(p)
    ]
    assert none == []


def test_region_data_files() -> None:
    communes = codes.communes()
    assert 100 <= len(communes) <= 160
    assert all(c.insee[:2] in ("2A", "2B") and c.postal_codes[0].startswith("20") for c in communes)
    assert any("-" in n for n in codes.given_names("male")[0])
    assert any(ch in "éèêëàçïôü" for n in codes.family_names()[0] for ch in n)
    assert all(p.code.startswith("99") == (p.kind == "country") for p in codes.birthplaces())


def test_every_generated_resource_is_valid_fhir():
    """The region passes the same validation as any write (R4 + FR Core profiles)."""
    from socle.fhir.validation import get_validator

    validator = get_validator()
    for resource in iter_resources(60, 5):
        errors = [i for i in validator.validate(resource) if i.severity in ("error", "fatal")]
        assert not errors, (resource["resourceType"], errors[:3])

"""ANS terminology of the document metadata (socle.record.terminology): the value sets accept every
code the synthetic region uses and the codes of fr-documents §1.4-1.9, reject unknown codes and
systems with the value set named, and render as valid FHIR R4 ValueSets."""

from __future__ import annotations

from typing import Any

import pytest

from socle.fhir.validation import get_validator
from socle.record import terminology as t
from socle.region import codes
from socle.region.generate import iter_resources

NOM = codes.nomenclatures()
UNV = codes.unverified()
LOINC = "http://loinc.org"
A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
A08 = codes.system("a08")


@pytest.fixture(scope="module")
def docrefs() -> list[dict[str, Any]]:
    docs = [r for r in iter_resources(20, 7) if r["resourceType"] == "DocumentReference"]
    assert len({d["content"][0]["format"]["code"] for d in docs}) >= 5
    return docs


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# --- the generator's codes ----------------------------------------------------------------------


def test_every_code_of_the_generated_documents_is_accepted(docrefs: list[dict[str, Any]]) -> None:
    for i, doc in enumerate(docrefs):
        where = f"Bundle.entry[{i}].resource"
        ctx = doc["context"]
        issues = [
            *t.check_codeable("type", doc["type"], f"{where}.type"),
            *t.check_codeable("class", doc["category"][0], f"{where}.category[0]"),
            *t.check_codeable("format", doc["content"][0]["format"], f"{where}.content[0].format"),
            *t.check_codeable("facility", ctx["facilityType"], f"{where}.context.facilityType"),
            *t.check_codeable(
                "setting", ctx["practiceSetting"], f"{where}.context.practiceSetting"
            ),
        ]
        for j, label in enumerate(doc["securityLabel"]):
            issues += t.check_codeable("confidentiality", label, f"{where}.securityLabel[{j}]")
            issues += t.check_security_label(label, f"{where}.securityLabel[{j}]")
        assert issues == [], (doc["id"], issues)
        type_code = doc["type"]["coding"][0]["code"]
        assert t.class_of_type(type_code) == doc["category"][0]["coding"][0]["code"]


def test_every_code_of_the_generator_nomenclatures_is_in_its_value_set() -> None:
    for code in NOM["document_types"]:
        assert (LOINC, code) in t.value_set("type")
    for code in NOM["class_a03"]:
        assert (codes.system("a03"), code) in t.value_set("class")
    for code in NOM["secteur_r02"]:
        assert (codes.system("r02"), code) in t.value_set("facility")
    for code in NOM["cadre_exercice_a01"]:
        assert (codes.system("a01"), code) in t.value_set("setting")
    for code in NOM["confidentiality_a08"]:
        assert (A08, code) in t.value_set("confidentiality")
    for model in NOM["cda_models"].values():
        assert (codes.format_system(model["format"]), model["format"]) in t.value_set("format")


def test_format_systems_mirror_the_generator() -> None:
    vs = t.value_set("format")
    for system, code in vs.codes:
        if (
            code.startswith("urn:ihe:")
            or code.startswith("urn:asip")
            or code.startswith("urn:ans:")
        ):
            assert system == codes.format_system(code), code
            assert t.format_system(code) == system
    assert t.format_system("urn:nope") is None


def test_template_to_format_agrees_with_the_generator() -> None:
    for key, model in NOM["cda_models"].items():
        if key == "N1":
            assert t.format_of_template(model["template"]) is None  # depends on the payload
            assert t.is_model_template(model["template"])
            assert t.format_of_media_type("application/pdf") == model["format"]
        else:
            assert t.format_of_template(model["template"]) == model["format"], key


def test_type_to_class_is_the_generator_table() -> None:
    for type_code, class_code in UNV["type_to_class_a03"].items():
        assert t.class_of_type(type_code) == class_code
        assert (codes.system("a03"), class_code) in t.value_set("class")
    assert t.class_of_type("00000-0") is None
    assert "UNVERIFIED" in t._data()["type_class"]["_source"]


# --- the reference facts (fr-documents §1.4-1.9) ------------------------------------------------

J07_LOINC = [
    "11490-0",
    "34874-8",
    "57833-6",
    "57832-8",
    "57828-6",
    "11502-2",
    "18748-4",
    "34112-3",
    "11488-4",
    "15507-7",
    "18761-7",
    "60591-5",
    "34133-9",
    "77436-4",
    "34749-2",
    "60568-3",
    "34794-8",
    "87273-9",
    "11369-6",
    "85208-7",
    "75496-0",
    "55115-0",
    "89601-9",
    "83981-1",
    "88348-8",
    "28653-4",
    "96349-6",
    "86531-1",
    "56446-8",
    "29274-8",
]
J07_A05 = [
    "DOCPAT01",
    "DOCPAT02",
    "DOCPAT03",
    "DOCPAT04",
    "DOCPAT05",
    "DOCPAT06",
    "DOCPAT07",
    "DOCPAT08",
    "DOCPAT09",
    "EXPPAT_1",
    "EXPPAT_2",
    "EXPPAT_3",
    "PRESC-BIO",
    "PRESC-KINE",
    "PRESC-INF",
    "PRESC-PEDI",
    "PRESC-ORTHOPHO",
    "PRESC-ORTHOPTIE",
    "PRESC-AAT",
    "PROT_ALD",
    "REMB",
    "SYNTH",
    "IMG-KOS",
    "EXPORT_DUI",
    "CERT_DECL",
    "BIL_AUTO",
]
ASS_A11 = {  # fr-documents §1.9
    "1.2.250.1.213.1.1.1.29": "urn:asip:ci-sis:ldl-ses:2017",
    "1.2.250.1.213.1.1.1.21": "urn:asip:ci-sis:ldl-ees:2017",
    "1.3.6.1.4.1.19376.1.3.3": "urn:ihe:lab:xd-lab:2008",
    "1.2.250.1.213.1.1.1.55": "urn:ihe:lab:xd-lab:2008",
    "1.2.250.1.213.1.1.1.45": "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",
    "1.2.250.1.213.1.1.1.39": "urn:ihe:pharm:pre:2010",
    "1.2.250.1.213.1.1.1.54": "urn:ihe:pharm:dis:2010",
    "1.2.250.1.213.1.1.1.13": "urn:asip:ci-sis:vsm:2012",
    "1.2.250.1.213.1.1.1.37": "urn:asip:ci-sis:vac:2019",
    "1.2.250.1.213.1.1.1.46": "urn:asip:ci-sis:vac-note:2021",
    "1.2.250.1.213.1.1.1.40": "urn:asip:ci-sis:cr-anest:2020",
    "1.2.250.1.213.1.1.1.41": "urn:asip:ci-sis:cr-cpa:2020",
    "1.2.250.1.213.1.1.1.38": "urn:asip:ci-sis:tlm-da:2020",
    "1.2.250.1.213.1.1.1.47": "urn:ans:ci-sis:img-da:2022",
    "1.2.250.1.213.1.1.1.22": "urn:asip:ci-sis:dlu:2015",
    "1.2.250.1.213.1.1.1.58": "urn:asip:ci-sis:export-dui:2023",
    "1.2.250.1.213.1.1.1.56": "urn:asip:ci-sis:ppp:2023",
    "1.2.250.1.213.1.1.1.51": "urn:ihe:pcc:ips:2020",
}


def test_reference_type_codes() -> None:
    vs = t.value_set("type")
    assert vs.url == (
        "https://mos.esante.gouv.fr/NOS/JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS"
    )
    for code in J07_LOINC:
        assert (LOINC, code) in vs, code
    for code in J07_A05:
        assert (A05, code) in vs, code
    assert t.display("type", t._data()["systems"]["a12"]["url"], "E1762") == "Full Document"


def test_reference_formats() -> None:
    for template, fmt in ASS_A11.items():
        assert t.format_of_template(template) == fmt
        assert t.format_system(fmt) is not None
    assert t.format_of_media_type("text/plain") == "urn:ihe:iti:xds-sd:text:2008"
    assert t.format_of_media_type("image/jpeg") == "urn:ihe:iti-fr:xds-sd:jpeg:2010"
    assert t.format_of_media_type("Application/PDF ") == "urn:ihe:iti:xds-sd:pdf:2008"
    assert t.format_of_media_type("application/zip") is None
    assert t.format_of_template("1.2.3") is None


def test_reference_class_setting_facility_security() -> None:
    a03 = codes.system("a03")
    assert {c for s, c in t.value_set("class").codes if s == a03} == set(
        ["10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95", "99"]
    )
    a01 = codes.system("a01")
    assert {c for s, c in t.value_set("setting").codes if s == a01} == set(
        [
            "AMBULATOIRE",
            "AMO",
            "DEPISTAGE",
            "ESSMS",
            "ETABLISSEMENT",
            "HAD",
            "MAD",
            "PALLIATIF",
            "SAD",
            "SAMU_SMUR",
        ]
    )
    a00 = t._data()["systems"]["a00"]["url"]
    for key in ("setting", "facility"):
        assert (a00, "EXP_PATIENT") in t.value_set(key) and (a00, "SNR") in t.value_set(key)
    r02 = codes.system("r02")
    for code in ("SA01", "SA03", "SA04", "SA05", "SA07", "SA08", "SA16", "SA17", "SA25", "SA33"):
        assert (r02, code) in t.value_set("facility")
    for code in ("SA52", "SA63", "SA64", "SA69"):
        assert (r02, code) in t.value_set("facility")
    assert set(t.value_set("confidentiality").codes) == {(A08, "N"), (A08, "R"), (A08, "V")}
    assert {c for _, c in t.value_set("visibility").codes} == {
        "MASQUE_PS",
        "INVISIBLE_PATIENT",
        "INVISIBLE_REPRESENTANTS_LEGAUX",
        "MASQUE_PSOCIAL",
        "MASQUE_PT",
    }


def test_displays_are_french() -> None:
    assert t.display("class", codes.system("a03"), "31") == "Imagerie médicale"
    assert t.display("confidentiality", A08, "V") == "Très restreint"
    assert t.display("visibility", A07, "MASQUE_PS") == "Masqué aux professionnels de santé"
    assert t.display("type", LOINC, "34874-8") == "CR opératoire"
    assert t.display("type", LOINC, "nope") is None
    assert t.display("type", A05, "11490-0") is None


def test_oids_of_code_systems() -> None:
    assert t.system_url("2.16.840.1.113883.6.1") == LOINC
    assert t.system_url("urn:oid:1.2.250.1.213.1.1.4.12") == A05
    assert t.system_url("1.2.250.1.71.4.2.4") == codes.system("r02")
    assert t.system_oid(A08) == "2.16.840.1.113883.5.25"
    assert t.system_url("1.2.3.4") is None


# --- rejections ---------------------------------------------------------------------------------


def test_unknown_code_is_rejected_naming_the_value_set() -> None:
    vs = t.value_set("type")
    [issue] = t.check_codeable("type", _cc(LOINC, "99999-9"), "Bundle.entry[1].resource.type")
    assert (issue.severity, issue.code) == ("error", "code-invalid")
    assert issue.expression == ("Bundle.entry[1].resource.type.coding[0]",)
    assert vs.title in issue.diagnostics and vs.url in issue.diagnostics
    assert "'99999-9'" in issue.diagnostics and "not in value set" in issue.diagnostics


def test_unknown_system_is_rejected_naming_the_value_set() -> None:
    [issue] = t.check_codeable(
        "class", _cc("http://example.org/cs", "10"), "DocumentReference.category[0]"
    )
    assert issue.code == "code-invalid"
    assert issue.expression == ("DocumentReference.category[0].coding[0]",)
    assert "code system 'http://example.org/cs' is not used" in issue.diagnostics
    assert "JDV_J06-XdsClassCode-CISIS" in issue.diagnostics
    assert t.value_set("class").url in issue.diagnostics
    assert codes.system("a03") in issue.diagnostics  # the expected systems are listed


def test_oid_system_gets_a_hint() -> None:
    [issue] = t.check_codeable("type", _cc("urn:oid:2.16.840.1.113883.6.1", "11490-0"), "X.type")
    assert "use that canonical URL" in issue.diagnostics and LOINC in issue.diagnostics


@pytest.mark.parametrize("key", t.KEYS)
def test_each_value_set_rejects_a_foreign_code(key: str) -> None:
    vs = t.value_set(key)
    system = vs.systems[0]
    [issue] = t.check_codeable(key, _cc(system, "NOT-A-CODE"), "X.v")
    assert vs.url in issue.diagnostics and (vs.title in issue.diagnostics)
    other = next(k for k in t.KEYS if t.value_set(k).systems[0] not in vs.systems)
    foreign = next(iter(t.value_set(other).codes))
    assert t.check_codeable(key, _cc(*foreign), "X.v")


def test_format_is_a_coding() -> None:
    ok = {"system": codes.system("a11"), "code": "urn:ihe:iti:xds-sd:pdf:2008"}
    assert t.check_codeable("format", ok, "DocumentReference.content[0].format") == []
    bad = {"system": codes.system("a06"), "code": "urn:ihe:iti:xds-sd:pdf:2008"}
    [issue] = t.check_codeable("format", bad, "DocumentReference.content[0].format")
    assert issue.expression == ("DocumentReference.content[0].format",)
    assert "JDV_J10-XdsFormatCode-CISIS" in issue.diagnostics
    # a CodeableConcept is accepted too
    assert t.check_codeable("format", {"coding": [ok]}, "X") == []


def test_one_good_coding_is_enough_and_missing_is_not_ours() -> None:
    value = {"coding": [{"system": LOINC, "code": "nope"}, {"system": LOINC, "code": "11490-0"}]}
    assert t.check_codeable("type", value, "X.type") == []
    assert t.check_codeable("type", None, "X.type") == []


@pytest.mark.parametrize(
    "value",
    [
        "11490-0",
        {"text": "Lettre de liaison"},
        {"coding": []},
        {"coding": "x"},
        {"coding": [None]},
        {"coding": [{"code": "11490-0"}]},
        {"coding": [{"system": LOINC}]},
        {"coding": [{"system": LOINC, "code": 11490}]},
    ],
)
def test_malformed_values_give_issues_not_exceptions(value: Any) -> None:
    issues = t.check_codeable("type", value, "X.type")
    assert issues and all(i.code == "code-invalid" and i.severity == "error" for i in issues)
    assert all(i.expression[0].startswith("X.type") for i in issues)


def test_security_label_accepts_both_kinds() -> None:
    assert t.check_security_label(_cc(A08, "R"), "X.securityLabel[0]") == []
    assert t.check_security_label(_cc(A07, "INVISIBLE_PATIENT"), "X.securityLabel[1]") == []
    [issue] = t.check_security_label(_cc(A07, "MASQUE_TOUT"), "X.securityLabel[0]")
    assert "JDV_J110" in issue.diagnostics and issue.expression == ("X.securityLabel[0].coding[0]",)
    [issue] = t.check_security_label(_cc("http://x", "N"), "X.securityLabel[0]")
    assert "JDV_J08" in issue.diagnostics and "JDV_J110" in issue.diagnostics
    # a visibility code is not a confidentiality code
    assert t.check_codeable("confidentiality", _cc(A07, "MASQUE_PS"), "X")


def test_unknown_key() -> None:
    with pytest.raises(KeyError, match="unknown value set key"):
        t.value_set("event")


# --- FHIR rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", t.KEYS)
def test_as_fhir_valueset_is_valid_r4(key: str) -> None:
    vs = t.value_set(key)
    res = t.as_fhir_valueset(key)
    errors = [i for i in get_validator().validate(res) if i.severity in ("error", "fatal")]
    assert errors == []
    assert res["resourceType"] == "ValueSet" and res["status"] == "active"
    assert (res["url"], res["name"]) == (vs.url, vs.name) and res["version"]
    assert vs.url.startswith("https://mos.esante.gouv.fr/NOS/JDV_J")
    listed = {
        (inc["system"], c["code"]): c["display"]
        for inc in res["compose"]["include"]
        for c in inc["concept"]
    }
    assert listed == dict(vs.codes)
    assert [inc["system"] for inc in res["compose"]["include"]] == list(vs.systems)

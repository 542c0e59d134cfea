"""Alias parameters (a union of other parameters of the type, Observation's combo-*): their rows
are not stored, a search on one reads its bases' rows (`stored_codes`). Searches give what they
gave when the rows were stored: the same resources as the union of the bases' searches, and as
the rows an alias's own expression selects (walked here, in memory)."""

from __future__ import annotations

from typing import Any

import psycopg

from socle.fhir.indexing.extract import (
    _ADDERS,
    IndexRows,
    _composite_rows,
    aliases,
    index_resource,
    indexed_params,
    stored_codes,
)
from socle.fhir.storage.writer import _TABLE_COLUMNS
from socle.migrations import ALIAS_ROWS_V550, migrate
from socle.testing import database_beside

from .helpers import create, patient, unique
from .test_index_roots import OBSERVATIONS

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _walked(resource: dict[str, Any], code: str) -> IndexRows:
    """The rows of parameter `code` of this resource, its expression walked (stored or not)."""
    rows = IndexRows()
    for ip in indexed_params(resource["resourceType"]):
        if ip.param.code != code:
            continue
        if ip.components:
            _composite_rows(rows, ip, resource)
        else:
            for value, fhir_type in ip.path.values(resource):
                _ADDERS[ip.param.type](rows, code, value, fhir_type)
    return rows


def _keyed(rows: IndexRows) -> dict[str, list[tuple[Any, ...]]]:
    """Rows without their parameter code (and a composite's element number): what they say."""
    out = {}
    for kind in IndexRows.__slots__:
        found = getattr(rows, kind)
        if kind == "composite":
            out[kind] = sorted((r[2:] for r in found), key=repr)
        else:
            out[kind] = sorted((r[1:] for r in found), key=repr)
    return out


def _observations(subject: str) -> list[dict[str, Any]]:
    def coded(code: str) -> dict[str, Any]:
        return {"coding": [{"system": LOINC, "code": code, "display": f"Libellé {code}"}]}

    absent = {"coding": [{"system": "http://x/absent", "code": "unknown"}]}
    return [
        {  # a value, no component
            "resourceType": "Observation",
            "status": "final",
            "code": coded("8867-4"),
            "subject": {"reference": subject},
            "valueQuantity": {"value": 60, "unit": "/min", "system": UCUM, "code": "/min"},
        },
        {  # a panel: components only
            "resourceType": "Observation",
            "status": "final",
            "code": coded("85354-9"),
            "subject": {"reference": subject},
            "component": [
                {
                    "code": coded("8480-6"),
                    "valueQuantity": {"value": 150, "system": UCUM, "code": "mm[Hg]"},
                },
                {
                    "code": coded("8462-4"),
                    "valueQuantity": {"value": 95, "system": UCUM, "code": "mm[Hg]"},
                },
            ],
        },
        {  # a value and components, concepts and a missing one
            "resourceType": "Observation",
            "status": "final",
            "code": coded("8480-6"),
            "subject": {"reference": subject},
            "valueCodeableConcept": {"coding": [{"system": "http://x/c", "code": "high"}]},
            "component": [
                {"code": coded("8867-4"), "valueQuantity": {"value": 61, "system": UCUM}},
                {"code": coded("9279-1"), "dataAbsentReason": absent},
                {
                    "code": coded("8462-4"),
                    "valueCodeableConcept": {"coding": [{"system": "http://x/c", "code": "low"}]},
                },
            ],
        },
        {  # nothing but a reason for no value
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Sans code"},
            "subject": {"reference": subject},
            "dataAbsentReason": absent,
        },
    ]


def test_aliases_are_the_combo_parameters_and_the_migration_removes_theirs() -> None:
    found = aliases("Observation")
    assert found["combo-code"] == ("code", "component-code")
    assert set(found["combo-code-value-quantity"]) == {
        "code-value-quantity",
        "component-code-value-quantity",
    }
    # the migration deleted exactly the rows of the built-in aliases
    assert all(f"'{code}'" in ALIAS_ROWS_V550 for code in found)
    assert ALIAS_ROWS_V550.count("'combo-") == len(found)
    assert stored_codes("Observation", "code") == ("code",)
    assert stored_codes("Patient", "name") == ("name",)


def test_an_alias_rows_are_its_bases_rows_and_are_not_stored() -> None:
    resources = OBSERVATIONS + _observations("Patient/p") + _observations("Group/g")
    for resource in resources:
        stored = index_resource(resource)
        codes = {r[0] for kind in IndexRows.__slots__ for r in getattr(stored, kind)}
        for alias, bases in aliases(resource["resourceType"]).items():
            assert alias not in codes, (alias, resource)
            union = IndexRows()
            for base in bases:
                walked = _walked(resource, base)
                for kind in IndexRows.__slots__:
                    getattr(union, kind).extend(getattr(walked, kind))
            assert _keyed(_walked(resource, alias)) == _keyed(union), (alias, resource)


def test_searches_on_aliases_over_http(client) -> None:
    pid = create(client, patient(f"Alias{unique()}"))["id"]
    group = create(client, {"resourceType": "Group", "type": "person", "actual": True})["id"]
    device = create(client, {"resourceType": "Device", "status": "active"})["id"]
    ids: dict[str, list[str]] = {}
    for subject in (f"Patient/{pid}", f"Group/{group}", f"Device/{device}"):
        ids[subject] = [create(client, o)["id"] for o in _observations(subject)]
    every = [i for made in ids.values() for i in made]
    mine = ",".join(every)

    def found(**params: str) -> list[str]:
        r = client.get("/Observation", params={"_id": mine, "_count": "100", **params})
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", [])]

    def each(i: int) -> set[str]:
        return {made[i] for made in ids.values()}

    cases = [
        ("combo-code", f"{LOINC}|8867-4", each(0) | each(2)),
        ("combo-code", "8480-6", each(1) | each(2)),
        ("combo-code", "85354-9,9279-1", each(1) | each(2)),
        ("combo-code:text", "libellé 8462", each(1) | each(2)),
        ("combo-code:not", "8867-4", each(1) | each(3)),
        ("combo-code:missing", "false", set(every)),  # a text-only code has its row
        ("combo-value-quantity", "60", each(0)),
        ("combo-value-quantity", "ge61", each(1) | each(2)),
        ("combo-value-quantity", "gt100|http://unitsofmeasure.org|mm[Hg]", each(1)),
        ("combo-value-quantity:missing", "true", each(3)),
        ("combo-value-concept", "http://x/c|low", each(2)),
        ("combo-value-concept", "high", each(2)),
        ("combo-data-absent-reason", "unknown", each(2) | each(3)),
        ("combo-code-value-quantity", "8462-4$ge95", each(1)),
        ("combo-code-value-quantity", "8867-4$ge60", each(0) | each(2)),
        ("combo-code-value-quantity", "8867-4$61", each(2)),
        ("combo-code-value-concept", f"{LOINC}|8462-4$low", each(2)),
        ("combo-code-value-concept", "8480-6$high", each(2)),
        ("combo-code-value-concept", "8480-6$low", set()),
    ]
    for name, value, expected in cases:
        assert set(found(**{name: value})) == expected, (name, value)
        code, _, modifier = name.partition(":")
        union: set[str] = set()
        for base in aliases("Observation")[code]:
            union |= set(found(**{f"{base}{':' + modifier if modifier else ''}": value}))
        if modifier not in ("not", "missing"):  # these do not distribute over a union
            assert union == expected, (name, value)
    # chained from the subject, by patient, in a compartment, sorted on an alias
    assert set(found(**{"combo-code": "8867-4", "patient": pid})) == {
        ids[f"Patient/{pid}"][0],
        ids[f"Patient/{pid}"][2],
    }
    assert set(found(**{"combo-code": "8867-4", "subject:Group._id": group})) == {
        ids[f"Group/{group}"][0],
        ids[f"Group/{group}"][2],
    }
    r = client.get(f"/Patient/{pid}/Observation", params={"combo-code": "8462-4"})
    assert r.status_code == 200, r.text
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {
        ids[f"Patient/{pid}"][1],
        ids[f"Patient/{pid}"][2],
    }
    ascending = found(**{"subject": f"Patient/{pid}", "_sort": "combo-value-quantity"})
    # smallest value of each: 60, 95 (the panel), 61; the one without quantity last
    assert ascending == [ids[f"Patient/{pid}"][i] for i in (0, 2, 1, 3)]
    descending = found(**{"subject": f"Patient/{pid}", "_sort": "-combo-value-quantity"})
    assert descending == [ids[f"Patient/{pid}"][i] for i in (1, 2, 0, 3)]
    # _has on the patient, through an alias of the observations
    r = client.get("/Patient", params={"_id": pid, "_has:Observation:patient:combo-code": "9279-1"})
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [pid]


def _as_before_550(conn: Any, resources: list[dict[str, Any]]) -> None:
    """The schema of the versions before 550 and the rows they stored: every parameter's, the
    aliases' too."""
    migrate(conn, before=550)
    for rid, resource in enumerate(resources, 1):
        rows = IndexRows()
        for ip in indexed_params(resource["resourceType"]):
            walked = _walked(resource, ip.param.code)
            for kind in IndexRows.__slots__:
                getattr(rows, kind).extend(getattr(walked, kind))
        for kind, (table, columns, _types) in _TABLE_COLUMNS.items():
            for row in getattr(rows, kind):
                conn.execute(
                    f"INSERT INTO {table} (rid, rtype, {', '.join(columns)}) "
                    f"VALUES (%s, %s{', %s' * len(columns)})",
                    (rid, resource["resourceType"], *row),
                )


def _stored(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for kind, (table, columns, _types) in _TABLE_COLUMNS.items():
        found = conn.execute(f"SELECT rid, {', '.join(columns)} FROM {table}").fetchall()
        out[kind] = sorted((tuple(r) for r in found), key=repr)
    return out


def test_migration_550_deletes_the_aliases_rows_only(database) -> None:
    resources = [*_observations("Patient/p"), *OBSERVATIONS]
    with database_beside(database, "socle_aliasmig") as db:
        assert db.url is not None
        with psycopg.connect(db.url, autocommit=True) as conn:
            _as_before_550(conn, resources)
            before = conn.execute(
                "SELECT count(*) FROM idx_composite WHERE param LIKE 'combo-%'"
            ).fetchone()
            assert before is not None and before[0] > 0
            assert 550 in migrate(conn)
            # what is left is what the new version stores for these resources
            expected: dict[str, list[tuple[Any, ...]]] = {}
            for kind in _TABLE_COLUMNS:
                expected[kind] = sorted(
                    (
                        (rid, *row)
                        for rid, resource in enumerate(resources, 1)
                        for row in getattr(index_resource(resource), kind)
                    ),
                    key=repr,
                )
            assert _stored(conn) == expected

"""The `$export` kick-off's parameters (a client's mistake is a 400 naming the parameter, never
anything else) and the NDJSON files split by bytes. No database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.bulk.export import ExportRequest, parse_export
from socle.bulk.files import NdjsonFiles, WrittenFile
from socle.fhir.outcome import FhirError

NAMES = ["_type", "_since", "_typeFilter", "_outputFormat", "_elements", "patient", "_x", "_count"]
VALUES = [
    "Patient",
    "Observation,Patient",
    "Binary",
    "Nope",
    "2026-01-01T00:00:00Z",
    "2026",
    "yesterday",
    "Observation?code=1234-5",
    "Observation?zzz=1",
    "Observation",
    "Patient?_sort=name",
    "application/fhir+ndjson",
    "ndjson",
    "text/csv",
    "",
]


def test_a_full_kick_off_is_read() -> None:
    asked = parse_export(
        "system",
        None,
        [
            ("_type", "Patient,Observation"),
            ("_since", "2026-01-01T00:00:00Z"),
            ("_typeFilter", "Observation?code=http://loinc.org|29463-7"),
            ("_typeFilter", "Observation?status=final"),
            ("_outputFormat", "application/fhir+ndjson"),
            ("_elements", "Observation.status,id"),
        ],
        1000,
    )
    assert asked == ExportRequest(
        "system",
        None,
        ["Patient", "Observation"],
        "2026-01-01T00:00:00Z",
        {"Observation": ["code=http://loinc.org|29463-7", "status=final"]},
        ["Observation.status", "id"],
    )


@pytest.mark.parametrize(
    ("level", "pairs", "where"),
    [
        ("system", [("_type", "Binary")], "_type"),
        ("patient", [("_type", "Organization")], "_type"),
        ("system", [("_typeFilter", "Observation?_count=3")], "_typeFilter"),
        (
            "system",
            [("_type", "Patient"), ("_typeFilter", "Observation?status=final")],
            "_typeFilter",
        ),
        ("system", [("_outputFormat", "application/json")], "_outputFormat"),
    ],
)
def test_mistakes_name_their_parameter(
    level: str, pairs: list[tuple[str, str]], where: str
) -> None:
    with pytest.raises(FhirError) as caught:
        parse_export(level, None, pairs, 1000)
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == (where,)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["system", "patient", "group"]),
    st.lists(
        st.tuples(st.sampled_from(NAMES), st.one_of(st.sampled_from(VALUES), st.text(max_size=30))),
        max_size=6,
    ),
)
def test_any_kick_off_is_read_or_refused_as_a_client_mistake(
    level: str, pairs: list[tuple[str, str]]
) -> None:
    try:
        asked = parse_export(level, "g1" if level == "group" else None, pairs, 1000)
    except FhirError as err:
        assert 400 <= err.status < 500
        assert err.issues and err.issues[0].severity == "error"
        return
    assert asked.level == level
    assert set(asked.type_filters) <= set(asked.types) or not asked.types


def test_files_are_split_by_bytes_and_record_their_patients(tmp_path: Path) -> None:
    closed: list[WrittenFile] = []

    async def on_close(done: WrittenFile) -> None:
        closed.append(done)

    async def write() -> None:
        files = NdjsonFiles(tmp_path, "Observation", "output", 100, on_close)
        for i in range(10):
            await files.write(
                b'{"resourceType":"Observation","id":"%d","x":"%s"}' % (i, b"y" * 20), f"p{i % 3}"
            )
        await files.close()
        await files.close()  # closing twice records nothing more

    asyncio.run(write())
    assert [f.name for f in closed] == [
        f"Observation-{n}.ndjson" for n in range(1, len(closed) + 1)
    ]
    assert sum(f.count for f in closed) == 10
    for f in closed:
        data = (tmp_path / f.name).read_bytes()
        assert len(data) == f.bytes and data.count(b"\n") == f.count
        assert f.bytes < 100 + 60  # past the limit by one line at most
    assert set().union(*(f.patients for f in closed)) == {"p0", "p1", "p2"}

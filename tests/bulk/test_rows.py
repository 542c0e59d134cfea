"""The import's pure parts: COPY text escaping, chunking around committed ranges, line checks."""

from __future__ import annotations

import base64
import hashlib
import pickle
import re
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from socle.bulk.importer import _filling, _ranges_chunks
from socle.bulk.rows import _text, make_rows
from socle.bulk.sources import Source
from socle.fhir.json import encode
from socle.fhir.outcome import Issue
from socle.record.cda import CdaError, read_header
from socle.record.read_ahead import read_ahead, reading_ahead, remember, taken
from socle.region.generate import iter_resources

_UNESCAPE = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def copy_unescape(field: str) -> str:
    """How PostgreSQL's COPY text format reads a field back."""
    return re.sub(r"\\[\\tnr]", lambda m: _UNESCAPE[m.group(0)], field)


@given(st.text())
def test_copy_text_fields_read_back_as_written(value: str) -> None:
    field = _text(value)
    assert "\t" not in field and "\n" not in field and "\r" not in field
    assert copy_unescape(field) == value


def write_lines(tmp: Path, n: int) -> Source:
    path = tmp / "lines.ndjson"
    path.write_bytes(b"".join(b"{}\n" for _ in range(n)))
    return Source(str(path), path, "x", path.stat().st_size, n)


@given(
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=1, max_value=7),
    st.lists(st.tuples(st.integers(1, 60), st.integers(1, 9)), max_size=5),
)
def test_chunks_cover_each_line_not_committed_once(
    tmp_path_factory, lines: int, size: int, spans: list[tuple[int, int]]
) -> None:
    source = write_lines(tmp_path_factory.mktemp("c"), lines)
    # committed chunks never overlap
    covered, end = [], 0
    for first, n in sorted(spans):
        if first > end:
            covered.append((first, n))
            end = first + n - 1
    done = {line for first, n in covered for line in range(first, first + n)}
    seen: list[int] = []
    skipped = 0
    for item in _ranges_chunks(source, covered, size):
        if isinstance(item, int):
            skipped += item
            continue
        first, chunk = item
        assert 1 <= len(chunk) <= size
        seen.extend(range(first, first + len(chunk)))
    assert seen == [n for n in range(1, lines + 1) if n not in done]
    assert skipped == len(done & set(range(1, lines + 1)))


def test_a_line_is_checked_as_a_rest_write_and_made_into_rows() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    lines = [
        b'{"resourceType":"Patient","id":"p1","gender":"female","name":[{"family":"A\\\\B"}]}\n',
        b"\n",
        b'{"resourceType":"Patient","id":"p 2"}\n',
        b'{"resourceType":"Nope","id":"x"}\n',
        b'{"resourceType":"Binary","id":"b1","contentType":"text/plain","data":"eA=="}\n',
        b"[1, 2]\n",
    ]
    rows = make_rows(10, lines, list(range(100, 106)), now)
    assert rows.written == [(10, "Patient", "p1", "p1")]
    assert rows.engine == [(14, "Binary", "b1")]
    assert [n for n, _ in rows.bad] == [12, 13, 15]
    assert all(o["resourceType"] == "OperationOutcome" for _, o in rows.bad)
    resource = rows.resource_rows[0].decode().rstrip("\n").split("\t")
    assert resource[:7] == ["100", "Patient", "p1", "1", now.isoformat(), "f", "p1"]
    # the JSON's own backslash (an escaped one in the name) doubled for COPY
    assert '"family":"A\\\\\\\\B"' in resource[7]
    assert '"versionId":"1"' in resource[7]
    assert b"100\tPatient\tgender\t\\N\tfemale\t\\N\n" in rows.index_rows["token"][0]


def test_lines_for_the_unit_of_work_are_validated_and_their_cda_headers_read() -> None:
    """The workers validate the lines the unit of work writes too (it takes them as validated:
    `EntryRequest.validated`) and read each CDA Binary's header from its data, for the shared
    record's rule; both reach the importing process (pickled) as they were."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    made = list(iter_resources(3, 7))
    binary = next(
        r for r in made if r["resourceType"] == "Binary" and r["contentType"] == "text/xml"
    )
    doc = next(r for r in made if r["resourceType"] == "DocumentReference")
    broken = {**binary, "id": "b-broken", "data": base64.b64encode(b"<ClinicalDocument/>").decode()}
    lines = [encode(r) + b"\n" for r in (binary, doc, {**doc, "status": "nope"}, broken)]
    rows = pickle.loads(pickle.dumps(make_rows(1, lines, [1, 2, 3, 4], now)))
    assert rows.engine == [
        (1, "Binary", binary["id"]),
        (2, "DocumentReference", doc["id"]),
        (4, "Binary", "b-broken"),
    ]
    assert [n for n, _ in rows.bad] == [3]
    assert rows.bad[0][1]["issue"][0]["expression"] == ["DocumentReference.status"]
    data = base64.b64decode(binary["data"])
    ahead = dict(rows.read_ahead)
    assert len(ahead) == 2
    assert ahead[(hashlib.sha1(data).digest(), len(data))] == read_header(data)
    refused = ahead[(hashlib.sha1(b"<ClinicalDocument/>").digest(), 19)]
    assert isinstance(refused, tuple) and all(i.severity == "error" for i in refused)


def test_headers_read_ahead_are_offered_inside_the_import_and_taken_once() -> None:
    made = list(iter_resources(3, 7))
    binary = next(
        r for r in made if r["resourceType"] == "Binary" and r["contentType"] == "text/xml"
    )
    found = read_ahead(binary)
    assert found is not None
    key, header = found
    assert read_ahead({**binary, "contentType": "application/pdf"}) is None
    remember([found])  # outside an import: nothing is held
    assert taken(key) is None
    with reading_ahead():
        remember([found])
        assert taken(key) == header
        assert taken(key) is None
        remember([(key, (Issue("error", "invalid", "CDA: no"),))])
        refused = taken(key)
        assert isinstance(refused, CdaError) and refused.issues[0].diagnostics == "CDA: no"
    assert taken(key) is None


def test_a_run_s_first_chunks_are_smaller_while_the_workers_fill_the_pipeline() -> None:
    lines = [b"{}\n"] * 2000
    sizes = [(first, len(chunk)) for first, chunk in _filling(1, lines, 0)]
    assert sizes == [(1, 250), (251, 500), (751, 1000), (1751, 250)]
    assert [(f, len(c)) for f, c in _filling(2001, lines, 3)] == [(2001, 2000)]
    assert [(f, len(c)) for f, c in _filling(1, lines, 2)] == [(1, 1000), (1001, 1000)]
    # a small --chunk is kept as it is
    assert [(f, len(c)) for f, c in _filling(5, lines[:2], 0)] == [(5, 2)]

"""ITI-65 Provide Document Bundle against golden files (`tests/data/record/<case>/`): each
input Bundle is submitted by the author and the whole response, normalised, is compared with the
expected one (`tests/golden.py`; SOCLE_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

from typing import Any

import pytest

from ..golden import cases, check, placeholders, read_input
from .world import RecordWorld, pdf_document

CONTENT_KEY = "<content-key>"


@pytest.fixture(scope="module")
def world(server):
    return RecordWorld(server)


def _without_content_keys(body: Any) -> Any:
    """The content store's object keys (random) replaced by a placeholder."""
    if isinstance(body, list):
        return [_without_content_keys(v) for v in body]
    if not isinstance(body, dict):
        return body
    if body.get("url") == "key" and "valueString" in body:
        return {**body, "valueString": CONTENT_KEY}
    return {k: _without_content_keys(v) for k, v in body.items()}


@pytest.mark.parametrize("case", cases("record"))
def test_iti65_response_is_the_expected_one(world, case):
    values = {**world.golden_values(), "base": world.server.fhir}
    if "replaced" in placeholders("record", case):
        # the document replaced is one provided just before
        old = world.provide(world.bundle(pdf_document("Version 1")))
        values["replaced"] = old["DocumentReference"]
    with world.pro("author") as c:
        r = c.post("", json=read_input("record", case, values))
    check("record", case, r.status_code, _without_content_keys(r.json()), values)

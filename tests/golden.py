"""Golden files of protocol exchanges: `tests/data/<service>/<case>/input.json` is sent as it
is, once its `{{name}}` placeholders are filled with the values of the test's world (patient
and organisation ids, RPPS numbers), and the response, normalised, must equal `expected.json`.

Normalising puts the placeholders back for the world's values and replaces what changes from run
to run (ids the server chose, versions, timestamps) by `<id-N>` (numbered in order of
appearance, so an id met twice stays the same), `<version>` and `<timestamp>`.
`SOCLE_UPDATE_GOLDEN=1` rewrites the expected files from the responses instead of comparing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
UPDATE = os.environ.get("SOCLE_UPDATE_GOLDEN") == "1"

PLACEHOLDER = re.compile(r"\{\{([\w.-]+)\}\}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
SERVER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VERSIONED = re.compile(r"/_history/\d+")
ETAG = re.compile(r'^W/"\d+"$')


def cases(service: str) -> list[str]:
    """The cases of a service, by directory name."""
    return sorted(p.name for p in (DATA / service).iterdir() if (p / "input.json").is_file())


def placeholders(service: str, case: str) -> set[str]:
    """The names the case's input needs a value for."""
    return set(PLACEHOLDER.findall((DATA / service / case / "input.json").read_text()))


def read_input(service: str, case: str, values: dict[str, str]) -> Any:
    text = (DATA / service / case / "input.json").read_text()
    missing = set(PLACEHOLDER.findall(text)) - set(values)
    assert not missing, f"{service}/{case}: no value for {sorted(missing)}"
    return json.loads(PLACEHOLDER.sub(lambda m: values[m.group(1)], text))


class _Normaliser:
    def __init__(self, values: dict[str, str]) -> None:
        # longest first: a value that contains another is put back whole
        self.known = sorted(values.items(), key=lambda kv: -len(kv[1]))
        self.ids: dict[str, str] = {}

    def text(self, value: str) -> str:
        for name, known in self.known:
            value = value.replace(known, "{{%s}}" % name)
        value = TIMESTAMP.sub("<timestamp>", value)
        value = VERSIONED.sub("/_history/<version>", value)
        value = ETAG.sub('W/"<version>"', value)
        return SERVER_ID.sub(self._id, value)

    def _id(self, match: re.Match[str]) -> str:
        return self.ids.setdefault(match.group(0), f"<id-{len(self.ids) + 1}>")

    def walk(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if key == "versionId":
            return "<version>"
        if isinstance(value, str):
            return self.text(value)
        return value


def normalise(body: Any, values: dict[str, str]) -> Any:
    return _Normaliser(values).walk(body)


def check(service: str, case: str, status: int, body: Any, values: dict[str, str]) -> None:
    """Compare a response with the case's expected one (or rewrite it, SOCLE_UPDATE_GOLDEN=1)."""
    actual = {"status": status, "body": normalise(body, values)}
    path = DATA / service / case / "expected.json"
    if UPDATE:
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
        return
    assert path.is_file(), f"{path} is missing: run once with SOCLE_UPDATE_GOLDEN=1"
    assert actual == json.loads(path.read_text())

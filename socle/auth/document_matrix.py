"""The profession × document-type matrix (matrice d'habilitations, arrêté du 26/10/2023).

Which document types (``DocumentReference.type``) a professional may read depends on the
profession (TRE_G15): the matrix lists, per profession, the types it may not read. It applies on
top of the care relationship (a professional still needs one) and after the patient's own
choices; a professional of several professions is denied a type only when all of them are. The
data is configuration (``SOCLE_DOCUMENT_MATRIX_FILE``; default: the packaged
``data/document_matrix.json``, whose rows are the published examples only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import document_matrix_file

Type = tuple[str, str]  # (system, code)


@dataclass(frozen=True)
class DocumentMatrix:
    profession_system: str
    denied: Mapping[str, frozenset[Type]]

    def denied_types(self, professions: Iterable[str]) -> frozenset[Type]:
        """The types none of these professions may read."""
        sets = [self.denied.get(p, frozenset()) for p in professions]
        if not sets:
            return frozenset()
        out = sets[0]
        for s in sets[1:]:
            out &= s
        return out


def parse_matrix(data: Mapping[str, Any]) -> DocumentMatrix:
    denied: dict[str, set[Type]] = {}
    for row in data.get("deny") or []:
        types = {(str(s), str(c)) for s, c in row.get("types") or []}
        denied.setdefault(str(row["profession"]), set()).update(types)
    return DocumentMatrix(
        str(data.get("profession_system") or ""),
        {k: frozenset(v) for k, v in denied.items()},
    )


def matrix_data(path: Path | None, packaged: str) -> dict[str, Any]:
    """A matrix's data: the configured file, else the one packaged in ``data/``."""
    if path:
        with open(path, encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
            return data
    text = resources.files(__package__).joinpath("data", packaged).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def document_matrix() -> DocumentMatrix:
    return parse_matrix(matrix_data(document_matrix_file(), "document_matrix.json"))


def professions_of(practitioner: Mapping[str, Any], system: str) -> frozenset[str]:
    """The TRE_G15 profession codes of a Practitioner's qualifications."""
    out = set()
    for q in practitioner.get("qualification") or []:
        for c in ((q or {}).get("code") or {}).get("coding") or []:
            if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str):
                out.add(c["code"])
    return frozenset(out)


def document_types(resource: Mapping[str, Any]) -> frozenset[Type]:
    return frozenset(
        (str(c.get("system")), str(c.get("code")))
        for c in (resource.get("type") or {}).get("coding") or []
        if isinstance(c, dict)
    )

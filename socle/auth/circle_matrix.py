"""The care circle's profession × role matrix: what a member of a patient's care circle
(``CareTeam``, the ANS *Cercle de soins*) may read and write in that patient's record.

A care circle is a CareTeam that declares one of the matrix's ``circle_profiles`` (the CDS
CareTeam profile); any other CareTeam is a care team as before: its members get the care
relationship's full access.

A professional linked to a patient by the circle only (not médecin traitant, no active encounter
of his organisation, no consent naming him) gets the care relationship's access restricted to
the resource types the matrix opens to his professions (TRE_G15) and his roles in the circle
(``CareTeam.participant.role`` codes): the union of every matching row, ``*`` matching anything.
The patient's shared plan (``plan_types``) is shown to the circle once the patient agreed to
share it (an active Consent of category ``plan_consent``); before that, to the rows marked
``plan_before_consent`` only (the coordinator). The data is configuration
(``SOCLE_CIRCLE_MATRIX_FILE``; default: the packaged ``data/circle_matrix.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..config import circle_matrix_file
from .document_matrix import matrix_data
from .policy import CircleScope

ANY = "*"


@dataclass(frozen=True)
class MatrixRow:
    profession: str
    role: str
    read: frozenset[str] | None  # None: every type
    write: frozenset[str] | None
    plan_before_consent: bool = False

    def matches(self, professions: frozenset[str], roles: frozenset[str]) -> bool:
        return (self.profession == ANY or self.profession in professions) and (
            self.role == ANY or self.role in roles
        )


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return None if a is None or b is None else a | b


@dataclass(frozen=True)
class CircleMatrix:
    rows: tuple[MatrixRow, ...]
    plan_consent: tuple[str, str]  # (system, code) of the Consent category sharing the plan
    plan_types: frozenset[str]
    circle_profiles: frozenset[str] = frozenset()  # the CareTeams it applies to

    def scope(
        self, professions: Iterable[str], roles: Iterable[str], plan_shared: bool
    ) -> CircleScope:
        """A member's rights: the union of the rows matching one of his professions and roles
        (none matching: the patient's identity only)."""
        held, played = frozenset(professions), frozenset(roles)
        read: frozenset[str] | None = frozenset()
        write: frozenset[str] | None = frozenset()
        before = False
        for row in self.rows:
            if row.matches(held, played):
                read, write = _union(read, row.read), _union(write, row.write)
                before = before or row.plan_before_consent
        return CircleScope(read, write, self.plan_types, before, plan_shared)


def _types(value: Any) -> frozenset[str] | None:
    return None if value == ANY else frozenset(str(t) for t in value or [])


def parse_matrix(data: Mapping[str, Any]) -> CircleMatrix:
    rows = tuple(
        MatrixRow(
            str(row.get("profession", ANY)),
            str(row.get("role", ANY)),
            _types(row.get("read")),
            _types(row.get("write")),
            bool(row.get("plan_before_consent")),
        )
        for row in data.get("rows") or []
    )
    consent = data.get("plan_consent") or {}
    return CircleMatrix(
        rows,
        (str(consent.get("system") or ""), str(consent.get("code") or "")),
        frozenset(str(t) for t in data.get("plan_types") or []),
        frozenset(str(p) for p in data.get("circle_profiles") or []),
    )


@cache
def circle_matrix() -> CircleMatrix:
    return parse_matrix(matrix_data(circle_matrix_file(), "circle_matrix.json"))

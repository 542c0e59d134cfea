"""Typed reads of a ClinicalDocument's header elements (attributes, text, times, identifiers);
every problem is collected rather than raised, so one refusal lists them all."""

from __future__ import annotations

import re
from typing import Any

from ...fhir.outcome import Issue
from .model import NS, OID, UUID, issue, short
from .times import hl7_ts_to_fhir


class HeaderReader:
    """Reads the header of one ClinicalDocument, collecting every problem in `issues`."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.issues: list[Issue] = []

    def error(self, diagnostics: str, where: str, code: str = "invalid") -> None:
        self.issues.append(issue(diagnostics, where, code))

    def find(self, path: str, base: Any = None) -> Any:
        return (self.root if base is None else base).find(path, NS)

    def findall(self, path: str, base: Any = None) -> list[Any]:
        return list((self.root if base is None else base).findall(path, NS))

    @staticmethod
    def attr(el: Any, name: str) -> str | None:
        if el is None:
            return None
        value = el.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    @staticmethod
    def text(el: Any) -> str | None:
        if el is None:
            return None
        value = " ".join("".join(el.itertext()).split())
        return value or None

    def ts(self, el: Any, where: str, *, date_only: bool = False) -> str | None:
        value = self.attr(el, "value")
        if value is None:
            return None
        out = hl7_ts_to_fhir(value, date_only=date_only)
        if isinstance(out, Exception):
            self.error(f"malformed HL7 time {short(value, 40)!r}: {out}", f"{where}/@value")
            return None
        return out

    def ii(self, el: Any, where: str) -> tuple[str, str | None] | None:
        """An II (root, extension) whose root must be an OID or UUID."""
        root = self.attr(el, "root")
        if root is None:
            self.error("the identifier has no root", where, "required")
            return None
        if not (OID.fullmatch(root) or UUID.fullmatch(root)):
            self.error(f"the identifier root {short(root, 60)!r} is not an OID or a UUID", where)
            return None
        return root, self.attr(el, "extension")

    def idnat(self, el: Any, where: str, kind: str, pattern: re.Pattern[str]) -> str | None:
        ext = self.attr(el, "extension")
        if ext is None:
            self.error(f"the {kind} identifier has no extension", where, "required")
            return None
        if not pattern.fullmatch(ext):
            self.error(
                f"malformed {kind} {short(ext, 40)!r}: expected the pattern {pattern.pattern}"
                " (type prefix, then the number)",
                where,
            )
            return None
        return ext

    def ids_with_root(
        self, parents: list[tuple[Any, str]], oid: str, kind: str, pattern: re.Pattern[str]
    ) -> list[str]:
        out: list[str] = []
        for parent, where in parents:
            for el in self.findall("h:id", parent):
                if self.attr(el, "root") == oid:
                    value = self.idnat(el, f"{where}/id", kind, pattern)
                    if value is not None:
                        out.append(value)
        return out

"""How much a code outside its bound value set matters: decided here, from the binding strength.

R4 (terminologies.html#strength): a `required` binding's code SHALL come from the value set (an
error); an `extensible` one SHALL come from it when a code there fits, so a code from elsewhere is
a warning (the validator cannot tell whether one fits); `preferred` and `example` bindings only
suggest, and are not checked.

A profile rule may make a binding stricter (a French rule turning an extensible binding into an
error): `raise_severity(valueset_or_element_path, "error")` before the validator compiles, or
`severity(strength, raised="error")` in a rule that checks codes itself.
"""

from __future__ import annotations

#: strength -> severity of a code outside the value set; absent: not checked.
BY_STRENGTH = {"required": "error", "extensible": "warning"}

_ORDER = {"information": 0, "warning": 1, "error": 2}
_raised: dict[str, str] = {}
_widened: dict[str, set[tuple[str, str]]] = {}


def widen(valueset: str, codes: set[tuple[str, str]] | frozenset[tuple[str, str]]) -> None:
    """Count (system, code) pairs as members of an extensible value set (canonical URL): the
    codes a national profile binds in its place (FR Core's identifier types for R4's
    identifier-type). Takes effect for validators compiled afterwards."""
    _widened.setdefault(valueset.split("|")[0], set()).update(codes)


def widened(valueset: str) -> set[tuple[str, str]]:
    """The codes `widen` added to `valueset`."""
    return _widened.get(valueset.split("|")[0], set())


def raise_severity(target: str, to: str) -> None:
    """Make the bindings of a value set (canonical URL, no version) or of one element (definition
    path, `Observation.category`) report `to` ("warning" or "error") at least. Takes effect for
    validators compiled afterwards."""
    if to not in _ORDER:
        raise ValueError(f"unknown severity {to!r}")
    _raised[target] = to


def severity(
    strength: str | None, valueset: str = "", path: str = "", raised: str | None = None
) -> str | None:
    """The severity of a code outside the value set of a binding of `strength` (None: the binding
    is not checked), raised by `raised` or a registered `raise_severity` when stricter."""
    base = BY_STRENGTH.get(strength or "")
    if base is None:
        return None
    for extra in (raised, _raised.get(valueset.split("|")[0]), _raised.get(path)):
        if extra is not None and _ORDER[extra] > _ORDER[base]:
            base = extra
    return base

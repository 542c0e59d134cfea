"""What services check themselves, declared to the validator at start-up.

A service that enforces a profile with its own rules (the shared record and PDSm), or reads an
extension it defines, declares them here through its `Conformance` (`socle/contract.py`): the
validator then does not answer "unknown profile" or "unknown extension" for them, a warning that
would only mislead the client. Code systems that are one terminology published under two
canonical URLs (same OID: HL7 v3 Confidentiality is the ANS's TRE_A08) are declared equal, so a
code in either counts as a member of a value set that uses the other.

Read at each check, not compiled in: the order of start-up does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: profile canonical -> the resource type it constrains (checked by the declaring service)
PROFILES: dict[str, str] = {}
#: extension URLs a service reads and checks itself
EXTENSIONS: set[str] = set()
#: code system -> the code systems that are the same terminology under another canonical URL
EQUIVALENT_SYSTEMS: dict[str, set[str]] = {}


def declare(
    profiles: Mapping[str, Iterable[str]] | None = None,
    extensions: Iterable[str] = (),
    equivalent_systems: Iterable[tuple[str, str]] = (),
) -> None:
    for rtype, urls in (profiles or {}).items():
        for url in urls:
            PROFILES[url.split("|")[0]] = rtype
    EXTENSIONS.update(extensions)
    for a, b in equivalent_systems:
        EQUIVALENT_SYSTEMS.setdefault(a, set()).add(b)
        EQUIVALENT_SYSTEMS.setdefault(b, set()).add(a)


def in_codes(
    codes: frozenset[tuple[str, str]] | set[tuple[str, str]], system: str, code: str
) -> bool:
    """(system, code) is in `codes`, directly or through an equivalent code system."""
    if (system, code) in codes:
        return True
    return any((other, code) in codes for other in EQUIVALENT_SYSTEMS.get(system, ()))

"""SMART App Launch v2 scopes (fr-identity §6): parsing and the scope check.

A resource scope is ``<context>/<ResourceType|*>.<permissions>``:

* context: ``patient`` (data of the launch patient only), ``user`` (what the user may see),
  ``system`` (a backend client, no user);
* permissions (v2): a subset of ``c r u d s`` written **in that order**, each at most once
  (``patient/Observation.rs``, ``user/*.cruds``);
* v1 forms are mapped to v2: ``read`` → ``rs``, ``write`` → ``cud``, ``*`` → ``cruds``;
* v2 search restrictions (``patient/Observation.rs?category=laboratory``) are parsed and kept in
  :attr:`Scope.restriction` but **not enforced** (noted in :attr:`Scope.note`): a restricted
  scope currently grants its whole resource type. Socle's authorisation server grants no
  restricted scope (`socle.auth.server.scope_grant.within`).

Anything else (``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``, PSC's
``scope_all``…) is not a resource scope and grants no data access. A malformed resource scope
grants nothing either (deny by default) and is reported in :attr:`ScopeSet.invalid`.

The check is :func:`allows`: a scope grants an interaction only when its letters contain the
interaction's letter and its type is the resource type or ``*``. Scopes only *limit* what a token
may do; who may see which patient is :mod:`socle.auth.policy`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class Interaction(StrEnum):
    """The five SMART v2 permissions, named after the REST interactions they cover."""

    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    SEARCH = "search"

    @property
    def letter(self) -> str:
        return _LETTER_OF[self]


_LETTER_OF = {
    Interaction.CREATE: "c",
    Interaction.READ: "r",
    Interaction.UPDATE: "u",
    Interaction.DELETE: "d",
    Interaction.SEARCH: "s",
}
_BY_LETTER = {v: k for k, v in _LETTER_OF.items()}
CONTEXTS = ("patient", "user", "system")

# The FHIR interaction (or operation) of a request → the SMART permission it needs.
# - instance reads and instance history need `r`; type/system history and searches need `s`;
# - `_include`/`_revinclude` targets are checked as `r` of their own type (fetched by reference);
# - `$everything` is a search of the compartment: `s` on every type returned.
FHIR_INTERACTIONS: dict[str, Interaction] = {
    "read": Interaction.READ,
    "vread": Interaction.READ,
    "history-instance": Interaction.READ,
    "include": Interaction.READ,
    "create": Interaction.CREATE,
    "update": Interaction.UPDATE,
    "patch": Interaction.UPDATE,
    "delete": Interaction.DELETE,
    "search-type": Interaction.SEARCH,
    "search-system": Interaction.SEARCH,
    "search-compartment": Interaction.SEARCH,
    "history-type": Interaction.SEARCH,
    "history-system": Interaction.SEARCH,
    "everything": Interaction.SEARCH,
}


def interaction_of(fhir_interaction: str) -> Interaction:
    """The SMART permission a FHIR interaction needs (``vread`` → read, ``patch`` → update…)."""
    try:
        return FHIR_INTERACTIONS[fhir_interaction]
    except KeyError:
        raise ValueError(f"unknown FHIR interaction {fhir_interaction!r}") from None


_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perms>[a-z*]+)"
    r"(?:\?(?P<restriction>.*))?$"
)
_V2_PERMS_RE = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope, normalised to v2 letters."""

    context: str  # "patient" | "user" | "system"
    resource_type: str  # a FHIR resource type or "*"
    letters: frozenset[str]  # subset of {"c","r","u","d","s"}
    raw: str
    restriction: str | None = None  # the `?…` part of a v2 scope, not enforced
    v1: bool = False

    @property
    def note(self) -> str | None:
        if self.restriction is not None:
            return "search restriction parsed but not enforced: the scope grants its whole type"
        return None

    @property
    def interactions(self) -> frozenset[Interaction]:
        return frozenset(_BY_LETTER[c] for c in self.letters)

    def grants(self, resource_type: str, interaction: Interaction) -> bool:
        return interaction.letter in self.letters and self.resource_type in ("*", resource_type)


def parse_scope(text: str) -> Scope | None:
    """A resource scope, or None if ``text`` is not a (well-formed) resource scope."""
    m = _SCOPE_RE.match(text)
    if not m:
        return None
    perms = m["perms"]
    v1 = perms in _V1
    if v1:
        if m["restriction"] is not None:  # v1 had no restrictions
            return None
        perms = _V1[perms]
    elif not perms or not _V2_PERMS_RE.match(perms):
        return None
    return Scope(
        context=m["context"],
        resource_type=m["type"],
        letters=frozenset(perms),
        raw=text,
        restriction=m["restriction"],
        v1=v1,
    )


def _looks_like_resource_scope(text: str) -> bool:
    return text.split("/", 1)[0] in CONTEXTS and "/" in text and text != "launch/patient"


@dataclass(frozen=True)
class ScopeSet:
    """The scopes of a token: resource scopes, other scopes, and malformed resource scopes."""

    scopes: tuple[Scope, ...] = ()
    others: frozenset[str] = frozenset()
    invalid: tuple[str, ...] = ()
    raw: tuple[str, ...] = field(default=(), repr=False)

    def __iter__(self) -> Iterator[Scope]:
        return iter(self.scopes)

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.scopes)

    def has(self, scope: str) -> bool:
        return scope in self.others or any(s.raw == scope for s in self.scopes)


def parse_scopes(value: str | Iterable[str] | None) -> ScopeSet:
    """Parse a space-separated ``scope`` claim (or a list of scopes, as some servers send)."""
    if value is None:
        items: list[str] = []
    elif isinstance(value, str):
        items = value.split()
    else:
        items = [s for v in value if isinstance(v, str) for s in v.split()]
    scopes: list[Scope] = []
    others: set[str] = set()
    invalid: list[str] = []
    for item in items:
        parsed = parse_scope(item)
        if parsed is not None:
            scopes.append(parsed)
        elif _looks_like_resource_scope(item):
            invalid.append(item)
        else:
            others.add(item)
    return ScopeSet(tuple(scopes), frozenset(others), tuple(invalid), tuple(items))


def _contexts(context: str | Collection[str] | None) -> frozenset[str] | None:
    if context is None:
        return None
    if isinstance(context, str):
        return frozenset({context})
    return frozenset(context)


def _as_scopes(scopes: ScopeSet | Iterable[Scope] | str) -> Iterable[Scope]:
    if isinstance(scopes, str):
        return parse_scopes(scopes).scopes
    if isinstance(scopes, ScopeSet):
        return scopes.scopes
    return scopes


def allows(
    scopes: ScopeSet | Iterable[Scope] | str,
    context: str | Collection[str] | None,
    resource_type: str,
    interaction: Interaction | str,
) -> bool:
    """Whether some scope of ``context`` (one context, several, or None for any) grants
    ``interaction`` on ``resource_type``."""
    inter = Interaction(interaction)
    wanted = _contexts(context)
    return any(
        s.grants(resource_type, inter)
        for s in _as_scopes(scopes)
        if wanted is None or s.context in wanted
    )


def granting_contexts(
    scopes: ScopeSet | Iterable[Scope] | str, resource_type: str, interaction: Interaction | str
) -> frozenset[str]:
    """The contexts (patient/user/system) in which some scope grants this interaction."""
    inter = Interaction(interaction)
    return frozenset(s.context for s in _as_scopes(scopes) if s.grants(resource_type, inter))


def allowed_types(
    scopes: ScopeSet | Iterable[Scope] | str,
    context: str | Collection[str] | None,
    interaction: Interaction | str,
) -> frozenset[str] | None:
    """Resource types granted for ``interaction``: None means every type (a ``*`` scope).

    This is the ``rtype IN (...)`` filter of a system-wide search, ``$everything`` or includes.
    """
    inter = Interaction(interaction)
    wanted = _contexts(context)
    types: set[str] = set()
    for s in _as_scopes(scopes):
        if (wanted is None or s.context in wanted) and inter.letter in s.letters:
            if s.resource_type == "*":
                return None
            types.add(s.resource_type)
    return frozenset(types)

"""The engine's side of access control: what a request's policy must answer, and where it is asked.

The engine knows nothing of tokens, policy rules or audit tables (``socle.auth`` implements this
protocol; the engine only names the roles, ``Role``); it guarantees that every path to stored
data asks:

* ``condition`` — an SQL condition on a resource row (``r`` unless another alias is named) ANDed
  into every query of a search, an include level, a history, ``$everything``, and into every
  sub-query a search criterion makes over other resources (chains, ``_has``, ``_list``: see
  ``search/sql.py``), so that denied rows are never fetched nor used to match, and counts and
  paging stay right;
* ``check_read`` — a single resource by id (read, vread, the GET entries of a Bundle);
* ``check_write`` — every write of a unit of work, after the rows it replaces are locked and
  before anything is written (the 403 names the Bundle entry);
* ``record`` — the audit of what was done, inside the writing transaction for writes, before the
  response for reads (a failure to record fails the request).

Every engine call takes the caller's ``Access``: the request context. Besides the policy's
answers it says who is asking — ``principal`` (subject, ``role``, fhirUser, national id,
organisation, client, scopes), ``role`` and ``acting_for`` (the organisations the caller acts for)
— so services read typed attributes, never a token's strings. Work the platform does for itself
(start-up tasks, background jobs such as the identity watcher, the authorisation server's
directory look-ups) says so by name with ``engine.platform()``: the ``PLATFORM`` context, no
principal, no policy, no audit. HTTP handlers always pass the request's context (see
``socle.auth.middleware``), so no client request runs as the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from psycopg import AsyncConnection

from .search.sql import Sql
from .storage.reader import Version
from .storage.writer import PendingWrite

# Where the authentication layer puts the request's Access in the ASGI scope.
ACCESS_KEY = "socle.access"

# What a row is being fetched for; decides the scope letter and whether a denial is an error
# ("direct": 403) or a silent narrowing (includes, $everything: denied rows are left out).
DIRECT, INCLUDE, EVERYTHING, HISTORY, ENTRY = "direct", "include", "everything", "history", "entry"
# A row a search criterion looks at (a chain's target, a _has's source, a _list) or a write's
# reference points to: never returned, so a denial only narrows.
CRITERION = "criterion"


class Role(StrEnum):
    """What kind of caller a token names; the policy's rules and services' checks key on it."""

    PATIENT = "patient"
    REPRESENTATIVE = "representative"  # legal representative of a patient
    PROFESSIONAL = "professional"  # médecin traitant is a relationship, not a role
    SYSTEM = "system"  # backend client of an organisation
    ARS_ANALYST = "ars-analyst"
    ADMIN = "admin"
    # The platform's own integration (regional loaders, demo data, the engine's test suite):
    # every resource, still scoped and audited; issued only to configured clients.
    OPERATOR = "operator"


class Scopes(Protocol):
    def has(self, scope: str) -> bool:
        """Whether the token grants this scope."""


class Principal(Protocol):
    """Who is asking, as a verified token established it (``socle.auth.tokens.Principal``)."""

    @property
    def subject(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def scopes(self) -> Scopes: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def fhir_user(self) -> str | None: ...
    @property
    def organization(self) -> str | None: ...
    @property
    def national_id(self) -> str | None: ...


@dataclass
class Touched:
    """What one request touched, for its audit record."""

    interaction: str  # read | vread | search-type | search-system | history-* | create | …
    resource_type: str | None = None
    # (rtype, id, compartment) of each resource returned or written
    resources: list[tuple[str, str, str | None]] = field(default_factory=list)
    query: str | None = None
    operation: str | None = None
    outcome: str = "0"  # AuditEvent.outcome: 0 success, 4 denied/minor failure
    detail: str | None = None


class Access(Protocol):
    @property
    def owner(self) -> str | None:
        """Who new rows belong to (the writing client's organisation…), or None."""

    @property
    def principal(self) -> Principal | None:
        """Who is asking; None for the platform itself."""

    @property
    def role(self) -> Role | None:
        """The principal's role; None for the platform itself."""

    @property
    def acting_for(self) -> frozenset[str]:
        """Ids of the organisations the caller acts for: its own and, for a professional,
        those of its current activities."""

    @property
    def platform(self) -> bool:
        """The platform's own work: no policy, no audit (the engine skips both)."""

    @property
    def relinks_patients(self) -> bool:
        """This unit of work moves references from one patient record to another (merge,
        unmerge): services whose resources are otherwise immutable allow it."""

    async def prepare(self, conn: AsyncConnection) -> None:
        """Load what decisions need (relationships, controls), once per request."""

    @property
    def prepared(self) -> bool:
        """Nothing (more) for :meth:`prepare` to load: no connection needs taking for it."""

    def condition(
        self, types: list[str] | None, interaction: str, via: str, alias: str = "r"
    ) -> Sql | None:
        """Condition on the row ``alias`` for rows of ``types`` (None: any type). None: no
        restriction. Raises FhirError (403) when ``via`` is direct and the interaction is denied
        outright."""

    def check_read(self, row: Version, via: str) -> None:
        """Raise FhirError (403, or 404 for a hidden resource) if this row may not be read."""

    def check_writes(self, writes: list[PendingWrite]) -> None:
        """Raise FhirError (403, naming the entry) unless every write is allowed. Each write has
        its new ``compartment`` and ``owner`` and, when it replaces a row, that row's
        ``old_compartment``, ``old_owner`` and ``old_security`` (``meta.security`` as JSON)."""

    def record_statement(self, touched: Touched) -> Sql | None:
        """The audit record as one INSERT the engine runs inside its write statement, so it
        commits with the writes at no round trip of its own (None: nothing to record). The
        engine calls this or :meth:`record` for a unit of work, never both."""

    async def record(self, conn: AsyncConnection | None, touched: Touched) -> None:
        """Append the audit record (``conn``: the writing transaction; None: a read)."""


class Platform:
    """The context of the platform's own work (``engine.platform()``): no principal, everything
    allowed, nothing audited."""

    owner: str | None = None
    principal: Principal | None = None
    role: Role | None = None
    acting_for: frozenset[str] = frozenset()
    platform = True
    relinks_patients = False
    prepared = True

    async def prepare(self, conn: AsyncConnection) -> None:
        return None

    def condition(
        self, types: list[str] | None, interaction: str, via: str, alias: str = "r"
    ) -> Sql | None:
        return None

    def check_read(self, row: Version, via: str) -> None:
        return None

    def check_writes(self, writes: list[PendingWrite]) -> None:
        return None

    def record_statement(self, touched: Touched) -> Sql | None:
        return None

    async def record(self, conn: AsyncConnection | None, touched: Touched) -> None:
        return None


PLATFORM = Platform()


@dataclass
class PlannedWrites:
    """A request's access for a unit of work planned by a service (a merge, an answer to an
    invitation): the caller's principal, policy and audit trail, and the planned rows (`allowed`)
    readable too. Subclasses say which writes the plan allows (`check_writes`)."""

    inner: Access
    allowed: frozenset[tuple[str, str]]
    platform = False  # the planned writes are checked, the audit recorded
    relinks_patients = False

    @property
    def owner(self) -> str | None:
        return self.inner.owner

    @property
    def principal(self) -> Principal | None:
        return self.inner.principal

    @property
    def role(self) -> Role | None:
        return self.inner.role

    @property
    def acting_for(self) -> frozenset[str]:
        return self.inner.acting_for

    async def prepare(self, conn: AsyncConnection) -> None:
        await self.inner.prepare(conn)

    @property
    def prepared(self) -> bool:
        return self.inner.prepared

    def condition(
        self, types: list[str] | None, interaction: str, via: str, alias: str = "r"
    ) -> Sql | None:
        return self.inner.condition(types, interaction, via, alias)

    def check_read(self, row: Version, via: str) -> None:
        if (row.rtype, row.id) not in self.allowed:
            self.inner.check_read(row, via)

    def check_writes(self, writes: list[PendingWrite]) -> None:
        raise NotImplementedError

    def record_statement(self, touched: Touched) -> Sql | None:
        return self.inner.record_statement(touched)

    async def record(self, conn: AsyncConnection | None, touched: Touched) -> None:
        await self.inner.record(conn, touched)

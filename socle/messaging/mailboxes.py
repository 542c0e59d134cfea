"""Mailboxes: the MSSanté kinds (TRE_R257: personal ``PER`` by RPPS, organisational ``ORG``,
application ``APP``) and citizen mailboxes ``<INS>@patient.<domain>`` (``PAT``).

A mailbox belongs to one owner, a FHIR reference (``Practitioner/…``, ``Organization/…``,
``Device/…``, ``Patient/…``): a token whose principal is that owner may send from it (SASL
XOAUTH2/OAUTHBEARER); a password (scrypt, hashed as the patient accounts' are) serves mail
clients that only speak AUTH PLAIN/LOGIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ..auth.server.passwords import hash_password

KINDS = ("PER", "ORG", "APP", "PAT")
# TRE_R257-TypeBAL: the MSSanté mailbox types (fr-documents §3)
TYPE_BAL_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
# used_bytes: the folded usage plus what was accepted since (mailbox_usage, migration 342)
COLUMNS = (
    "address, kind, owner, identifier, display, password_hash, quota_bytes,"
    " used_bytes + COALESCE((SELECT sum(u.bytes) FROM mailbox_usage u"
    " WHERE u.address = mailbox.address), 0)::bigint, cert_sha256, filing"
)
FILING_MODES = ("always", "asked", "never")
# what a mailbox files of the documents it receives, unless its own rule says otherwise: an
# application mailbox (a hospital's integration platform) everything, a person or an
# organisation what a message asks to have integrated, a citizen nothing
DEFAULT_FILING = {"APP": "always", "PER": "asked", "ORG": "asked", "PAT": "never"}


@dataclass(frozen=True)
class FilingRule:
    """When a mailbox files the XDM documents it receives to the shared record: ``always``,
    when the message ``asked`` for its integration status, or ``never``; and, when listed, only
    documents of these types (XDS typeCode, e.g. LOINC ``11490-0``) and only from these
    senders (an address, or ``@domain``)."""

    mode: str
    types: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()

    def files_from(self, sender: str) -> bool:
        sender = sender.lower()
        return not self.senders or any(
            sender == s or (s.startswith("@") and sender.endswith(s)) for s in self.senders
        )

    def files_type(self, code: str | None) -> bool:
        return not self.types or code in self.types

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "types": list(self.types), "senders": list(self.senders)}


@dataclass(frozen=True)
class Mailbox:
    address: str
    kind: str
    owner: str  # a FHIR reference
    identifier: str | None  # RPPS, FINESS or INS
    display: str | None
    password_hash: str | None
    quota_bytes: int | None
    used_bytes: int
    # the SHA-256 of the client certificate it is pinned to (mutual TLS, SASL EXTERNAL)
    cert_sha256: str | None = None
    filing: dict[str, Any] | None = None  # its own FilingRule, as JSON (None: its kind's)

    @property
    def filing_rule(self) -> FilingRule:
        own = self.filing if isinstance(self.filing, dict) else {}
        mode = own.get("mode")
        return FilingRule(
            mode if mode in FILING_MODES else DEFAULT_FILING.get(self.kind, "never"),
            tuple(str(t) for t in own.get("types") or ()),
            tuple(str(s).lower() for s in own.get("senders") or ()),
        )

    @property
    def patient(self) -> str | None:
        """The patient's id when this is a citizen mailbox."""
        return self.owner.removeprefix("Patient/") if self.owner.startswith("Patient/") else None

    def owned_by(
        self, fhir_user: str | None, national_id: str | None, organization: str | None = None
    ) -> bool:
        """Whether a token's principal is this mailbox's owner (its fhirUser, or for a
        personal mailbox its RPPS as Pro Santé Connect gives it: ``8`` + RPPS; for an
        organisational or application mailbox, a system client of that organisation)."""
        if fhir_user and reference_of(fhir_user) == self.owner:
            return True
        if organization and self.kind in ("ORG", "APP") and organization == self.owner:
            return True
        return bool(
            national_id
            and self.identifier
            and national_id in (self.identifier, "8" + self.identifier)
        )

    def full(self, default_quota: int, incoming: int) -> bool:
        quota = self.quota_bytes if self.quota_bytes is not None else default_quota
        return quota > 0 and self.used_bytes + incoming > quota


def reference_of(fhir_user: str) -> str:
    """``Type/id`` of a fhirUser, relative or absolute (Socle's authorisation server gives
    ``<fhir base>/Patient/<id>`` to patients)."""
    parts = fhir_user.rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else fhir_user


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def citizen_domain(domain: str) -> str:
    return f"patient.{domain}"


def citizen_address(ins: str, domain: str) -> str:
    """The citizen mailbox of a patient with a qualified INS."""
    return f"{ins}@{citizen_domain(domain)}".lower()


def is_local(address: str, domain: str) -> bool:
    return domain_of(address) in (domain, citizen_domain(domain))


def _row(row: Any) -> Mailbox:
    return Mailbox(*row)


# the accepted messages' usage rows moved into used_bytes, in one statement (atomic: a usage
# is counted in one place or the other, never both, never lost)
FOLD_USAGE = (
    "WITH moved AS (DELETE FROM mailbox_usage RETURNING address, bytes),"
    " sums AS (SELECT address, sum(bytes) AS bytes FROM moved GROUP BY address)"
    " UPDATE mailbox m SET used_bytes = m.used_bytes + sums.bytes FROM sums"
    " WHERE m.address = sums.address"
)
FOLD_USAGE_SECONDS = 30.0


async def fold_usage(conn: AsyncConnection) -> int:
    """Fold the usage rows into the mailboxes' ``used_bytes``; the number of mailboxes updated.
    Its short transaction is the only one to lock a mailbox row for its usage."""
    cur = await conn.execute(FOLD_USAGE)
    return cur.rowcount


async def find(conn: AsyncConnection, address: str) -> Mailbox | None:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM mailbox WHERE address = %s",  # noqa: S608 - constant columns
        (address.lower(),),
    )
    row = await cur.fetchone()
    return _row(row) if row else None


async def find_many(conn: AsyncConnection, addresses: list[str]) -> dict[str, Mailbox]:
    """The mailboxes of these addresses that exist, by address (lower case): one query where
    the SMTP server's DATA checks its sender and recipients."""
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM mailbox WHERE address = ANY(%s)",  # noqa: S608 - constant columns
        (list(dict.fromkeys(a.lower() for a in addresses)),),
    )
    return {m.address: m for m in (_row(r) for r in await cur.fetchall())}


async def owned_by(conn: AsyncConnection, owner: str) -> list[Mailbox]:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM mailbox WHERE owner = %s ORDER BY address",  # noqa: S608
        (owner,),
    )
    return [_row(r) for r in await cur.fetchall()]


def create(
    conn: psycopg.Connection,
    address: str,
    kind: str,
    owner: str,
    *,
    identifier: str | None = None,
    display: str | None = None,
    password: str | None = None,
    quota_bytes: int | None = None,
    unlisted: bool = False,
) -> None:
    """Create (or update) a mailbox; the password, if any, is stored hashed. `unlisted`: on the
    Annuaire's red list (published with ``listeRouge``, not found by directory look-ups)."""
    if kind not in KINDS:
        raise ValueError(f"a mailbox kind is one of {', '.join(KINDS)}, not {kind!r}")
    if "@" not in address:
        raise ValueError(f"not a mail address: {address!r}")
    conn.execute(
        "INSERT INTO mailbox (address, kind, owner, identifier, display, password_hash,"
        " quota_bytes, unlisted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (address) DO UPDATE SET"
        " kind = excluded.kind, owner = excluded.owner, identifier = excluded.identifier,"
        " display = excluded.display,"
        " password_hash = coalesce(excluded.password_hash, mailbox.password_hash),"
        " quota_bytes = excluded.quota_bytes, unlisted = excluded.unlisted",
        (
            address.lower(),
            kind,
            owner,
            identifier,
            display,
            hash_password(password) if password else None,
            quota_bytes,
            unlisted,
        ),
    )


def listed(conn: psycopg.Connection, owner: str | None = None) -> list[Mailbox]:
    """Every mailbox (or an owner's), by address: what an operator manages."""
    where, args = ("WHERE owner = %s", (owner,)) if owner else ("", ())
    cur = conn.execute(
        f"SELECT {COLUMNS} FROM mailbox {where} ORDER BY address",  # noqa: S608 - constants
        args,
    )
    return [_row(r) for r in cur.fetchall()]


def set_password(conn: psycopg.Connection, address: str, password: str | None) -> bool:
    """Change (None: remove) a mailbox's SMTP password. Sessions opened with the old one may
    send nothing more (socle/messaging/smtp.py checks at each message). False: no mailbox."""
    cur = conn.execute(
        "UPDATE mailbox SET password_hash = %s WHERE address = %s",
        (hash_password(password) if password else None, address.lower()),
    )
    return cur.rowcount == 1


def remove(conn: psycopg.Connection, address: str) -> bool:
    """Close a mailbox: no more mail to or from it (its open sessions end at their next
    message). Its messages stay: each is a Communication on the engine, of the record."""
    cur = conn.execute("DELETE FROM mailbox WHERE address = %s", (address.lower(),))
    return cur.rowcount == 1


def pin_certificate(conn: psycopg.Connection, address: str, sha256: str | None) -> bool:
    """Pin a mailbox to a client certificate's SHA-256 (None: unpin). Sessions opened with
    another certificate may send nothing more. False: no mailbox."""
    cur = conn.execute(
        "UPDATE mailbox SET cert_sha256 = %s WHERE address = %s", (sha256, address.lower())
    )
    return cur.rowcount == 1


async def pinned_to(conn: AsyncConnection, sha256: str) -> list[Mailbox]:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM mailbox WHERE cert_sha256 = %s ORDER BY address",  # noqa: S608
        (sha256,),
    )
    return [_row(r) for r in await cur.fetchall()]


def set_filing(conn: psycopg.Connection, address: str, rule: FilingRule | None) -> bool:
    """Give a mailbox its own filing rule (None: back to its kind's). False: no mailbox."""
    if rule is not None and rule.mode not in FILING_MODES:
        raise ValueError(f"a filing mode is one of {', '.join(FILING_MODES)}, not {rule.mode!r}")
    cur = conn.execute(
        "UPDATE mailbox SET filing = %s WHERE address = %s",
        (Jsonb(rule.as_json()) if rule is not None else None, address.lower()),
    )
    return cur.rowcount == 1

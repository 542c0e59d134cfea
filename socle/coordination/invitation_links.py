"""The one-time link mailed with an invitation to a care circle, for a professional who has not
used Socle yet: he learns of the invitation by e-mail, opens the link, signs in with Pro Santé
Connect and answers it.

In Socle a professional has no account of his own: whoever Pro Santé Connect authenticates and
the directory holds (a ``Practitioner`` with his idNat_PS) may sign in. So "not yet a user" is a
professional of the directory who has never signed in, or never looked at his invitations: the
invitation is the same ``Task`` (owned by his Practitioner), and the link brings him to it.

* The link is ``{public_url}/pro/invitation/{token}``: a random token (256 bits) of which only
  the SHA-256 is stored (``circle_invitation_link``, migration 360), with the RPPS or the
  MSSanté address invited, an expiry (``LIFETIME``, 14 days) and the moment it was used.
* The mail is id-only: who invites and the link — no patient, no health data.
* Opening it asks to sign in; the signed-in professional's PSC identity must be the invited RPPS
  (``8`` + RPPS, his idNat_PS), or — for an invitation by address — the address must be one of
  his directory addresses (his Practitioner's or his PractitionerRoles' MSSanté telecoms).
  Otherwise the page refuses, and nothing is written.
* It is good once, until it expires, while the invitation is pending: withdrawing the
  invitation (``$invitation-withdraw``) revokes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from psycopg import AsyncConnection

LIFETIME = dt.timedelta(days=14)
PATH = "/pro/invitation/"
SUBJECT = "Invitation à rejoindre un cercle de soins sur Socle"
# how the directory (Annuaire Santé) marks an MSSanté mailbox in a telecom
EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
MAILBOX_METADATA = (
    "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/"
    "as-ext-mailbox-mss-metadata"
)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def is_address(text: str) -> bool:
    local, at, domain = text.partition("@")
    return bool(local and at and "." in domain and " " not in text and len(text) <= 254)


def mailboxes(resource: dict[str, Any]) -> list[str]:
    """The MSSanté addresses a directory entry publishes (lower-cased)."""
    out = []
    for t in resource.get("telecom") or []:
        if not isinstance(t, dict) or t.get("system") != "email":
            continue
        urls = {str((e or {}).get("url")) for e in t.get("extension") or []}
        if urls & {EMAIL_TYPE, MAILBOX_METADATA} and isinstance(t.get("value"), str):
            out.append(t["value"].strip().lower())
    return out


@dataclass(frozen=True)
class Link:
    task_id: str
    rpps: str | None
    address: str | None
    expires_at: dt.datetime
    used_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at <= now


async def store(
    conn: AsyncConnection, token: str, task_id: str, rpps: str | None, address: str | None
) -> None:
    await conn.execute(
        "INSERT INTO circle_invitation_link (token_hash, task_id, rpps, address, expires_at) "
        "VALUES (%s, %s, %s, %s, now() + %s)",
        (digest(token), task_id, rpps, address, LIFETIME),
    )


async def forget(conn: AsyncConnection, token: str) -> None:
    await conn.execute("DELETE FROM circle_invitation_link WHERE token_hash = %s", (digest(token),))


async def find(conn: AsyncConnection, token: str) -> Link | None:
    if not token or len(token) > 100:
        return None
    cur = await conn.execute(
        "SELECT task_id, rpps, address, expires_at, used_at FROM circle_invitation_link "
        "WHERE token_hash = %s",
        (digest(token),),
    )
    row = await cur.fetchone()
    return Link(str(row[0]), row[1], row[2], row[3], row[4]) if row else None


async def use(conn: AsyncConnection, token: str) -> bool:
    """Mark the link used; False when it was used or expired meanwhile (once only)."""
    cur = await conn.execute(
        "UPDATE circle_invitation_link SET used_at = now() "
        "WHERE token_hash = %s AND used_at IS NULL AND expires_at > now() RETURNING 1",
        (digest(token),),
    )
    return await cur.fetchone() is not None


def mail(to: str, inviter: str, url: str) -> EmailMessage:
    """The invitation mail: who invites and the link; no patient, no health data."""
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = SUBJECT
    who = inviter or "Un professionnel de santé"
    message.set_content(
        "Bonjour,\n\n"
        f"{who} vous invite à rejoindre le cercle de soins d'un patient qu'il suit sur Socle, "
        "la plateforme régionale de coordination.\n\n"
        f"Pour voir l'invitation et y répondre, ouvrez ce lien et connectez-vous avec "
        f"Pro Santé Connect (carte CPS ou e-CPS) :\n{url}\n\n"
        f"Ce lien vous est personnel : il n'est valable que {LIFETIME.days} jours et une seule "
        "fois, et seulement pour vous (votre identité Pro Santé Connect est vérifiée).\n\n"
        "Ce courriel ne contient aucune donnée de santé.\n"
    )
    return message

"""Mailboxes for the people already in the directory: a personal mailbox (`PER`,
``<RPPS>@<domain>``) for each Practitioner with a national identifier (IDNAT_PS, ``8`` + RPPS),
and a citizen mailbox (`PAT`, ``<INS>@patient.<domain>``) for each Patient whose identity is
qualified (QUAL: the only status with which the INS may travel). No password: their owners
authenticate with their access tokens (XOAUTH2/OAUTHBEARER). The personal mailboxes are then
published in their Practitioners' `telecom` by the job `messaging.publish` (`publish.py`).
`socle demo` runs it once the region is loaded; running it again changes nothing."""

from __future__ import annotations

from typing import Any

import psycopg

from ..identity.status import QUAL, identity_status
from ..identity.traits import ins_from_patient
from . import mailboxes
from .publish import queue_publish

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"


def mailbox_for(
    rtype: str, rid: str, content: dict[str, Any], domain: str
) -> tuple[str, str, str, str] | None:
    """(address, kind, owner, identifier) of the mailbox a directory entry gets, or None."""
    if rtype == "Practitioner":
        for identifier in content.get("identifier") or []:
            value = str(identifier.get("value") or "")
            if (
                identifier.get("system") == IDNAT_PS
                and value.startswith("8")
                and value[1:].isdigit()
            ):
                rpps = value[1:]
                return f"{rpps}@{domain}", "PER", f"Practitioner/{rid}", rpps
        return None
    if rtype == "Patient" and identity_status(content) == QUAL:
        found = ins_from_patient(content)
        if len(found) == 1:
            ins = found[0].value
            return mailboxes.citizen_address(ins, domain), "PAT", f"Patient/{rid}", ins
    return None


def provision(conn: psycopg.Connection, domain: str) -> dict[str, int]:
    """Create the missing mailboxes; returns how many of each kind exist for the directory."""
    counts = {"PER": 0, "PAT": 0}
    rows = conn.execute(
        "SELECT rtype, id, content FROM resource"
        " WHERE rtype IN ('Practitioner', 'Patient') AND NOT deleted"
    )
    for rtype, rid, content in rows.fetchall():
        found = mailbox_for(rtype, rid, content, domain)
        if found is None:
            continue
        address, kind, owner, identifier = found
        mailboxes.create(conn, address, kind, owner, identifier=identifier)
        counts[kind] += 1
    if counts["PER"] or counts["PAT"]:
        queue_publish(conn)  # the mailboxes in their owners' telecom (publish.py)
    return counts

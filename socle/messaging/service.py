"""Secure messaging as a service: the SMTP server `socle serve` runs once (`listeners`), the
jobs that deliver accepted messages as Communications and relay the others, the HTTP way in
(`Communication/$send`) and the CapabilityStatement's word on Communication."""

from __future__ import annotations

from ..contract import Conformance, Service
from . import file_later
from .delivery import JOBS
from .directory import MAILBOX_METADATA, ensure_search_parameters
from .notices import JOBS as NOTICE_JOBS
from .publish import JOBS as PUBLISH_JOBS
from .readstate import OPERATIONS as STATE_OPERATIONS
from .readstate import routes as state_routes
from .send import OPERATIONS, routes
from .smtp import listening

CONFORMANCE = Conformance(
    extensions=[MAILBOX_METADATA],
    documentation={
        "Communication": (
            "Secure messaging: every message accepted by Socle's SMTP server (or "
            "Communication/$send) is a Communication (identifier = Message-ID, system "
            "urn:ietf:rfc:5322; sender and recipient = the mailboxes' owners with their "
            "addresses as identifiers, mailto:, system urn:ietf:rfc:3986; inResponseTo from "
            "In-Reply-To/References; attachments as DocumentReference + Binary). A mailbox is "
            "listed with a search: Communication?recipient:identifier=urn:ietf:rfc:3986|mailto:…"
        ),
    },
)

service = Service(
    name="messaging",
    operations=[*routes, *file_later.routes, *state_routes],
    definitions=[*OPERATIONS, *file_later.OPERATIONS, *STATE_OPERATIONS],
    jobs=[*JOBS, *PUBLISH_JOBS, *NOTICE_JOBS],
    listeners=[listening],
    lifespan=ensure_search_parameters,
    conformance=CONFORMANCE,
    settings=(
        "SOCLE_SMTP_PORT",
        "SOCLE_SMTP_CERT_FILE",
        "SOCLE_SMTP_KEY_FILE",
        "SOCLE_SMTP_MAX_BYTES",
        "SOCLE_MAILBOX_QUOTA_BYTES",
        "SOCLE_MAIL_DOMAIN",
        "SOCLE_SMTP_RELAY",
    ),
)

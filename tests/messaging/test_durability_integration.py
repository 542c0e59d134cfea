"""`250` means stored: a message accepted by a server killed at once (kill -9, before any job
could run) is delivered by the next server on the same database."""

from __future__ import annotations

import signal

import httpx

from socle.testing import (
    Database,
    auth_headers,
    database_beside,
    free_port,
    start_server,
    stop_server,
)

from .world import DOMAIN, PRO_A, PRO_B, Inbox, message, populate, smtp


def test_accepted_message_survives_kill_9(database: Database) -> None:
    port = free_port()
    env = {"SOCLE_SMTP_PORT": str(port), "SOCLE_MAIL_DOMAIN": DOMAIN}
    with database_beside(database, "socle_mail_kill") as db:
        # no job worker: only what the 250 stored can deliver the message later
        first = start_server(db, extra_env={**env, "SOCLE_JOBS_IN_SERVE": "0"})
        try:
            populate(first)
            msg = message(PRO_A, [PRO_B], text="Urgent.")
            with smtp(port, login=PRO_A) as client:
                assert client.send_message(msg) == {}
        finally:
            stop_server(first, signal.SIGKILL)
        second = start_server(db, extra_env=env)
        try:
            headers = {"Content-Type": "application/fhir+json", **auth_headers(second)}
            with httpx.Client(base_url=second.fhir, headers=headers, timeout=60) as client:
                found = Inbox(client).wait(msg["Message-ID"])
            assert found["sender"]["reference"] == "Practitioner/pro-a"
        finally:
            stop_server(second)

"""The small world of the messaging tests: a server with its SMTP port, two professionals, a
patient, their mailboxes, and SMTP helpers (smtplib, the real client)."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx
import psycopg
from aiosmtpd.controller import Controller

from socle.messaging import mailboxes
from socle.messaging.directory import telecom
from socle.testing import Database, ServerProcess, auth_headers, free_port, server_beside

DOMAIN = "mss.test"
PASSWORD = "un mot de passe assez long"
RPPS_A, RPPS_B = "10000000001", "10000000002"
PRO_A, PRO_B, APP = f"dr.a@{DOMAIN}", f"dr.b@{DOMAIN}", f"dpi@{DOMAIN}"
INS = "284075912345678"
PATIENT = f"{INS}@patient.{DOMAIN}"


def url_of(db: Database) -> str:
    assert db.url
    return db.url


def populate(server: ServerProcess) -> None:
    """Owners as FHIR resources, then their mailboxes."""
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as client:
        for rid, family, address in (("pro-a", "Alpha", PRO_A), ("pro-b", "Bravo", PRO_B)):
            r = client.put(
                f"/Practitioner/{rid}",
                json={
                    "resourceType": "Practitioner",
                    "id": rid,
                    "name": [{"family": family}],
                    "telecom": [telecom(address, "PER")],
                },
            )
            assert r.status_code in (200, 201), r.text
        r = client.put(
            "/Patient/pat-1",
            json={"resourceType": "Patient", "id": "pat-1", "name": [{"family": "Martin"}]},
        )
        assert r.status_code in (200, 201), r.text
        r = client.put(
            "/Organization/hosp",
            json={
                "resourceType": "Organization",
                "id": "hosp",
                "name": "CH Test",
                "telecom": [telecom(APP, "APP")],
            },
        )
        assert r.status_code in (200, 201), r.text
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        mailboxes.create(
            conn, PRO_A, "PER", "Practitioner/pro-a", identifier=RPPS_A, password=PASSWORD
        )
        mailboxes.create(
            conn, PRO_B, "PER", "Practitioner/pro-b", identifier=RPPS_B, password=PASSWORD
        )
        mailboxes.create(conn, APP, "APP", "Organization/hosp", password=PASSWORD)
        mailboxes.create(conn, PATIENT, "PAT", "Patient/pat-1", identifier=INS)


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test server's self-signed certificate
    return context


@contextmanager
def smtp(port: int, login: str | None = None, tls: bool = True) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        if tls:
            client.starttls(context=unverified())
            client.ehlo("client.test")
        if login:
            client.login(login, PASSWORD)
        yield client


def message(
    sender: str, to: list[str], text: str = "Bonjour", subject: str = "Compte rendu", **headers: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(to), subject
    msg["Message-ID"] = make_msgid(domain=DOMAIN)
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def poll(check: Callable[[], Any], seconds: float = 60) -> Any:
    """Poll until `check` returns something truthy (no fixed sleeps in assertions)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@dataclass
class Inbox:
    client: httpx.Client

    def by_message_id(self, message_id: str) -> dict[str, Any] | None:
        r = self.client.get(
            "/Communication", params={"identifier": f"urn:ietf:rfc:5322|{message_id.strip('<>')}"}
        )
        assert r.status_code == 200, r.text
        entries = r.json().get("entry", [])
        return entries[0]["resource"] if entries else None

    def wait(self, message_id: str) -> dict[str, Any]:
        return poll(lambda: self.by_message_id(message_id))  # type: ignore[no-any-return]


class Sink:
    """Another operator's server (or a personal mail provider) behind the smarthost: what it
    received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextmanager
def running_sink() -> Iterator[Sink]:
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@contextmanager
def mail_server_beside(
    database: Database, prefix: str, sink: Sink, **settings: str
) -> Iterator[tuple[ServerProcess, int]]:
    """A `socle serve` with its SMTP port, relaying to `sink`, the world populated."""
    port = free_port()
    env = {
        "SOCLE_SMTP_PORT": str(port),
        "SOCLE_MAIL_DOMAIN": DOMAIN,
        "SOCLE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
        "SOCLE_SMTP_RELAY_SECURITY": "none",
        **settings,
    }
    with server_beside(database, prefix, env) as server:
        populate(server)
        yield server, port

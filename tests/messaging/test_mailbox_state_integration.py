"""The mailbox's state end to end: a `socle serve` with its SMTP port and, behind its
smarthost, a real SMTP receiver (aiosmtpd) standing for the personal mail providers and another
operator. The new-message e-mail: nothing is sent to who did not ask; who asked gets exactly
one mail per message, without health data, even when the delivery runs again; each notice is
audited. A sent message's status from the MDN another operator sends back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import psycopg
import pytest

from socle.messaging.mdn import as_bytes, build_mdn
from socle.messaging.tracking import Status, statuses
from socle.testing import Database, ServerProcess

from .world import (
    PATIENT,
    PRO_A,
    PRO_B,
    Sink,
    mail_server_beside,
    message,
    poll,
    running_sink,
    smtp,
    url_of,
)

PERSONAL = "marie.martin@perso.example"
PRO_PERSONAL = "docteur.bravo@perso.example"


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with running_sink() as handler:
        yield handler


@pytest.fixture(scope="module")
def mail_server(database: Database, sink: Sink) -> Iterator[tuple[ServerProcess, int]]:
    with mail_server_beside(database, "socle_notice", sink) as served:
        yield served


def _deliver(port: int, subject: str, text: str, to: str = PATIENT) -> EmailMessage:
    msg = message(PRO_A, [to], text=text, subject=subject)
    with smtp(port, login=PRO_A) as client:
        assert client.send_message(msg) == {}
    return msg


def _row(conn: psycopg.Connection, msg: EmailMessage) -> int:
    def delivered() -> int | None:
        found = conn.execute(
            "SELECT id FROM mail_message WHERE message_id = %s AND delivered_at IS NOT NULL",
            (str(msg["Message-ID"]).strip("<>"),),
        ).fetchone()
        return int(found[0]) if found else None

    return int(poll(delivered))


def _job_done(conn: psycopg.Connection, kind: str, row: int, after: int = 0) -> bool:
    found = conn.execute(
        "SELECT state FROM job WHERE kind = %s AND (args->>'message')::bigint = %s AND id > %s"
        " ORDER BY id DESC LIMIT 1",
        (kind, row, after),
    ).fetchone()
    return bool(found and found[0] in ("succeeded", "dead"))


def _notices(sink: Sink, to: str = PERSONAL) -> list[tuple[list[str], EmailMessage]]:
    out = []
    for _, recipients, content in sink.received:
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append((recipients, parsed))
    return [(r, m) for r, m in out if to in r]


def test_a_new_message_is_told_once_by_e_mail_without_health_data_to_who_asked(
    mail_server: tuple[ServerProcess, int], sink: Sink
) -> None:
    server, port = mail_server
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        # no preferences saved: e-mail is opt-in, nothing leaves
        first = _row(conn, _deliver(port, "Premier bilan", "Hémoglobine à 9 g/dl."))
        poll(lambda: _job_done(conn, "messaging.notify", first))
        assert _notices(sink) == []
        # opted in, new messages ticked
        conn.execute(
            "INSERT INTO patient_notification_preference (patient_id, email, email_opt_in,"
            " new_document, new_access, new_message) VALUES ('pat-1', %s, true, true, false,"
            " true)",
            (PERSONAL,),
        )
        subject, text = "Bilan sanguin de contrôle", "Votre glycémie est à 1,4 g/l."
        second = _row(conn, _deliver(port, subject, text))
        recipients, notice = poll(lambda: _notices(sink))[0]
        assert recipients == [PERSONAL]
        body = notice.get_body(("plain",))
        assert body is not None
        words = body.get_content()
        assert "Vous avez reçu un nouveau message sur votre messagerie de santé" in words
        assert "/messagerie" in words
        # no health data: neither the subject, the text, the sender nor the patient's mailbox
        whole = notice.as_string()
        for secret in (subject, text, "glycémie", PRO_A, PATIENT, "Martin"):
            assert secret not in whole and secret not in words, secret
        # the delivery runs again (a worker killed after writing): no second notice
        job = conn.execute(
            "INSERT INTO job (kind, args) VALUES ('messaging.deliver', %s) RETURNING id",
            (json.dumps({"message": second}),),
        ).fetchone()
        assert job is not None
        poll(lambda: _job_done(conn, "messaging.deliver", second, after=int(job[0]) - 1))
        assert len(_notices(sink)) == 1
        assert conn.execute(
            "SELECT count(*) FROM job WHERE kind = 'messaging.notify'"
            " AND (args->>'message')::bigint = %s",
            (second,),
        ).fetchone() == (1,)
        # audited as a notification, in the patient's history, naming the message only
        event = conn.execute(
            "SELECT event FROM audit_log WHERE event LIKE %s AND event LIKE %s",
            ("%Socle secure messaging (notification)%", f"%Communication/msg-{second}%"),
        ).fetchone()
        assert event is not None and PERSONAL not in event[0] and subject not in event[0]


def test_a_professional_is_told_at_the_address_he_gave(
    mail_server: tuple[ServerProcess, int], sink: Sink
) -> None:
    server, port = mail_server
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        first = _row(conn, _deliver(port, "Avis", "Pas d'adresse donnée.", to=PRO_B))
        poll(lambda: _job_done(conn, "messaging.notify", first))
        assert _notices(sink, PRO_PERSONAL) == []
        # what the « Être prévenu » page of the mailbox stores
        conn.execute(
            "INSERT INTO mailbox_notice_address (address, email) VALUES (%s, %s)",
            (PRO_B, PRO_PERSONAL),
        )
        _row(conn, _deliver(port, "Avis sur une radio", "Fracture du radius.", to=PRO_B))
        recipients, notice = poll(lambda: _notices(sink, PRO_PERSONAL))[0]
        assert recipients == [PRO_PERSONAL]
        whole = notice.as_string()
        assert "nouveau message sur votre messagerie de sant" in whole
        for secret in ("Avis sur une radio", "radius", PRO_A):
            assert secret not in whole, secret
        assert len(_notices(sink, PRO_PERSONAL)) == 1


def test_another_operators_mdn_gives_the_sent_message_its_status(
    mail_server: tuple[ServerProcess, int], sink: Sink
) -> None:
    server, port = mail_server
    foreign = "dr.x@other-operator.test"
    original = message(PRO_A, [foreign], subject="Courrier", Disposition_Notification_To=PRO_A)
    with smtp(port, login=PRO_A) as client:
        assert client.send_message(original) == {}
    poll(lambda: any(foreign in r for _, r, _ in sink.received))
    url = url_of(server.database)

    def status() -> Status:
        async def run() -> dict[int, Status]:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await statuses(conn, [sent])

        return asyncio.run(run())[sent]

    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT id FROM mail_message WHERE message_id = %s",
            (str(original["Message-ID"]).strip("<>"),),
        ).fetchone()
        assert found is not None
        sent = int(found[0])
        assert status() is Status.SENT
        # the other operator's MDN comes back to our mailbox, unauthenticated, as mail does
        ack = build_mdn(original, foreign)
        with smtp(port) as client:
            client.sendmail(foreign, [PRO_A], as_bytes(ack))
        _row(conn, ack)  # delivered
        assert status() is Status.DELIVERED

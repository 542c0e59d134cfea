"""Secure messaging end to end with smtplib as the real client: a `socle serve` with its SMTP
server, STARTTLS and AUTH (password, XOAUTH2, OAUTHBEARER), delivery as Communications seen
through the API, threads, the relay to another operator, $send, and the refusals."""

from __future__ import annotations

import base64
import io
import signal
import smtplib
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from socle.messaging import mailboxes
from socle.messaging.directory import EMAIL_TYPE, MSSANTE, telecom
from socle.messaging.mailboxes import TYPE_BAL_SYSTEM
from socle.messaging.mdn import parse_mdn
from socle.messaging.provision import IDNAT_PS, provision
from socle.messaging.xds import PatientId
from socle.testing import (
    Database,
    ServerProcess,
    auth_headers,
    free_port,
    run_socle,
    start_server,
    stop_server,
    token_for,
)

from ..record.world import RecordWorld, pdf_document
from .test_filing_record import xdm_for
from .world import (
    APP,
    DOMAIN,
    PATIENT,
    PRO_A,
    PRO_B,
    RPPS_A,
    RPPS_B,
    Inbox,
    Sink,
    mail_server_beside,
    message,
    poll,
    running_sink,
    smtp,
    url_of,
)

MAX_BYTES = 400_000
INS_NIR_OID = "1.2.250.1.213.1.4.8"


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with running_sink() as handler:
        yield handler


@pytest.fixture(scope="module")
def mail_server(database: Database, sink: Sink) -> Iterator[tuple[ServerProcess, int]]:
    with mail_server_beside(
        database, "socle_mail", sink, SOCLE_SMTP_MAX_BYTES=str(MAX_BYTES)
    ) as served:
        yield served


@pytest.fixture(scope="module")
def port(mail_server: tuple[ServerProcess, int]) -> int:
    return mail_server[1]


@pytest.fixture(scope="module")
def operator(mail_server: tuple[ServerProcess, int]) -> Iterator[Inbox]:
    server, _ = mail_server
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as client:
        yield Inbox(client)


def bearer(mechanism: str, user: str, token: str) -> str:
    if mechanism == "XOAUTH2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01"
    return f"n,a={user},\x01auth=Bearer {token}\x01\x01"


def test_professional_to_professional_with_password_and_attachment(
    port: int, operator: Inbox
) -> None:
    msg = message(PRO_A, [PRO_B], text="Voici le compte rendu.")
    msg.add_attachment(b"%PDF-1.4 test", maintype="application", subtype="pdf", filename="cr.pdf")
    with smtp(port, login=PRO_A) as client:
        assert client.send_message(msg) == {}
    found = operator.wait(msg["Message-ID"])
    assert found["status"] == "completed"
    assert found["sender"]["reference"] == "Practitioner/pro-a"
    assert [r.get("reference") for r in found["recipient"]] == ["Practitioner/pro-b"]
    assert found["topic"]["text"] == "Compte rendu"
    assert found["payload"][0]["contentString"].strip() == "Voici le compte rendu."
    document = found["payload"][1]["contentReference"]["reference"]
    r = operator.client.get(f"/{document}")
    assert r.status_code == 200, r.text
    attachment = r.json()["content"][0]["attachment"]
    assert (attachment["title"], attachment["size"]) == ("cr.pdf", 13)
    binary = operator.client.get(
        f"/{attachment['url']}", headers={"Accept": "application/fhir+json"}
    )
    assert base64.b64decode(binary.json()["data"]) == b"%PDF-1.4 test"
    # the recipient's mailbox is a search on the recipient's address
    listed = operator.client.get(
        "/Communication", params={"recipient:identifier": f"urn:ietf:rfc:3986|mailto:{PRO_B}"}
    )
    assert found["id"] in [e["resource"]["id"] for e in listed.json()["entry"]]


def test_professional_to_patient_with_xoauth2_then_the_patient_reads_it(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox
) -> None:
    server, _ = mail_server
    token = token_for(server, f"practitioner:{RPPS_A}")
    msg = message(PRO_A, [PATIENT], text="Vos résultats sont normaux.")
    with smtp(port) as client:
        client.auth("XOAUTH2", lambda challenge=None: bearer("XOAUTH2", PRO_A, token))
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    assert found["subject"] == {"reference": "Patient/pat-1"}
    headers = auth_headers(server, "patient:pat-1")
    seen = httpx.get(f"{server.fhir}/Communication/{found['id']}", headers=headers, timeout=30)
    assert seen.status_code == 200, seen.text


def test_patient_replies_with_oauthbearer_and_the_thread_is_kept(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox
) -> None:
    server, _ = mail_server
    first = message(PRO_A, [PATIENT], text="Prenez rendez-vous.")
    with smtp(port, login=PRO_A) as client:
        client.send_message(first)
    original = operator.wait(first["Message-ID"])
    token = token_for(server, "patient:pat-1")
    reply = message(PATIENT, [PRO_A], text="Merci.", In_Reply_To=first["Message-ID"])
    with smtp(port) as client:
        client.auth("OAUTHBEARER", lambda challenge=None: bearer("OAUTHBEARER", PATIENT, token))
        client.send_message(reply)
    found = operator.wait(reply["Message-ID"])
    assert found["inResponseTo"] == [{"reference": f"Communication/{original['id']}"}]
    assert found["sender"]["reference"] == "Patient/pat-1"


def test_authenticated_sender_reaches_another_operator_through_the_relay(
    port: int, sink: Sink
) -> None:
    msg = message(PRO_A, ["someone@other-operator.test"], text="Adressage.")
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    poll(lambda: sink.received)
    sender, recipients, content = sink.received[-1]
    assert (sender, recipients) == (PRO_A, ["someone@other-operator.test"])
    assert msg["Message-ID"].encode() in content


def test_send_over_http(mail_server: tuple[ServerProcess, int], operator: Inbox) -> None:
    server, _ = mail_server
    communication = {
        "resourceType": "Communication",
        "status": "in-progress",
        "sender": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{APP}"}},
        "recipient": [{"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{PRO_B}"}}],
        "topic": {"text": "Résultat"},
        "payload": [
            {"contentString": "Résultat disponible."},
            {"contentAttachment": {"contentType": "text/plain", "data": "b2s=", "title": "r.txt"}},
        ],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "communication", "resource": communication}],
    }
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server, "system:dpi:hosp")}
    r = httpx.post(f"{server.fhir}/Communication/$send", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    out = {p["name"]: p for p in r.json()["parameter"]}
    found = operator.wait(out["message-id"]["valueString"])
    assert f"Communication/{found['id']}" == out["communication"]["valueReference"]["reference"]
    assert found["sender"]["reference"] == "Organization/hosp"
    # not the caller's mailbox: 403 at the sender
    communication["sender"]["identifier"]["value"] = f"mailto:{PRO_A}"
    r = httpx.post(f"{server.fhir}/Communication/$send", json=body, headers=headers, timeout=30)
    assert r.status_code == 403, r.text
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].resource.sender"]
    # a reply only to a message the caller may read: the patient took no part in this one, and
    # a message that does not exist gets the same answer (its Message-ID would go in the headers)
    patient = {"Content-Type": "application/fhir+json", **auth_headers(server, "patient:pat-1")}
    communication["sender"]["identifier"]["value"] = f"mailto:{PATIENT}"
    for answered in (found["id"], "msg-999999"):
        communication["inResponseTo"] = [{"reference": f"Communication/{answered}"}]
        r = httpx.post(f"{server.fhir}/Communication/$send", json=body, headers=patient, timeout=30)
        assert r.status_code == 422, r.text
        where = r.json()["issue"][0]["expression"]
        assert where == ["Parameters.parameter[0].resource.inResponseTo[0]"]


def test_another_operator_delivers_to_a_local_mailbox_without_authentication(
    port: int, operator: Inbox
) -> None:
    msg = message("dr.x@other-operator.test", [PRO_B], text="Avis demandé.")
    with smtp(port) as client:
        assert client.send_message(msg) == {}
    found = operator.wait(msg["Message-ID"])
    assert "reference" not in found["sender"]
    assert found["sender"]["identifier"]["value"] == "mailto:dr.x@other-operator.test"


def test_no_auth_before_starttls(port: int) -> None:
    with smtp(port, tls=False) as client:
        assert not client.has_extn("auth")
        code, _ = client.mail(PRO_A)
        assert code == 530


def test_wrong_password_is_refused(port: int) -> None:
    with smtp(port) as client, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(PRO_A, "not the password at all")
    assert refused.value.smtp_code == 535


def test_unknown_local_recipient_is_refused_and_the_sender_learns_which(
    port: int, operator: Inbox
) -> None:
    unknown = f"nobody@{DOMAIN}"
    msg = message(PRO_A, [PRO_B, unknown])
    with smtp(port, login=PRO_A) as client:
        refused = client.send_message(msg)
    assert set(refused) == {unknown}
    assert refused[unknown][0] == 550 and refused[unknown][1].startswith(b"5.1.1")
    found = operator.wait(msg["Message-ID"])
    assert [r["display"] for r in found["recipient"]] == [PRO_B]


def test_relay_without_authentication_is_refused(port: int) -> None:
    with smtp(port) as client:
        client.mail("someone@elsewhere.test")
        code, text = client.rcpt("other@elsewhere.test")
    assert (code, text[:5]) == (554, b"5.7.1")


def test_unauthenticated_client_may_not_claim_a_local_sender(port: int) -> None:
    with smtp(port) as client:
        code, _ = client.mail(PRO_A)
    assert code == 530


def test_authenticated_client_sends_from_its_own_mailbox_only(port: int) -> None:
    with smtp(port, login=PRO_A) as client:
        code, text = client.mail(PRO_B)
    assert (code, text[:5]) == (553, b"5.7.1")


def test_oversize_message_is_refused(port: int) -> None:
    msg = message(PRO_A, [PRO_B], text="x" * (MAX_BYTES + 10))
    with smtp(port, login=PRO_A) as client, pytest.raises(smtplib.SMTPException) as refused:
        client.send_message(msg)
    assert "552" in str(refused.value)


def test_a_full_mailbox_refuses_what_does_not_fit_and_keeps_its_usage_when_folded(
    mail_server: tuple[ServerProcess, int], port: int
) -> None:
    """The quota counts every accepted message (usage rows, folded later into the mailbox):
    the recipient a message would overfill is refused with 552, the others get it."""
    server, _ = mail_server
    small = f"quota.{uuid.uuid4().hex[:8]}@{DOMAIN}"
    first = message(PRO_A, [small], text="x" * 20_000)
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        mailboxes.create(conn, small, "ORG", "Organization/quota", quota_bytes=30_000)
    with smtp(port, login=PRO_A) as client:
        assert client.send_message(first) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(message(PRO_A, [small], text="y" * 20_000))
    assert refused.value.smtp_code == 552
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        (before,) = [m.used_bytes for m in mailboxes.listed(conn) if m.address == small]
        conn.execute(mailboxes.FOLD_USAGE)
        conn.execute(mailboxes.FOLD_USAGE)  # nothing left to fold: unchanged
        (after,) = [m.used_bytes for m in mailboxes.listed(conn) if m.address == small]
        folded = conn.execute(
            "SELECT used_bytes, (SELECT count(*) FROM mailbox_usage WHERE address = %s)"
            " FROM mailbox WHERE address = %s",
            (small, small),
        ).fetchone()
    assert 20_000 < before <= 30_000
    assert after == before and folded == (before, 0)


def test_directory_finds_mailboxes_by_type_and_address(operator: Inbox) -> None:
    def ids(r: httpx.Response) -> list[str]:
        assert r.status_code == 200, r.text
        # a warning (the new parameters' index still being built) is an outcome entry, not a match
        return [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "match"]

    by_type = operator.client.get(
        "/Practitioner", params={"mailbox-mss-type": f"{TYPE_BAL_SYSTEM}|PER"}
    )
    assert set(ids(by_type)) >= {"pro-a", "pro-b"}
    apps = operator.client.get("/Organization", params={"mailbox-mss-type": "APP"})
    assert ids(apps) == ["hosp"]
    by_address = operator.client.get("/Practitioner", params={"mailbox-mss": PRO_A})
    assert ids(by_address) == ["pro-a"]
    # a mailbox on the red list (listeRouge) is not found by the look-ups
    unlisted = f"dr.u@{DOMAIN}"
    body = {
        "resourceType": "Practitioner",
        "id": "pro-u",
        "name": [{"family": "Uniform"}],
        "telecom": [telecom(unlisted, "PER", unlisted=True)],
    }
    assert operator.client.put("/Practitioner/pro-u", json=body).status_code in (200, 201)
    assert ids(operator.client.get("/Practitioner", params={"mailbox-mss": unlisted})) == []
    listed = operator.client.get("/Practitioner", params={"mailbox-mss-type": "PER"})
    assert "pro-u" not in ids(listed) and "pro-a" in ids(listed)


def test_mailboxes_provisioned_from_the_directory(
    mail_server: tuple[ServerProcess, int], operator: Inbox
) -> None:
    server, _ = mail_server
    body = {
        "resourceType": "Practitioner",
        "id": "pro-c",
        "identifier": [{"system": IDNAT_PS, "value": "810000000003"}],
        "name": [{"family": "Charlie"}],
    }
    assert operator.client.put("/Practitioner/pro-c", json=body).status_code in (200, 201)
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        provision(conn, DOMAIN)
        provision(conn, DOMAIN)  # again: nothing changes
        rows = conn.execute(
            "SELECT kind, owner, identifier FROM mailbox WHERE address = %s",
            (f"10000000003@{DOMAIN}",),
        ).fetchall()
    assert rows == [("PER", "Practitioner/pro-c", "10000000003")]
    # published in the owner's telecom (job messaging.publish): the directory finds it
    address = f"10000000003@{DOMAIN}"

    def published() -> list[str]:
        r = operator.client.get("/Practitioner", params={"mailbox-mss": address})
        return [
            e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
        ]

    assert poll(published) == ["pro-c"]
    pro_c = operator.client.get("/Practitioner/pro-c").json()
    assert [t["value"] for t in pro_c["telecom"]] == [address]
    mssante = {"url": EMAIL_TYPE, "valueCoding": MSSANTE}
    assert mssante in pro_c["telecom"][0]["extension"]  # FR Core / Annuaire: an MSSanté address
    # the citizen mailbox in its Patient's telecom, where professionals' software finds it
    pat = operator.client.get("/Patient/pat-1").json()
    assert [t for t in pat.get("telecom", []) if t["value"] == PATIENT] == [
        {"extension": [mssante], "system": "email", "value": PATIENT, "use": "home"}
    ]
    version = pro_c["meta"]["versionId"]
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        provision(conn, DOMAIN)  # published again: no new version
        poll(
            lambda: conn.execute(
                "SELECT count(*) = 0 FROM job WHERE kind = 'messaging.publish'"
                " AND state IN ('queued', 'running')"
            ).fetchone()[0]
        )
    assert operator.client.get("/Practitioner/pro-c").json()["meta"]["versionId"] == version


def test_accepted_message_survives_kill_9(
    mail_server: tuple[ServerProcess, int], operator: Inbox
) -> None:
    """`250` means stored: a second server on the same database, with no job worker (only what
    the 250 stored can deliver the message), is killed with SIGKILL right after accepting; the
    module's server delivers the message."""
    server, _ = mail_server
    port = free_port()
    env = {"SOCLE_SMTP_PORT": str(port), "SOCLE_MAIL_DOMAIN": DOMAIN, "SOCLE_JOBS_IN_SERVE": "0"}
    doomed = start_server(server.database, extra_env=env)
    try:
        msg = message(PRO_A, [PRO_B], text="Urgent.")
        with smtp(port, login=PRO_A) as client:
            assert client.send_message(msg) == {}
    finally:
        stop_server(doomed, signal.SIGKILL)
    found = operator.wait(msg["Message-ID"])
    assert found["sender"]["reference"] == "Practitioner/pro-a"


def test_participants_read_their_messages_others_do_not(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox
) -> None:
    """The policy's participant rule: the owners of the sender's and recipients' mailboxes read
    a message that concerns no patient, and its attachment; another professional finds nothing
    and is refused the read; every read is audited."""
    server, _ = mail_server
    msg = message(PRO_A, [PRO_B, APP], text="Entre confrères.", subject="Réunion")
    msg.add_attachment(b"ordre du jour", maintype="text", subtype="plain", filename="odj.txt")
    with smtp(port, login=PRO_A) as client:
        assert client.send_message(msg) == {}
    found = operator.wait(msg["Message-ID"])
    assert "subject" not in found  # no patient: in no patient's compartment
    document = found["payload"][1]["contentReference"]["reference"]
    address = {"recipient:identifier": f"urn:ietf:rfc:3986|mailto:{PRO_B}"}

    def listed(principal: str, params: dict[str, str]) -> list[str]:
        r = httpx.get(
            f"{server.fhir}/Communication",
            params=params,
            headers=auth_headers(server, principal),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", [])]

    def read(principal: str, reference: str) -> httpx.Response:
        headers = {**auth_headers(server, principal), "Accept": "application/fhir+json"}
        return httpx.get(f"{server.fhir}/{reference}", headers=headers, timeout=30)

    for owner in (f"practitioner:{RPPS_B}", f"practitioner:{RPPS_A}", "system:dpi:hosp"):
        assert found["id"] in listed(owner, address), owner
        assert read(owner, f"Communication/{found['id']}").status_code == 200, owner
        attachment = read(owner, document)
        assert attachment.status_code == 200, (owner, attachment.text)
        binary = read(owner, attachment.json()["content"][0]["attachment"]["url"])
        assert base64.b64decode(binary.json()["data"]) == b"ordre du jour"
    # the sender's outbox too
    sent = {"sender:identifier": f"urn:ietf:rfc:3986|mailto:{PRO_A}"}
    assert found["id"] in listed(f"practitioner:{RPPS_A}", sent)
    # another professional, another organisation's client: nothing listed, reads refused
    # (and the ARS analyst: a message of no patient is not non-nominative data)
    for stranger in ("practitioner:10000000009", "system:dpi:other", "ars"):
        assert listed(stranger, address) == []
        assert listed(stranger, {"_id": found["id"]}) == []
        assert read(stranger, f"Communication/{found['id']}").status_code in (403, 404)
        assert read(stranger, document).status_code in (403, 404)
    # a client may not claim to take part in a message
    tagged = {
        "resourceType": "Communication",
        "status": "completed",
        "meta": {"tag": found["meta"]["tag"]},
    }
    headers = {
        "Content-Type": "application/fhir+json",
        **auth_headers(server, f"practitioner:{RPPS_B}"),
    }
    r = httpx.post(f"{server.fhir}/Communication", json=tagged, headers=headers, timeout=30)
    assert r.status_code == 403, r.text
    # the owner's read is audited, naming the message
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:

        def audited() -> int:
            row = conn.execute(
                "SELECT count(*) FROM audit_log WHERE event LIKE %s AND %s = ANY(agents)",
                (f"%Communication/{found['id']}%", f"{IDNAT_PS}|8{RPPS_B}"),
            ).fetchone()
            return int(row[0]) if row else 0

        poll(audited)


def test_a_patient_lists_the_messages_of_its_citizen_mailbox(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox
) -> None:
    server, _ = mail_server
    msg = message(PRO_B, [PATIENT], text="Votre rendez-vous est confirmé.")
    with smtp(port, login=PRO_B) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    r = httpx.get(
        f"{server.fhir}/Communication",
        params={"recipient:identifier": f"urn:ietf:rfc:3986|mailto:{PATIENT}"},
        headers=auth_headers(server, "patient:pat-1"),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert found["id"] in [e["resource"]["id"] for e in r.json()["entry"]]
    other = httpx.get(
        f"{server.fhir}/Communication/{found['id']}",
        headers=auth_headers(server, "patient:pat-2"),
        timeout=30,
    )
    assert other.status_code in (403, 404)


# -- documents in messages: XDM unpacked, filed to the record, acknowledged (MDN) ---------------


@pytest.fixture(scope="module")
def record(mail_server: tuple[ServerProcess, int]) -> Any:
    """The record's test region on the mail server, the PER mailboxes of its professionals and
    the APP mailbox of its hospital."""
    server, _ = mail_server
    world = RecordWorld(server)
    patient = world.op.get(f"/Patient/{world.patient}").json()
    ins = next(i for i in patient["identifier"] if i.get("system", "").endswith(INS_NIR_OID))
    world.ins = PatientId(ins["value"], INS_NIR_OID)
    world.address = {k: f"{rpps}@{DOMAIN}" for k, rpps in world.rpps.items()}
    world.address["app"] = f"pfi-{world.u}@{DOMAIN}"
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        for key, rpps in world.rpps.items():
            owner = f"Practitioner/{world.practitioners[key]}"
            mailboxes.create(conn, world.address[key], "PER", owner, identifier=rpps)
        mailboxes.create(conn, world.address["app"], "APP", f"Organization/{world.hospital}")
    return world


def document_message(record: Any, to: str, content: bytes, **headers: str) -> Any:
    msg = message(PRO_A, [to], text="Veuillez trouver le document.", subject="XDM/1.0/DDM+CR")
    for name, value in {"X-MSS-NIL": "socle-tests", **headers}.items():
        msg[name.replace("_", "-")] = value
    msg.add_attachment(
        xdm_for(record, content), maintype="application", subtype="zip", filename="IHE_XDM.ZIP"
    )
    msg.add_attachment(content, maintype="application", subtype="pdf", filename="copie.pdf")
    return msg


def acknowledgement_of(server: ServerProcess, row: int) -> Any:
    """The MDN sent back for message `row` (its raw bytes, as accepted)."""
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:

        def found() -> Any:
            hit = conn.execute("SELECT raw FROM mail_message WHERE answers = %s", (row,)).fetchone()
            return bytes(hit[0]) if hit else None

        return parse_mdn(poll(found))


def test_xdm_filed_by_the_recipient_who_asks_and_acknowledged(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox, record: Any
) -> None:
    server, _ = mail_server
    content = pdf_document("Compte rendu par messagerie " + uuid.uuid4().hex)
    to = record.address["other"]  # a professional of the patient's care team
    msg = document_message(record, to, content, Disposition_Notification_To=PRO_A)
    with smtp(port, login=PRO_A) as client:
        assert client.send_message(msg) == {}
    found = operator.wait(msg["Message-ID"])
    row = int(found["id"].removeprefix("msg-"))
    # the XDM's document is an attachment with its XDM metadata, linked to the record's entry
    refs = [p["contentReference"]["reference"] for p in found["payload"] if "contentReference" in p]
    assert len(refs) == 2  # the XDM's document, the PDF copy (the archive itself is unpacked)
    copy = operator.client.get(f"/{refs[0]}").json()
    assert copy["type"]["coding"][0]["code"] == "11490-0"
    assert copy["content"][0]["format"]["code"] == "urn:ihe:iti:xds-sd:pdf:2008"
    assert "masterIdentifier" not in copy
    (related,) = copy["context"]["related"]
    entry = operator.client.get(f"/{related['reference']}").json()
    assert entry["subject"] == {"reference": f"Patient/{record.patient}"}
    assert entry["masterIdentifier"]["value"].startswith("urn:oid:2.25.")
    assert any("Filed to the shared record" in n["text"] for n in found["note"])
    # filed with the recipient's own rights: the record's author sees it through the API
    with record.pro("author") as c:
        assert c.get(f"/{related['reference']}").status_code == 200
    # the MDN: processed, sent by the recipient to the asked address, the originals re-attached
    disposition = acknowledgement_of(server, row)
    assert disposition.integrated
    assert disposition.final_recipient == to
    assert disposition.original_message_id == msg["Message-ID"]
    assert {a.filename for a in disposition.attachments} == {"IHE_XDM.ZIP", "copie.pdf"}
    # … delivered to the sender's mailbox like any message
    mdn_message = poll(
        lambda: (
            operator.client.get(
                "/Communication", params={"sender:identifier": f"urn:ietf:rfc:3986|mailto:{to}"}
            )
            .json()
            .get("entry")
        )
    )[0]["resource"]
    assert mdn_message["topic"]["text"].startswith("[OK Intégration système]")
    assert mdn_message["inResponseTo"] == [{"reference": f"Communication/{found['id']}"}]


@pytest.mark.parametrize(
    ("who", "headers", "code"),
    [
        ("outsider", {}, "902"),  # no care relationship: the patient is unknown to him
        ("other", {"X-MSS-INS": "N"}, "905"),  # the sender says the INS is not qualified
    ],
)
def test_xdm_not_filed_is_acknowledged_with_its_error_code(
    mail_server: tuple[ServerProcess, int],
    port: int,
    operator: Inbox,
    record: Any,
    who: str,
    headers: dict[str, str],
    code: str,
) -> None:
    server, _ = mail_server
    content = pdf_document(f"Refus {code} " + uuid.uuid4().hex)
    msg = document_message(
        record, record.address[who], content, Disposition_Notification_To=PRO_A, **headers
    )
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    disposition = acknowledgement_of(server, int(found["id"].removeprefix("msg-")))
    assert disposition.error is not None and disposition.error.code == code
    assert any("Not filed to the shared record" in n["text"] for n in found["note"])
    # nothing reached the record
    copy = operator.client.get(f"/{found['payload'][1]['contentReference']['reference']}")
    assert "related" not in copy.json().get("context", {})


def test_a_recipient_files_a_received_message_later_with_his_own_rights(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox, record: Any
) -> None:
    """No integration status asked: not filed at delivery. The recipient files it later
    (Communication/$file), as himself; again changes nothing; nobody else may."""
    content = pdf_document("Filed later " + uuid.uuid4().hex)
    to = record.address["other"]
    msg = document_message(record, to, content)  # no Disposition-Notification-To
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    copy_ref = next(
        p["contentReference"]["reference"] for p in found["payload"] if "contentReference" in p
    )
    assert "related" not in operator.client.get(f"/{copy_ref}").json().get("context", {})
    url = f"/Communication/{found['id']}/$file"
    params = {"resourceType": "Parameters"}
    # another professional (not a recipient) may not; nor may the sender
    with record.pro("author") as c:
        assert c.post(url, json=params).status_code in (403, 404)
    with record.pro("other") as c:
        first = c.post(url, json=params)
        assert first.status_code == 200, first.text
        filed = [p["valueReference"]["reference"] for p in first.json()["parameter"]]
        assert len(filed) == 1 and filed[0].startswith("DocumentReference/")
        entry = c.get(f"/{filed[0]}").json()
        assert entry["subject"] == {"reference": f"Patient/{record.patient}"}
        assert entry["masterIdentifier"]["value"].startswith("urn:oid:2.25.")
        again = c.post(url, json=params)  # filed already: the same reference, nothing twice
        assert again.status_code == 200, again.text
        assert [p["valueReference"]["reference"] for p in again.json()["parameter"]] == filed
        unique = entry["masterIdentifier"]["value"]
        same = c.get("/DocumentReference", params={"identifier": unique, "patient": record.patient})
        assert len(same.json().get("entry", [])) == 1
        # a message without documents has nothing to file
        plain = message(PRO_A, [to], text="Sans document")
        with smtp(port, login=PRO_A) as client:
            client.send_message(plain)
        nothing = operator.wait(plain["Message-ID"])
        r = c.post(f"/Communication/{nothing['id']}/$file", json=params)
        assert r.status_code == 422 and "no IHE XDM" in r.text


def test_a_refused_later_filing_says_why_and_writes_nothing(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox, record: Any
) -> None:
    content = pdf_document("Refused later " + uuid.uuid4().hex)
    msg = document_message(record, record.address["outsider"], content)
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    with record.pro("outsider") as c:  # no care relationship with the patient
        r = c.post(f"/Communication/{found['id']}/$file", json={"resourceType": "Parameters"})
    assert r.status_code == 422, r.text
    assert "902" in r.json()["issue"][0]["diagnostics"]
    copy = operator.client.get(f"/{found['payload'][1]['contentReference']['reference']}")
    assert "related" not in copy.json().get("context", {})


def test_a_refused_archive_stores_nothing_of_it_and_says_why(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox, record: Any
) -> None:
    server, _ = mail_server
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"\0" * (30 * 1024 * 1024))
    msg = message(PRO_A, [record.address["other"]], subject="XDM/1.0/DDM+CR")
    msg["Disposition-Notification-To"] = PRO_A
    msg.add_attachment(
        bomb.getvalue(), maintype="application", subtype="zip", filename="IHE_XDM.ZIP"
    )
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    assert not [p for p in found.get("payload", []) if "contentReference" in p]
    assert any("906" in n["text"] and "zip-bomb" in n["text"] for n in found["note"])
    disposition = acknowledgement_of(server, int(found["id"].removeprefix("msg-")))
    assert disposition.error is not None and disposition.error.code == "906"


def test_an_application_mailbox_files_by_rule_as_its_organisation(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox, record: Any
) -> None:
    """No acknowledgement asked: the integration platform still files (its organisation's
    rights: a patient it does not know is 902), says so, and sends no MDN."""
    server, _ = mail_server
    msg = document_message(record, record.address["app"], pdf_document("PFI " + uuid.uuid4().hex))
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    assert any(
        "Not filed to the shared record" in n["text"] and "902" in n["text"] for n in found["note"]
    )
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        row = int(found["id"].removeprefix("msg-"))
        filing, answers = conn.execute(
            "SELECT filing, (SELECT count(*) FROM mail_message a WHERE a.answers = m.id)"
            " FROM mail_message m WHERE id = %s",
            (row,),
        ).fetchone()
    assert filing[record.address["app"]]["code"] == "902"
    assert answers == 0


def _send_record_document(record: Any, sender: str, to: str, doc_id: str) -> httpx.Response:
    """$send, as the sender's professional, of a message carrying a record document."""
    communication = {
        "resourceType": "Communication",
        "status": "in-progress",
        "sender": {
            "identifier": {
                "system": "urn:ietf:rfc:3986",
                "value": f"mailto:{record.address[sender]}",
            }
        },
        "recipient": [{"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{to}"}}],
        "topic": {"text": "Compte rendu du dossier"},
        "payload": [
            {"contentString": "Voici le compte rendu."},
            {"contentReference": {"reference": f"DocumentReference/{doc_id}"}},
        ],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "communication", "resource": communication}],
    }
    with record.pro(sender) as c:
        return c.post("/Communication/$send", json=body)


def test_a_record_document_is_sent_as_xdm_to_those_who_may_read_it(
    mail_server: tuple[ServerProcess, int], sink: Sink, operator: Inbox, record: Any
) -> None:
    """A professional sends a document of the shared record: it leaves as IHE_XDM.ZIP with its
    metadata, to a recipient the record lets read it; never to one it hides it from."""
    content = pdf_document("Envoi depuis le dossier " + uuid.uuid4().hex)
    doc = record.provide(record.bundle(content))["DocumentReference"]
    sent = _send_record_document(record, "author", record.address["other"], doc)
    assert sent.status_code == 200, sent.text
    reference = {p["name"]: p for p in sent.json()["parameter"]}["communication"]
    found = poll(
        lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            operator.client.get(f"/{reference['valueReference']['reference']}")
        )
    )
    copies = [
        p["contentReference"]["reference"] for p in found["payload"] if "contentReference" in p
    ]
    assert len(copies) == 1  # the XDM's document, unpacked at delivery
    copy = operator.client.get(f"/{copies[0]}").json()
    original = operator.client.get(f"/DocumentReference/{doc}").json()
    assert copy["type"]["coding"][0]["code"] == original["type"]["coding"][0]["code"]
    binary = operator.client.get(
        f"/{copy['content'][0]['attachment']['url']}", headers={"Accept": "application/fhir+json"}
    )
    assert base64.b64decode(binary.json()["data"]) == content
    # the record hides it from a professional without a care relationship: not sent
    refused = _send_record_document(record, "author", record.address["outsider"], doc)
    assert refused.status_code == 422, refused.text
    issue = refused.json()["issue"][0]
    assert issue["expression"] == ["Parameters.parameter[0].resource.payload[1]"]
    assert "visibility" in issue["diagnostics"]
    # one masked from professionals (MASQUE_PS) goes to nobody but its author's readers
    masked = record.provide(
        record.bundle(pdf_document("Masqué " + uuid.uuid4().hex), labels=("MASQUE_PS",))
    )["DocumentReference"]
    assert (
        _send_record_document(record, "author", record.address["other"], masked).status_code == 422
    )
    # another operator's recipient: only a document without a visibility restriction
    foreign = "dr.ailleurs@autre-operateur.example"
    relayed = len(sink.received)
    assert _send_record_document(record, "author", foreign, masked).status_code == 422
    assert _send_record_document(record, "author", foreign, doc).status_code == 200
    got = poll(lambda: sink.received[relayed:] or None)
    assert b"IHE_XDM.ZIP" in got[0][2]
    # a document the sender may not read is one that does not exist
    unknown = _send_record_document(record, "outsider", record.address["other"], doc)
    assert unknown.status_code in (403, 422), unknown.text


def _attempted(server: ServerProcess, found: dict[str, Any], address: str) -> bool:
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:
        (filing,) = conn.execute(
            "SELECT filing FROM mail_message WHERE id = %s",
            (int(found["id"].removeprefix("msg-")),),
        ).fetchone()
    return address in (filing or {})


def test_a_mailbox_files_by_the_rule_its_operator_sets(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox, record: Any
) -> None:
    """`socle mailbox filing`: never, only some document types, only some senders, always
    (a person's mailbox too, without being asked), and back to its kind's rule."""
    server, _ = mail_server
    app, person = record.address["app"], record.address["other"]

    def rule(address: str, *args: str) -> None:
        done = run_socle(server.database, "mailbox", "filing", address, *args)
        assert done.returncode == 0, done.stderr

    def delivered(to: str) -> dict[str, Any]:
        msg = document_message(record, to, pdf_document("Règle " + uuid.uuid4().hex))
        with smtp(port, login=PRO_A) as client:
            client.send_message(msg)
        return operator.wait(msg["Message-ID"])

    try:
        rule(app, "--mode", "never")
        assert not _attempted(server, delivered(app), app)
        rule(app, "--mode", "always", "--type", "11488-4")  # the documents are 11490-0
        assert not _attempted(server, delivered(app), app)
        rule(app, "--mode", "always", "--type", "11490-0", "--sender", "@other.example")
        assert not _attempted(server, delivered(app), app)
        rule(app, "--mode", "always", "--type", "11490-0", "--sender", f"@{DOMAIN}")
        assert _attempted(server, delivered(app), app)
        # a person's mailbox set to always files without being asked, with his rights
        rule(person, "--mode", "always")
        found = delivered(person)
        assert any("Filed to the shared record" in n["text"] for n in found["note"])
        listed = run_socle(server.database, "mailbox", "list")
        line = next(x for x in listed.stdout.splitlines() if x.startswith(person))
        assert " always " in line
        wrong = run_socle(server.database, "mailbox", "filing", app, "--mode", "sometimes")
        assert wrong.returncode == 2 and "always, asked, never" in wrong.stderr
    finally:
        rule(app, "--default")
        rule(person, "--default")
    assert not _attempted(server, delivered(person), person)  # asked for nothing: not filed


def test_deliveries_and_sends_are_audited(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox
) -> None:
    server, _ = mail_server
    msg = message(PRO_A, [PATIENT], text="Résultats disponibles.")
    with smtp(port, login=PRO_A) as client:
        client.send_message(msg)
    found = operator.wait(msg["Message-ID"])
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:

        def delivered() -> Any:
            return conn.execute(
                "SELECT patients FROM audit_log WHERE event LIKE %s AND event LIKE %s",
                (f"%message {found['id']} delivered%", "%Socle secure messaging%"),
            ).fetchone()

        assert poll(delivered)[0] == ["pat-1"]  # in the patient's access history
    # $send: the caller's operation, audited with the message it will be
    communication = {
        "resourceType": "Communication",
        "status": "in-progress",
        "sender": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{APP}"}},
        "recipient": [{"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{PRO_B}"}}],
        "payload": [{"contentString": "Bonjour."}],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "communication", "resource": communication}],
    }
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server, "system:dpi:hosp")}
    r = httpx.post(f"{server.fhir}/Communication/$send", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    reference = {p["name"]: p for p in r.json()["parameter"]}["communication"]["valueReference"]
    with psycopg.connect(url_of(server.database), autocommit=True) as conn:

        def sent() -> Any:
            return conn.execute(
                "SELECT agents FROM audit_log WHERE event LIKE %s AND event LIKE %s",
                (f"%{reference['reference']}%", "%$send%"),
            ).fetchone()

        assert any("dpi" in agent for agent in poll(sent)[0])


def test_a_professional_closes_replies_with_x_mss_mes_fin(
    mail_server: tuple[ServerProcess, int], port: int, operator: Inbox
) -> None:
    server, _ = mail_server
    closing = message(PRO_A, [PATIENT], text="Pas de réponse attendue.", X_MSS_MES="FIN")
    with smtp(port, login=PRO_A) as client:
        client.send_message(closing)
    found = operator.wait(closing["Message-ID"])
    assert any("X-MSS-MES: FIN" in n["text"] for n in found["note"])
    token = token_for(server, "patient:pat-1")
    reply = message(PATIENT, [PRO_A], text="Une question.", In_Reply_To=closing["Message-ID"])
    with smtp(port) as client:
        client.auth("OAUTHBEARER", lambda challenge=None: bearer("OAUTHBEARER", PATIENT, token))
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(reply)
    assert refused.value.smtp_code == 550
    # and through $send
    communication = {
        "resourceType": "Communication",
        "status": "in-progress",
        "sender": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{PATIENT}"}},
        "recipient": [{"identifier": {"system": "urn:ietf:rfc:3986", "value": f"mailto:{PRO_A}"}}],
        "inResponseTo": [{"reference": f"Communication/{found['id']}"}],
        "payload": [{"contentString": "Une question."}],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "communication", "resource": communication}],
    }
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server, "patient:pat-1")}
    r = httpx.post(f"{server.fhir}/Communication/$send", json=body, headers=headers, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].resource.inResponseTo"]

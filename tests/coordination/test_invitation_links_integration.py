"""Inviting a professional who has not used Socle yet, on a real server whose smarthost is a
real SMTP receiver: the invitation (by RPPS, or by MSSanté address) mails a one-time link without
health data; opening it asks to sign in with Pro Santé Connect and brings him back; the signed-in
identity must be the one invited (RPPS, or one of his directory addresses) — otherwise a French
refusal and nothing written; accepting joins the circle through $invitation-answer; the link is
good once, until it expires, while the invitation is pending."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from socle.coordination.codes import CIRCLE_ROLE, R259
from socle.testing import Database, ServerProcess, server_beside
from tests.auth.server.helpers import hidden_inputs, path_of, professional_login, query_of
from tests.messaging.test_smtp_integration import Sink

from .world import World, coding

MSSANTE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
R256 = "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"


def mailbox(address: str) -> dict[str, Any]:
    return {
        "system": "email",
        "value": address,
        "extension": [{"url": MSSANTE, "valueCoding": {"system": R256, "code": "MSSANTE"}}],
    }


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def mail_server(database: Database, sink: Sink) -> Iterator[ServerProcess]:
    env = {"SOCLE_SMTP_RELAY": f"127.0.0.1:{sink.port}", "SOCLE_SMTP_RELAY_SECURITY": "none"}
    with server_beside(database, "socle_links", env) as server:
        yield server


@pytest.fixture(scope="module")
def world(mail_server: ServerProcess) -> World:
    w = World(mail_server)
    with w.client("operator") as op:
        for key in ("social", "nurse"):  # their directory MSSanté mailboxes
            pr = op.get(f"/Practitioner/{w.ids['pr-' + key]}").json()
            pr["telecom"] = [mailbox(f"{key}.{w.u}@pro.mssante.test")]
            assert op.put(f"/Practitioner/{pr['id']}", json=pr).status_code == 200
    with w.pro("mt") as mt:  # the circle without the social worker and the nurse
        members = [w.member("role-coord", CIRCLE_ROLE, "COORD"), w.member("pr-mt", R259, "PCP")]
        r = mt.post("/CareTeam", json=w.care_team(members))
        assert r.status_code == 201, r.text
        w.ids["circle"] = r.json()["id"]
    return w


def _invite(w: World, **given: str) -> httpx.Response:
    parts = [
        {"name": k, "valueCode" if k == "role" else "valueString": v} for k, v in given.items()
    ]
    with w.pro("coord") as c:
        return c.post(
            f"/CareTeam/{w.ids['circle']}/$invite",
            json={"resourceType": "Parameters", "parameter": parts},
        )


def _mail_to(sink: Sink, address: str, before: int) -> tuple[str, str]:
    """The link of the invitation mailed to ``address`` since ``before`` mails, and the text."""
    [(_, rcpt, raw)] = [m for m in sink.received[before:] if address in m[1]]
    text = message_from_bytes(raw, policy=policy.default).get_body().get_content()
    [link] = re.findall(r"https?://\S+/pro/invitation/[A-Za-z0-9_-]+", text)
    return path_of(link), text


def _browser(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base, timeout=60, follow_redirects=False)


def _sign_in_from(http: httpx.Client, link: str, rpps: str) -> httpx.Response:
    """The link's « Se connecter » → PSC (stand-in) → back at the link, signed in."""
    page = http.get(link)
    assert page.status_code == 200, page.text
    [login] = re.findall(r'href="(/connexion\?suite=[^"]+)"', page.text)
    start = http.get(login.replace("&amp;", "&"))
    callback = professional_login(http, query_of(start.headers["location"]), rpps)
    assert callback.status_code == 303, callback.text
    back = http.get(path_of(callback.headers["location"]))
    assert back.status_code == 303 and back.headers["location"] == link, back.headers
    return http.get(link)


def _csrf(page: str, link: str) -> dict[str, str]:
    """The hidden fields of the form posting to the link."""
    return hidden_inputs(page[page.index(f'<form method="post" action="{link}"') :], 0)


def _members(w: World) -> list[str]:
    with w.client("operator") as op:
        circle = op.get(f"/CareTeam/{w.ids['circle']}").json()
    return [p["member"]["reference"] for p in circle["participant"]]


def _task(w: World, tid: str) -> dict:
    with w.client("operator") as op:
        return op.get(f"/Task/{tid}").json()


def test_by_rpps_the_link_is_for_him_alone_and_good_once(world: World, sink: Sink) -> None:
    before = len(sink.received)
    r = _invite(world, rpps=world.rpps["social"], message="Pouvez-vous suivre Mme ?")
    assert r.status_code == 201, r.text
    task = r.json()
    address = f"social.{world.u}@pro.mssante.test"
    assert {"type": {"text": "address"}, "valueString": address} in task["input"]
    link, text = _mail_to(sink, address, before)
    # id-only: who invites and the link; no patient, no message
    assert f"Coord{world.u}" in text and f"CoordP{world.u}" not in text
    assert "Jeanne" not in text and "Mme" not in text
    # another professional signed in with the link: refused, nothing written
    with _browser(world.server) as other:
        refused = _sign_in_from(other, link, world.rpps["outsider"])
        assert refused.status_code == 403
        assert "destiné à un autre professionnel" in refused.text
    assert _task(world, task["id"])["status"] == "requested"
    assert f"Practitioner/{world.ids['pr-social']}" not in _members(world)
    # the invited professional: the invitation, then accepting joins the circle
    with _browser(world.server) as social:
        shown = _sign_in_from(social, link, world.rpps["social"])
        assert shown.status_code == 200, shown.text
        assert f"CoordP{world.u}" in shown.text and "Pouvez-vous suivre Mme ?" in shown.text
        fields = _csrf(shown.text, link)
        forged = social.post(link, data={"csrf": "1.x", "decision": "accept"})
        assert forged.status_code == 400
        done = social.post(link, data={**fields, "decision": "accept"})
        assert done.status_code == 303, done.text
        assert "fait=accept" in done.headers["location"]
        assert _task(world, task["id"])["status"] == "accepted"
        assert f"Practitioner/{world.ids['pr-social']}" in _members(world)
        again = social.get(link)  # good once
        assert again.status_code == 410 and "déjà été utilisé" in again.text
        assert social.post(link, data={**fields, "decision": "decline"}).status_code == 410


def test_by_address_withdrawn_expired_wrong_address_then_accepted(
    world: World, sink: Sink, mail_server: ServerProcess
) -> None:
    address = f"nurse.{world.u}@pro.mssante.test"
    nurse_ref = f"Practitioner/{world.ids['pr-nurse']}"

    def invited() -> tuple[str, str]:
        before = len(sink.received)
        r = _invite(world, address=address.upper(), role="REF")
        assert r.status_code == 201, r.text
        assert r.json()["owner"]["reference"] == nurse_ref
        return r.json()["id"], _mail_to(sink, address, before)[0]

    # withdrawn: the link is revoked
    tid, link = invited()
    with world.pro("coord") as c:
        r = c.post(f"/Task/{tid}/$invitation-withdraw", json={"resourceType": "Parameters"})
        assert r.status_code == 200, r.text
    with _browser(world.server) as nurse:
        gone = _sign_in_from(nurse, link, world.rpps["nurse"])
        assert gone.status_code == 410 and "retirée" in gone.text
    # expired: refused, nothing written
    tid, link = invited()
    assert mail_server.database.url
    with psycopg.connect(mail_server.database.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE circle_invitation_link SET expires_at = now() - interval '1 day' "
            "WHERE task_id = %s",
            (tid,),
        )
    with _browser(world.server) as nurse:
        late = _sign_in_from(nurse, link, world.rpps["nurse"])
        assert late.status_code == 410 and "expiré" in late.text
    assert _task(world, tid)["status"] == "requested"
    with world.pro("coord") as c:
        c.post(f"/Task/{tid}/$invitation-withdraw", json={"resourceType": "Parameters"})
    # someone whose directory addresses do not include it: refused
    tid, link = invited()
    with _browser(world.server) as other:
        refused = _sign_in_from(other, link, world.rpps["social"])
        assert refused.status_code == 403 and "adresse MSSanté" in refused.text
    assert _task(world, tid)["status"] == "requested"
    # the professional of that address accepts: a member with the role offered
    with _browser(world.server) as nurse:
        shown = _sign_in_from(nurse, link, world.rpps["nurse"])
        assert shown.status_code == 200, shown.text
        fields = _csrf(shown.text, link)
        done = nurse.post(link, data={**fields, "decision": "accept"})
        assert done.status_code == 303, done.text
    with world.client("operator") as op:
        circle = op.get(f"/CareTeam/{world.ids['circle']}").json()
    [joined] = [p for p in circle["participant"] if p["member"]["reference"] == nurse_ref]
    assert joined["role"] == [coding(CIRCLE_ROLE, "REF")]


@pytest.mark.parametrize(
    ("given", "where", "code"),
    [
        ({"address": "personne@pro.mssante.test"}, "Parameters.parameter[0]", "not-found"),
        ({"address": "pas une adresse"}, "Parameters.parameter[0]", "value"),
        ({"message": "Bonjour"}, "Parameters.parameter", "required"),
    ],
)
def test_an_address_must_be_a_directory_mailbox(
    world: World, given: dict, where: str, code: str
) -> None:
    r = _invite(world, **given)
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert (issue["expression"], issue["code"]) == ([where], code)


def test_both_rpps_and_address_is_refused(world: World) -> None:
    r = _invite(world, rpps=world.rpps["outsider"], address="x@pro.mssante.test")
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("suite", ["//ailleurs.example/x", "https://ailleurs.example/", "x"])
def test_signing_in_returns_only_to_a_page_of_the_site(world: World, suite: str) -> None:
    with _browser(world.server) as http:
        start = http.get("/connexion", params={"suite": suite})
        callback = professional_login(http, query_of(start.headers["location"]), world.rpps["mt"])
        back = http.get(path_of(callback.headers["location"]))
        assert back.status_code == 303 and back.headers["location"] == "/", back.headers

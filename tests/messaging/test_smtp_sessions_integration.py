"""An SMTP session is only as good as its credentials, checked again at each message: a
revoked or expired token, a changed password, a closed mailbox end what an open session may
send (`530`, authenticate again) — smtplib as the real client against `socle serve`. And the
operators' `socle mailbox` commands that change them. Then a second, independent client
(aiosmtplib, asyncio) through the same journeys as smtplib: what one client's habits could
hide, another's would show."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import smtplib
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from socle.auth.revocation import revoke
from socle.testing import (
    Database,
    ServerProcess,
    auth_headers,
    free_port,
    run_socle,
    server_beside,
    token_for,
)

from .world import (
    DOMAIN,
    PASSWORD,
    PATIENT,
    PRO_A,
    PRO_B,
    RPPS_A,
    Inbox,
    message,
    populate,
    smtp,
    unverified,
    url_of,
)

OWN = f"sessions@{DOMAIN}"


@dataclass(frozen=True)
class Pki:
    """A CA the server trusts for client certificates, two of its clients, and a stranger."""

    ca: Path
    client: tuple[Path, Path]  # certificate, key
    other_client: tuple[Path, Path]
    stranger: tuple[Path, Path]  # self-signed: no CA the server knows


def _key_and_cert(
    folder: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None
) -> tuple[Path, Path, x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, subject, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_file, _, ca_name, ca_key = _key_and_cert(folder, "igc-test-ca", None)
    client = _key_and_cert(folder, "dpi-client", (ca_name, ca_key))[:2]
    other = _key_and_cert(folder, "other-client", (ca_name, ca_key))[:2]
    stranger = _key_and_cert(folder, "stranger", None)[:2]
    return Pki(ca_file, client, other, stranger)


@pytest.fixture(scope="module")
def mail_server(database: Database, pki: Pki) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    env = {
        "SOCLE_SMTP_PORT": str(port),
        "SOCLE_MAIL_DOMAIN": DOMAIN,
        "SOCLE_REVOCATION_REFRESH_MS": "60000",  # the notification, not the reload, tells it
        "SOCLE_SMTP_CLIENT_CA_FILE": str(pki.ca),
    }
    with server_beside(database, "socle_mailsess", env) as server:
        populate(server)
        yield server, port


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _revoke(db: Database, token: str) -> None:
    """What the authorisation server does on /auth/revoke (RFC 7009): record and NOTIFY."""
    claims = _claims(token)

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url_of(db), autocommit=True) as conn:
            await revoke(conn, str(claims["jti"]), int(str(claims["exp"])))

    asyncio.run(run())


def _refused_soon(client: smtplib.SMTP, sender: str) -> smtplib.SMTPSenderRefused:
    """Send until the server refuses the sender (a notification takes milliseconds)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            client.send_message(message(sender, [PRO_B]))
        except smtplib.SMTPSenderRefused as refused:
            return refused
        assert time.monotonic() < deadline, "the session could still send"
        time.sleep(0.2)


def _bearer(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def test_a_revoked_token_ends_what_its_open_session_may_send(
    mail_server: tuple[ServerProcess, int],
) -> None:
    server, port = mail_server
    token = token_for(server, f"practitioner:{RPPS_A}")
    with smtp(port) as client:
        client.auth("XOAUTH2", lambda challenge=None: _bearer(PRO_A, token))
        client.send_message(message(PRO_A, [PRO_B]))  # sent while the token holds
        _revoke(server.database, token)
        refused = _refused_soon(client, PRO_A)
        assert refused.smtp_code == 530
        assert b"revoked" in refused.smtp_error
        # the session is no longer authenticated: it may not claim the mailbox any more
        code, _ = client.mail(PRO_A)
        assert code == 530
    # and the revoked token opens no new session
    with smtp(port) as client, pytest.raises(smtplib.SMTPAuthenticationError) as again:
        client.auth("XOAUTH2", lambda challenge=None: _bearer(PRO_A, token))
    assert again.value.smtp_code == 535


def test_a_changed_password_and_a_closed_mailbox_end_open_sessions(
    mail_server: tuple[ServerProcess, int],
) -> None:
    server, port = mail_server
    db = server.database
    password_file = db.data_dir / "mailbox-password.txt"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    added = run_socle(
        db, "mailbox", "add", OWN, "--kind", "PER", "--owner", "Practitioner/pro-a",
        "--identifier", RPPS_A, "--password-file", str(password_file),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = run_socle(db, "mailbox", "list", "--owner", "Practitioner/pro-a")
    assert OWN in listed.stdout and PRO_A in listed.stdout and "yes" in listed.stdout
    with smtp(port, login=OWN) as client:
        client.send_message(message(OWN, [PRO_B]))
        new_file = db.data_dir / "mailbox-new-password.txt"
        new_file.write_text("un autre mot de passe assez long\n", encoding="utf-8")
        changed = run_socle(db, "mailbox", "password", OWN, "--password-file", str(new_file))
        assert changed.returncode == 0, changed.stderr
        refused = _refused_soon(client, OWN)
        assert refused.smtp_code == 530 and b"password was changed" in refused.smtp_error
        # authenticating again with the new password: it sends again
        client.login(OWN, "un autre mot de passe assez long")
        client.send_message(message(OWN, [PRO_B]))
        closed = run_socle(db, "mailbox", "remove", OWN)
        assert closed.returncode == 0, closed.stderr
        refused = _refused_soon(client, OWN)
        assert b"no longer exists" in refused.smtp_error
    with smtp(port, login=PRO_A) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.send_message(message(PRO_A, [OWN]))
    missing = run_socle(db, "mailbox", "remove", OWN)
    assert missing.returncode == 2 and "No mailbox" in missing.stderr


# -- a second, independent client ------------------------------------------------------------


async def _client(port: int) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, tls_context=unverified(), timeout=30
    )
    await client.connect()
    await client.ehlo(hostname="second-client.test")
    await client.starttls(tls_context=unverified())
    await client.ehlo(hostname="second-client.test")
    return client


def test_a_second_client_sends_with_a_password_and_with_a_token(
    mail_server: tuple[ServerProcess, int],
) -> None:
    server, port = mail_server
    token = token_for(server, f"practitioner:{RPPS_A}")
    to_pro = message(PRO_A, [PRO_B], text="Compte rendu par un autre client.")
    to_pro.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf", filename="a.pdf")
    to_patient = message(PRO_A, [PATIENT], text="Vos résultats, par un autre client.")

    async def run() -> None:
        client = await _client(port)
        try:
            assert "auth" in client.esmtp_extensions
            await client.login(PRO_A, PASSWORD)  # AUTH PLAIN or LOGIN, the client's choice
            refused, _ = await client.send_message(to_pro)
            assert refused == {}
        finally:
            await client.quit()
        client = await _client(port)
        try:
            assert (await client.auth_xoauth2(PRO_A, token)).code == 235  # its own XOAUTH2
            refused, _ = await client.send_message(to_patient)
            assert refused == {}
        finally:
            await client.quit()

    asyncio.run(run())
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as http:
        inbox = Inbox(http)
        found = inbox.wait(to_pro["Message-ID"])
        assert [r.get("reference") for r in found["recipient"]] == ["Practitioner/pro-b"]
        assert len(found["payload"]) == 2  # the text and the PDF's DocumentReference
        assert inbox.wait(to_patient["Message-ID"])["subject"] == {"reference": "Patient/pat-1"}


def test_a_second_client_gets_the_same_refusals(mail_server: tuple[ServerProcess, int]) -> None:
    _, port = mail_server

    async def run() -> None:
        client = await _client(port)
        try:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
                await client.login(PRO_A, "not the password at all")
            assert wrong.value.code == 535
            # not authenticated: another domain is no relay, a local sender needs AUTH
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as local:
                await client.sendmail(PRO_A, [PRO_B], b"Subject: x\r\n\r\nx\r\n")
            assert local.value.code == 530
            await client.rset()
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as relay:
                await client.sendmail(
                    "someone@other.example", ["x@other.example"], b"Subject: x\r\n\r\nx\r\n"
                )
            assert [r.code for r in relay.value.recipients] == [554]
            await client.rset()
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as unknown:
                await client.sendmail(
                    "someone@other.example", [f"nobody@{DOMAIN}"], b"Subject: x\r\n\r\nx\r\n"
                )
            assert [r.code for r in unknown.value.recipients] == [550]
        finally:
            await client.quit()

    asyncio.run(run())


# -- mutual TLS ---------------------------------------------------------------------------------

CERT_BOX = f"dpi-cert@{DOMAIN}"


def _with_certificate(port: int, pair: tuple[Path, Path] | None) -> smtplib.SMTP:
    context = unverified()
    if pair is not None:
        context.load_cert_chain(*pair)
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo("app.test")
    client.starttls(context=context)
    client.ehlo("app.test")
    return client


def _external(client: smtplib.SMTP, authzid: str = "") -> None:
    client.auth("EXTERNAL", lambda challenge=None: authzid, initial_response_ok=True)


def test_a_client_certificate_authenticates_as_the_mailbox_pinned_to_it(
    mail_server: tuple[ServerProcess, int], pki: Pki
) -> None:
    server, port = mail_server
    db = server.database
    added = run_socle(
        db, "mailbox", "add", CERT_BOX, "--kind", "APP", "--owner", "Organization/hosp"
    )
    assert added.returncode == 0, added.stderr
    pinned = run_socle(db, "mailbox", "certificate", CERT_BOX, "--file", str(pki.client[0]))
    assert pinned.returncode == 0 and "pinned to" in pinned.stdout, pinned.stderr
    client = _with_certificate(port, pki.client)
    try:
        assert "EXTERNAL" in client.esmtp_features["auth"]
        _external(client)  # no authorisation identity: the certificate's one mailbox
        client.send_message(message(CERT_BOX, [PRO_B]))
        # unpinned: the open session sends nothing more
        unpinned = run_socle(db, "mailbox", "certificate", CERT_BOX, "--clear")
        assert unpinned.returncode == 0, unpinned.stderr
        refused = _refused_soon(client, CERT_BOX)
        assert refused.smtp_code == 530 and b"certificate" in refused.smtp_error
    finally:
        client.close()
    run_socle(db, "mailbox", "certificate", CERT_BOX, "--file", str(pki.client[0]))
    client = _with_certificate(port, pki.client)
    try:
        _external(client, CERT_BOX)  # naming it
        client.send_message(message(CERT_BOX, [PRO_B]))
    finally:
        client.close()


@pytest.mark.parametrize("who", ["none", "other", "wrong-authzid"])
def test_external_needs_the_pinned_certificate(
    mail_server: tuple[ServerProcess, int], pki: Pki, who: str
) -> None:
    _, port = mail_server
    pair = {"none": None, "other": pki.other_client, "wrong-authzid": pki.client}[who]
    client = _with_certificate(port, pair)
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            _external(client, PRO_A if who == "wrong-authzid" else "")
        assert refused.value.smtp_code == 535
    finally:
        client.close()


def test_a_certificate_of_no_trusted_ca_fails_the_handshake(
    mail_server: tuple[ServerProcess, int], pki: Pki
) -> None:
    _, port = mail_server
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        client = _with_certificate(port, pki.stranger)
        try:
            client.noop()  # TLS 1.3: the server's refusal arrives with the first read
        finally:
            client.close()

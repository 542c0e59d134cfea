"""The outbound relay against a real SMTP server (aiosmtpd), in clear and over verified
STARTTLS: what a relay accepts arrives whole; refusals say whether a retry can help."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from socle.config import RelaySettings, smtp_relay
from socle.mail.relay import NoRelay, RelayError, send, send_async
from socle.testing import free_port


class Inbox:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.endswith("@refused.test"):
            return "550 5.1.1 no such mailbox"
        if address.endswith("@busy.test"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append(envelope)
        return "250 stored"


def _relay(port: int, **changes) -> RelaySettings:
    values = dict(
        host="127.0.0.1",
        port=port,
        security="none",
        username=None,
        password=None,
        ca_file=None,
        timeout=5.0,
        sender="no-reply@socle.test",
    )
    values.update(changes)
    return RelaySettings(**values)


def _message(to: str = "dr.martin@hopital.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "notifications@socle.test"
    message["To"] = to
    message["Subject"] = "Nouvel évènement"
    message.set_content("Un évènement vous attend dans Socle.")
    return message


@pytest.fixture
def inbox():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def test_a_message_reaches_the_relay_whole(inbox):
    handler, port = inbox
    refused = send(_message(), settings=_relay(port))
    assert refused == {}
    [envelope] = handler.received
    assert envelope.mail_from == "notifications@socle.test"
    assert envelope.rcpt_tos == ["dr.martin@hopital.test"]
    received = message_from_bytes(envelope.original_content, policy=default)
    assert received["Subject"] == "Nouvel évènement"
    assert received.get_content().strip() == "Un évènement vous attend dans Socle."


def test_send_async_uses_the_same_path(inbox):
    handler, port = inbox
    asyncio.run(send_async(_message(), settings=_relay(port), recipients=["a@hopital.test"]))
    assert handler.received[0].rcpt_tos == ["a@hopital.test"]


def test_some_recipients_refused_are_reported_the_others_receive(inbox):
    handler, port = inbox
    message = _message("a@hopital.test, b@refused.test")
    refused = send(message, settings=_relay(port))
    assert list(refused) == ["b@refused.test"]
    assert handler.received[0].rcpt_tos == ["a@hopital.test"]


def test_refusals_say_whether_a_retry_can_help(inbox):
    _, port = inbox
    with pytest.raises(RelayError) as permanent:
        send(_message("x@refused.test"), settings=_relay(port))
    assert permanent.value.permanent and permanent.value.code == 550
    with pytest.raises(RelayError) as transient:
        send(_message("x@busy.test"), settings=_relay(port))
    assert not transient.value.permanent and transient.value.code == 451


def test_an_unreachable_relay_is_a_transient_error():
    with pytest.raises(RelayError) as error:
        send(_message(), settings=_relay(free_port(), timeout=2.0))
    assert not error.value.permanent


def test_no_relay_configured(monkeypatch):
    monkeypatch.delenv("SOCLE_SMTP_RELAY", raising=False)
    assert smtp_relay() is None
    with pytest.raises(NoRelay):
        send(_message())


def test_relay_settings_from_the_environment(monkeypatch, tmp_path):
    secret = tmp_path / "relay-password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SOCLE_SMTP_RELAY", "smtp.example.test:587")
    monkeypatch.setenv("SOCLE_SMTP_RELAY_USER", "socle")
    monkeypatch.setenv("SOCLE_SMTP_RELAY_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("SOCLE_MAIL_DOMAIN", "Region.Example")
    relay = smtp_relay()
    assert relay is not None
    assert (relay.host, relay.port, relay.security) == ("smtp.example.test", 587, "starttls")
    assert (relay.username, relay.password) == ("socle", "s3cret")
    assert relay.sender == "no-reply@region.example"
    monkeypatch.setenv("SOCLE_SMTP_RELAY_SECURITY", "plaintext")
    with pytest.raises(ValueError, match="SOCLE_SMTP_RELAY_SECURITY"):
        smtp_relay()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Authenticator:
    def __call__(self, server, session: Session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
        return AuthResult(success=ok)


class _TlsController(Controller):
    def __init__(self, handler, port, context):
        self._context = context
        super().__init__(handler, hostname="127.0.0.1", port=port)

    def factory(self):
        return SMTP(
            self.handler,
            require_starttls=True,
            tls_context=self._context,
            authenticator=_Authenticator(),
            auth_require_tls=True,
        )


def test_starttls_is_verified_and_login_works(tmp_path):
    cert_file, key_file = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    handler = Inbox()
    controller = _TlsController(handler, free_port(), server_context)
    controller.start()
    try:
        trusted = _relay(
            controller.port,
            security="starttls",
            ca_file=cert_file,
            username="socle",
            password="s3cret",
        )
        send(_message(), settings=trusted)
        assert len(handler.received) == 1
        # The same relay without its CA: the certificate is not trusted, nothing is sent.
        untrusted = _relay(
            controller.port, security="starttls", username="socle", password="s3cret"
        )
        with pytest.raises(RelayError) as error:
            send(_message(), settings=untrusted)
        assert error.value.permanent
        assert len(handler.received) == 1
    finally:
        controller.stop()

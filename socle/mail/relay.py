"""Outbound mail through the configured smarthost (``SOCLE_SMTP_RELAY``).

One way out for every service: the e-mail channel of subscriptions, secure messaging towards
other operators, notifications to personal addresses. Plain MIME built with the standard
``email`` package, sent with the standard ``smtplib`` (in a thread when called from async
code). TLS is verified against the system's or the configured CA; a relay without TLS must be
asked for by name (``none``), for a local test relay only.

Errors say whether trying again can help: a 5xx reply is permanent (the job fails at once), a
4xx reply or a network error is transient (the job system retries with back-off).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import getaddresses

from socle.config import RelaySettings, smtp_relay


class RelayError(Exception):
    """The relay refused the message or could not be reached."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class NoRelay(RelayError):
    """No relay is configured (``SOCLE_SMTP_RELAY`` unset)."""

    def __init__(self) -> None:
        super().__init__("no SMTP relay is configured (SOCLE_SMTP_RELAY)", permanent=True)


def envelope_recipients(message: EmailMessage) -> list[str]:
    """Every address in To, Cc and Bcc: the envelope of a message sent as built."""
    fields = [v for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return [addr for _, addr in getaddresses(fields) if addr]


def _tls_context(settings: RelaySettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _connect(settings: RelaySettings) -> smtplib.SMTP:
    if settings.security == "tls":
        return smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=_tls_context(settings)
        )
    client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    if settings.security == "starttls":
        client.starttls(context=_tls_context(settings))
    return client


def send(
    message: EmailMessage,
    *,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
    settings: RelaySettings | None = None,
) -> dict[str, tuple[int, bytes]]:
    """Send one message through the relay; return the recipients it refused (the others took
    it). The envelope sender defaults to the message's From, then ``SOCLE_MAIL_FROM``; the
    recipients to the message's To/Cc/Bcc (a Bcc header is never transmitted)."""
    settings = settings or smtp_relay()
    if settings is None:
        raise NoRelay()
    rcpt = list(recipients) if recipients is not None else envelope_recipients(message)
    if not rcpt:
        raise RelayError("the message has no recipient", permanent=True)
    from_addr = sender or (getaddresses([message["From"]])[0][1] if message["From"] else "")
    from_addr = from_addr or settings.sender
    try:
        with _connect(settings) as client:
            if settings.username:
                client.login(settings.username, settings.password or "")
            return client.send_message(message, from_addr=from_addr, to_addrs=rcpt)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise RelayError(
            f"the relay refused every recipient ({', '.join(map(str, codes))})",
            permanent=all(code >= 500 for code in codes),
            code=codes[0] if codes else None,
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise RelayError(
            f"the relay answered {exc.smtp_code}: {exc.smtp_error!r}",
            permanent=exc.smtp_code >= 500,
            code=exc.smtp_code,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        # Certificate failures are permanent until an operator acts; a retry would only repeat.
        permanent = isinstance(exc, ssl.SSLCertVerificationError)
        raise RelayError(f"the relay could not be reached: {exc}", permanent=permanent) from None


async def send_async(
    message: EmailMessage,
    *,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
    settings: RelaySettings | None = None,
) -> dict[str, tuple[int, bytes]]:
    """`send` from async code, off the event loop."""
    return await asyncio.to_thread(
        send, message, sender=sender, recipients=recipients, settings=settings
    )

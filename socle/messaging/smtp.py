"""Socle's SMTP server (aiosmtpd): submission and inbound delivery between Socle mailboxes.

- STARTTLS is required before anything but EHLO/NOOP/QUIT (MSSanté runs on TLS only), and AUTH
  is offered only once TLS is on: PLAIN/LOGIN with a mailbox's password, XOAUTH2/OAUTHBEARER
  with an access token of Socle's authorisation server (the same verification as the API's).
- MAIL FROM: an authenticated client sends from its own mailbox only; an unauthenticated one
  (another operator's server) may not claim one of ours.
- RCPT TO: an unknown local mailbox is `550 5.1.1`, a full one `552 5.2.2`; a foreign domain
  needs an authenticated sender (`554 5.7.1` otherwise): Socle is no open relay.
- DATA: larger than ``SOCLE_SMTP_MAX_BYTES`` is `552`; otherwise the message is stored with
  its delivery jobs in one transaction (`store.accept`) and only then `250`. A message goes to
  all its accepted recipients or, when storing fails, to none (`451`, the client retries).

One server per `socle serve`, in the parent process (a thread with its own event loop, its own
small connection pool), whatever the number of HTTP workers: see docs/messaging.md.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session
from psycopg_pool import AsyncConnectionPool

from ..auth.middleware import build_verifier
from ..auth.revocation import REVOKED, watch_revocations
from ..auth.server.passwords import burn_time, verify_password
from ..auth.tokens import InvalidToken, Principal, TokenVerifier
from ..config import Settings, SmtpServerSettings, smtp_server
from ..database import resolve_url
from ..listening import Notifications
from . import mailboxes
from .headers import is_patient_address
from .intake import message_id_of, parse_headers, thread_of
from .mailboxes import Mailbox, is_local
from .smtp_data import ChunkedData
from .store import Accepted, accept, replies_closed
from .tls import fingerprint, server_context

log = logging.getLogger("socle.messaging")

INVALID = AuthResult(success=False, handled=False)


@dataclass(frozen=True)
class Identity:
    """Who authenticated: the mailbox the session may send from, and with what, so that each
    new message checks it still holds (a revoked or expired token, a changed password, a
    removed mailbox or owner end what the session may do)."""

    address: str
    login: bytes  # aiosmtpd reports it as the session's login
    principal: Principal | None = None  # authenticated by an access token
    password_hash: str | None = None  # authenticated by the mailbox's password (this hash)
    certificate: str | None = None  # authenticated by this client certificate (SHA-256)


def _token_refused(principal: Principal) -> str | None:
    if REVOKED.refuses(principal.token_id, principal.grant_id):
        return "the access token was revoked"
    if principal.expires_at is not None and time.time() >= principal.expires_at:
        return "the access token has expired"
    return None


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (ValueError, UnicodeError):
        return None


def bearer_of(mechanism: str, decoded: bytes) -> tuple[str, str] | None:
    """(user, token) of a SASL XOAUTH2 (``user=…^Aauth=Bearer …^A^A``) or OAUTHBEARER
    (RFC 7628: ``n,a=…,^Aauth=Bearer …^A^A``) initial response."""
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    user, fields = "", text.split("\x01")
    if mechanism == "OAUTHBEARER":
        gs2 = fields[0].split(",")
        user = next((p[2:] for p in gs2 if p.startswith("a=")), "")
        fields = fields[1:]
    values = dict(f.split("=", 1) for f in fields if "=" in f)
    user = values.get("user", user)
    scheme, _, token = values.get("auth", "").partition(" ")
    if not user or scheme.lower() != "bearer" or not token:
        return None
    return user.strip().lower(), token.strip()


MAX_AUTH_LINE = 16_384  # an access token is longer than a command line's usual 512 bytes


def _peer_certificate(session: Session | None) -> bytes | None:
    """The DER of the certificate the client presented in the TLS handshake, if any (the
    handshake verified it: CERT_OPTIONAL refuses an untrusted one)."""
    extra = session.ssl if session is not None else None
    ssl_object = extra.get("ssl_object") if extra else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der or None


class SocleSMTP(ChunkedData):
    """aiosmtpd's SMTP session, with room for an access token on the AUTH line and DATA read
    in chunks (smtp_data.py)."""

    line_length_limit = MAX_AUTH_LINE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits: dict[str, int] = collections.defaultdict(lambda: SMTP.command_size_limit)
        limits["AUTH"] = MAX_AUTH_LINE
        self.command_size_limits = limits


class MailHandler:
    """The SMTP session's decisions (aiosmtpd handler hooks and AUTH mechanisms)."""

    def __init__(
        self, pool: AsyncConnectionPool, limits: SmtpServerSettings, verifier: TokenVerifier
    ) -> None:
        self.pool = pool
        self.limits = limits
        self.verifier = verifier

    async def _mailbox(self, address: str) -> Mailbox | None:
        async with self.pool.connection() as conn:
            return await mailboxes.find(conn, address)

    async def _initial(self, server: SMTP, args: list[str]) -> bytes | None:
        if len(args) > 1:
            return _b64(args[1])
        answer = await server.challenge_auth("")
        return None if answer is MISSING else answer  # type: ignore[return-value]

    async def _password(self, login: bytes, password: bytes) -> AuthResult:
        address = login.decode("utf-8", "replace").strip().lower()
        secret = password.decode("utf-8", "replace")
        mailbox = await self._mailbox(address)
        if mailbox is None or not mailbox.password_hash:
            await asyncio.to_thread(burn_time, secret)  # an unknown login costs the same
            return INVALID
        if not await asyncio.to_thread(verify_password, secret, mailbox.password_hash):
            return INVALID
        identity = Identity(mailbox.address, login, password_hash=mailbox.password_hash)
        return AuthResult(success=True, auth_data=identity)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        decoded = await self._initial(server, args)
        parts = decoded.split(b"\x00") if decoded is not None else []
        if len(parts) != 3:
            return INVALID
        return await self._password(parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        login = _b64(args[1]) if len(args) > 1 else None
        if login is None:
            answer = await server.challenge_auth(server.AuthLoginUsernameChallenge)
            login = None if answer is MISSING else answer  # type: ignore[assignment]
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if login is None or password is MISSING:
            return INVALID
        return await self._password(login, password)  # type: ignore[arg-type]

    async def _bearer(self, mechanism: str, server: SMTP, args: list[str]) -> AuthResult:
        decoded = await self._initial(server, args)
        found = bearer_of(mechanism, decoded) if decoded is not None else None
        if found is None:
            return INVALID
        address, token = found
        try:
            principal = await asyncio.to_thread(self.verifier.verify, token)
        except InvalidToken:
            return INVALID
        if _token_refused(principal) is not None:
            return INVALID
        mailbox = await self._mailbox(address)
        if mailbox is None or not mailbox.owned_by(
            principal.fhir_user, principal.national_id, principal.organization
        ):
            return INVALID
        identity = Identity(mailbox.address, address.encode(), principal=principal)
        return AuthResult(success=True, auth_data=identity)

    async def _no_longer(self, identity: Identity) -> str | None:
        """Why an authenticated session may no longer send (None: it still may)."""
        return self._no_longer_with(identity, await self._mailbox(identity.address))

    @staticmethod
    def _no_longer_with(identity: Identity, mailbox: Mailbox | None) -> str | None:
        """`_no_longer` with the session's mailbox as read now."""
        if mailbox is None:
            return "the mailbox no longer exists"
        principal = identity.principal
        if principal is not None:
            if not mailbox.owned_by(
                principal.fhir_user, principal.national_id, principal.organization
            ):
                return "the token's user no longer owns the mailbox"
            return _token_refused(principal)
        if identity.certificate is not None:
            if identity.certificate != mailbox.cert_sha256:
                return "the mailbox is no longer pinned to this certificate"
            return None
        if identity.password_hash != mailbox.password_hash:
            return "the mailbox's password was changed"
        return None

    async def _revalidated(
        self, session: Session, found: dict[str, Mailbox] | None = None
    ) -> str | None:
        """The SMTP reply refusing a session whose credentials no longer hold (and its
        authentication dropped: it may authenticate again), or None. `found`: the mailboxes
        just read, the session's among them when it still exists (DATA reads them at once)."""
        identity = session.auth_data if session.authenticated else None
        if not isinstance(identity, Identity):
            return None
        why = (
            await self._no_longer(identity)
            if found is None
            else self._no_longer_with(identity, found.get(identity.address))
        )
        if why is None:
            return None
        session.authenticated = False
        session.auth_data = None
        return f"530 5.7.0 Authentication no longer valid ({why}): authenticate again"

    async def auth_EXTERNAL(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL EXTERNAL (RFC 4422): the client certificate of the TLS handshake, verified
        against ``SOCLE_SMTP_CLIENT_CA_FILE``, as the mailbox pinned to it; the authorisation
        identity, when given, names which (a certificate may serve several)."""
        der = _peer_certificate(server.session)
        if der is None:
            return INVALID
        # "=" is an empty initial response (RFC 4954): the certificate's one mailbox
        decoded = b"" if args[1:] == ["="] else await self._initial(server, args)
        if decoded is None:
            return INVALID
        wanted = decoded.decode("utf-8", "replace").strip().lower()
        sha256 = fingerprint(der)
        async with self.pool.connection() as conn:
            pinned = await mailboxes.pinned_to(conn, sha256)
        chosen = [m for m in pinned if m.address == wanted] if wanted else pinned
        if len(chosen) != 1:
            return INVALID
        mailbox = chosen[0]
        identity = Identity(mailbox.address, mailbox.address.encode(), certificate=sha256)
        return AuthResult(success=True, auth_data=identity)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._bearer("XOAUTH2", server, args)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._bearer("OAUTHBEARER", server, args)

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        address = address.lower()
        refused = await self._revalidated(session)
        if refused is not None:
            return refused
        identity = session.auth_data if session.authenticated else None
        if isinstance(identity, Identity) and address != identity.address:
            return "553 5.7.1 Sender address does not belong to the authenticated mailbox"
        if identity is None and is_local(address, self.limits.domain):
            return "530 5.7.0 Authentication required to send from a local mailbox"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        address = address.lower()
        if not is_local(address, self.limits.domain):
            if not session.authenticated:
                return f"554 5.7.1 <{address}>: Relay access denied"
        else:
            mailbox = await self._mailbox(address)
            if mailbox is None:
                return f"550 5.1.1 <{address}>: No such mailbox here"
            if mailbox.full(self.limits.quota_bytes, 0):
                return f"552 5.2.2 <{address}>: Mailbox full"
        if address not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        local = [a for a in envelope.rcpt_tos if is_local(a, self.limits.domain)]
        try:
            message = parse_headers(raw)
            message_id = message_id_of(message, raw)
            async with self.pool.connection() as conn:
                # the sender's mailbox (its credentials revoked since MAIL FROM?) and the
                # recipients' (still there, room left) read now, in one query
                identity = session.auth_data if session.authenticated else None
                found = await mailboxes.find_many(
                    conn, [identity.address, *local] if isinstance(identity, Identity) else local
                )
                refused = await self._revalidated(session, found)
                if refused is not None:
                    return refused
                for address in local:
                    mailbox = found.get(address)
                    if mailbox is None or mailbox.full(self.limits.quota_bytes, len(raw)):
                        return f"552 5.2.2 <{address}>: Mailbox full; the message was not delivered"
                sender = envelope.mail_from or ""
                if is_patient_address(sender) and await replies_closed(conn, thread_of(message)):
                    return "550 5.7.1 Replies to this message are closed (X-MSS-MES: FIN)"
                row = await accept(
                    conn,
                    Accepted(
                        message_id,
                        envelope.mail_from or "",
                        local,
                        [a for a in envelope.rcpt_tos if a not in local],
                        identity.address if isinstance(identity, Identity) else None,
                    ),
                    raw,
                )
        except Exception:  # noqa: BLE001 - the client must retry, never see a crash
            log.exception("SMTP: the message could not be stored")
            return "451 4.3.0 The message could not be stored; try again later"
        return f"250 2.0.0 Ok: queued as {row}"


class SmtpServer:
    """The SMTP server in a thread of its own (its own event loop and connection pool)."""

    def __init__(self, host: str, settings: Settings, limits: SmtpServerSettings) -> None:
        self.host = host
        self.settings = settings
        self.limits = limits
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="socle-smtp", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError(f"the SMTP server did not start: {self._error}") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pool = AsyncConnectionPool(
            resolve_url(self.settings),
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            open=False,
            name="smtp",
        )
        try:
            await pool.open(wait=True, timeout=30)
            handler = MailHandler(pool, self.limits, build_verifier(self.settings))
            tls = server_context(self.limits, self.settings.data_dir)
            server = await self._loop.create_server(
                lambda: SocleSMTP(
                    handler,
                    hostname=self.limits.domain,
                    ident="Socle ESMTP",
                    data_size_limit=self.limits.max_bytes,
                    tls_context=tls,
                    require_starttls=True,
                    auth_require_tls=True,
                    timeout=300,
                ),
                self.host,
                self.limits.port,
            )
        except Exception as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            await pool.close()
            return
        log.info(
            "SMTP server on %s:%s (domain %s)", self.host, self.limits.port, self.limits.domain
        )
        # this process's revoked tokens, as the HTTP workers keep theirs: sessions
        # authenticated by a token end when it is revoked
        # (this thread has its own event loop, so its own LISTEN connection)
        notifications = Notifications(resolve_url(self.settings))
        every = self.settings.revocation_refresh_ms / 1000
        watcher = asyncio.gather(notifications.run(), watch_revocations(notifications, pool, every))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            server.close()
            await server.wait_closed()
            await pool.close()


@contextlib.contextmanager
def listening(host: str, settings: Settings) -> Iterator[None]:
    """`Service.listeners`: the SMTP server for the life of `socle serve` (none when
    ``SOCLE_SMTP_PORT`` is 0)."""
    limits = smtp_server()
    if limits.port == 0:
        yield
        return
    server = SmtpServer(host, settings, limits)
    server.start()
    try:
        yield
    finally:
        server.stop()

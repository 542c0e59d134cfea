"""Trusted hosts and bounded work per request (docs/security.md, "Bounded work and trusted
hosts").

:class:`TrustedHosts` refuses a request addressed to a host that is not one of the server's
names and makes the rest of the application see the public URL (``SOCLE_PUBLIC_URL``) as the
request's scheme and host, so no absolute URL (links, ``fullUrl``, ``Location``, redirects)
ever comes from a client's ``Host`` header.

:class:`RequestLimits` opens the request's :class:`~socle.fhir.budget.Budget` (entries, bytes,
search time, deadline; charged by the engine), cancels the work when the client disconnects,
and answers 422 if the request is still working at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .fhir.budget import BUDGET, Budget
from .fhir.json import encode
from .fhir.outcome import FhirError
from .fhir.rest.http import scope_header

log = logging.getLogger("socle")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Paths without links whose callers (load balancers, probes) address the machine itself.
PROBES = frozenset({"/healthz", "/readyz"})
# After the deadline, the engine's own timeouts answer first (a batch says which entries were
# not done); this grace is for assembling that answer.
DEADLINE_GRACE_S = 2.0


async def _send_outcome(send: Send, err: FhirError) -> None:
    body = encode(err.outcome())
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/fhir+json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _hostname(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(settings: Settings) -> frozenset[str]:
    public = (urlsplit(settings.public_url).hostname or "").lower()
    hosts = {public, *settings.allowed_hosts}
    if public in LOOPBACK:  # `socle serve` on 127.0.0.1: localhost is the same machine
        hosts |= LOOPBACK
    return frozenset(hosts)


class TrustedHosts:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = allowed_hosts(settings)
        public = urlsplit(settings.public_url)
        self.scheme = public.scheme
        self.netloc = public.netloc.encode("latin-1")
        port = public.port or (443 if public.scheme == "https" else 80)
        self.server = (public.hostname or "", port)
        self.public_url = settings.public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        host = scope_header(scope, b"host")
        if host is not None and _hostname(host) not in self.allowed:
            await _send_outcome(
                send,
                FhirError.of(
                    400,
                    "invalid",
                    f"Unknown host '{host[:100]}': this server answers at {self.public_url}",
                ),
            )
            return
        # Everything downstream that builds an absolute URL from the request sees the public URL.
        headers = [(n, v) for n, v in scope["headers"] if n != b"host"]
        headers.append((b"host", self.netloc))
        scope = {**scope, "scheme": self.scheme, "server": self.server, "headers": headers}
        await self.app(scope, receive, send)


class RequestLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def budget(self) -> Budget:
        s = self.settings
        return Budget(
            max_entries=s.max_response_entries,
            max_bytes=s.max_response_bytes,
            search_ms=s.search_timeout_ms,
            request_ms=s.request_timeout_ms,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        budget = self.budget()
        token = BUDGET.set(budget)
        main = asyncio.current_task()
        assert main is not None
        state: dict[str, Any] = {"started": False, "finished": False, "left": False}
        queue: asyncio.Queue[Message] = asyncio.Queue()
        taken = asyncio.Event()
        deadline: asyncio.Timeout | None = None

        async def pump() -> None:
            """Read the client's messages ahead of the application (one body chunk at most,
            so the body limit still holds) to see a disconnect while the work goes on."""
            while True:
                message = await receive()
                queue.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if not state["finished"]:
                        state["left"] = True
                        main.cancel()
                    return
                if message.get("more_body"):
                    taken.clear()
                    await taken.wait()

        async def app_receive() -> Message:
            message = await queue.get()
            taken.set()
            return message

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if deadline is not None:
                    deadline.reschedule(None)  # streaming a document to a slow client is fine
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state["finished"] = True
            await send(message)

        reader = asyncio.create_task(pump())
        try:
            async with asyncio.timeout(budget.request_ms / 1000 + DEADLINE_GRACE_S) as deadline:
                await self.app(scope, app_receive, app_send)
        except TimeoutError:
            if not deadline or not deadline.expired():
                raise
            log.warning("request over its %d ms limit: cancelled", budget.request_ms)
            if not state["started"]:
                await _send_outcome(
                    send,
                    FhirError.of(
                        422,
                        "too-costly",
                        f"The request took longer than its limit of {budget.request_ms} ms",
                    ),
                )
        except asyncio.CancelledError:
            if not state["left"]:
                raise  # shutting down: let it through
            main.uncancel()
            log.info("client left: its request was cancelled")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            BUDGET.reset(token)

"""How a notification leaves: rest-hook (an HTTPS POST with the subscription's headers, the
certificate verified against the system's CAs) and email (through the platform's relay, a short
French text and at most the ids).

Rest-hooks go through aiohttp, not httpx: one POST per notification is the hot path of
deliveries, and httpx (with httpcore, anyio) spent about as much CPU per POST as the rest of a
delivery (docs/performance.md, "Subscriptions"). One session per event loop keeps its
connections alive between notifications to the same endpoint."""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

from ..fhir.json import encode
from ..mail.relay import RelayError, send_async
from .endpoints import refusal_cached
from .model import Spec

FHIR_JSON = "application/fhir+json"


class DeliveryError(Exception):
    """The endpoint did not take the notification; `permanent`: retrying will not help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# a session belongs to the loop it was made in: the process's, or a test's
_sessions: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}


def _session() -> aiohttp.ClientSession:
    """This loop's session: its TLS context (the system's CAs, certificates and host names
    verified) and connections are reused across deliveries. No cookie jar: endpoints of
    different subscribers may share a host, and one's cookies must not go to another."""
    loop = asyncio.get_running_loop()
    kept = _sessions.get(id(loop))
    if kept is not None and kept[0] is loop and not kept[1].closed:
        return kept[1]
    # imported on the first rest-hook: ~0.1 s of every process start (its connector module
    # builds TLS contexts) that most processes never need
    import aiohttp

    tls = ssl.create_default_context()  # the system's trust store, not a bundled one
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls, limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    _sessions[id(loop)] = (loop, session)
    return session


@functools.lru_cache(maxsize=1024)
def _proxy(scheme: str, host: str) -> str | None:
    """The environment's proxy for this host (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), as httpx
    honoured them; read once per host, not at each POST (aiohttp's `trust_env` reads them, and
    `~/.netrc`, in a thread for every request)."""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def _proxy_for(endpoint: str) -> str | None:
    parts = urlsplit(endpoint)
    return _proxy(parts.scheme, parts.hostname or "")


async def close_sessions(runtime: Any = None) -> None:
    """A process task: waits for the process's end, then closes this loop's session (its
    kept-alive connections)."""
    try:
        await asyncio.Event().wait()
    finally:
        kept = _sessions.pop(id(asyncio.get_running_loop()), None)
        if kept is not None:
            await kept[1].close()


async def rest_hook(spec: Spec, bundle: dict[str, Any]) -> None:
    refused = await refusal_cached(spec.endpoint)  # the SSRF guard, again at each delivery
    if refused:
        raise DeliveryError(refused, permanent=True)
    headers = {"Content-Type": FHIR_JSON, **dict(spec.headers)}
    import aiohttp  # loaded by `_session` on the first rest-hook

    try:
        # the answer's body is not read: a connection whose answer was all there (an empty
        # 200) is kept, another is closed on the way out
        async with _session().post(
            spec.endpoint,
            data=encode(bundle),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=spec.timeout),
            allow_redirects=False,
            proxy=_proxy_for(spec.endpoint),
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DeliveryError(f"the endpoint could not be reached: {type(exc).__name__}") from None
    if status >= 300:
        raise DeliveryError(f"the endpoint answered {status}")


def _mail_text(spec: Spec, base: str, kind: str, references: list[str]) -> str:
    link = f"{base}/Subscription/{spec.id}/$events"
    if kind == "handshake":
        return (
            "Bonjour,\n\nVotre abonnement aux notifications de Socle est actif. Vous recevrez un "
            f"message à chaque évènement.\n\nAbonnement : {base}/Subscription/{spec.id}\n"
        )
    if kind == "heartbeat":
        return f"Bonjour,\n\nAucun nouvel évènement pour votre abonnement.\n\nAbonnement : {link}\n"
    lines = "\n".join(f"- {ref}" for ref in references) or "- (détails réservés)"
    return (
        "Bonjour,\n\nDe nouveaux évènements concernent votre abonnement. Connectez-vous pour "
        f"les consulter :\n{lines}\n\nListe des évènements : {link}\n"
    )


async def email(spec: Spec, base: str, kind: str, references: list[str]) -> None:
    """A French text with a link, and the ids when the subscription is id-only: no health data."""
    message = EmailMessage()
    message["To"] = spec.endpoint.removeprefix("mailto:")
    message["Subject"] = "Socle : notification de votre abonnement"
    message.set_content(
        _mail_text(spec, base, kind, references if spec.content == "id-only" else [])
    )
    try:
        await send_async(message)
    except RelayError as exc:
        raise DeliveryError(str(exc), permanent=exc.permanent) from None

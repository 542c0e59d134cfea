"""How a notification leaves: rest-hook (an HTTPS POST with the subscription's headers, the
certificate verified against the system's CAs) and email (through the platform's relay, a short
French text and at most the ids)."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from typing import Any

import httpx

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


_clients: list[httpx.AsyncClient] = []


def _client() -> httpx.AsyncClient:
    """One client per process: its TLS context (the system's CAs, certificates and host names
    verified) and connections are reused across deliveries. Redirects are not followed."""
    if not _clients:
        tls = ssl.create_default_context()  # the system's trust store, not a bundled one
        _clients.append(httpx.AsyncClient(verify=tls, follow_redirects=False))
    return _clients[0]


async def rest_hook(spec: Spec, bundle: dict[str, Any]) -> None:
    refused = await refusal_cached(spec.endpoint)  # the SSRF guard, again at each delivery
    if refused:
        raise DeliveryError(refused, permanent=True)
    headers = {"Content-Type": FHIR_JSON, **dict(spec.headers)}
    try:
        response = await _client().post(
            spec.endpoint, content=encode(bundle), headers=headers, timeout=spec.timeout
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"the endpoint could not be reached: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise DeliveryError(f"the endpoint answered {response.status_code}")


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

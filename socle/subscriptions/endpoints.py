"""The SSRF guard of rest-hook endpoints: a subscription must not make the server post to
addresses it alone can reach (its loopback, the private network behind it, a cloud's link-local
metadata service). An endpoint whose host is, or resolves to, an address that is not public
(loopback, private, link-local, shared, reserved, multicast, unspecified) is refused unless
`SOCLE_SUBSCRIPTION_ALLOWED_HOSTS` lists its host name, one of its addresses or a network
holding it.

Checked when the subscription is written (a 422 at `Subscription.channel.endpoint`), and again
before each notification (a name may resolve elsewhere since; then the delivery fails
permanently and the subscription is in error). A host that does not resolve at creation is
taken: its handshake will fail."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit

from ..config import subscription_allowed_hosts

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT_S = 5.0
CACHE_S = 60.0  # a verdict on a host is kept this long for deliveries
_verdicts: dict[tuple[str, str], tuple[float, str | None]] = {}


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _allowed(host: str, address: Address | None, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry == host:
            return True
        if address is None:
            continue
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name
    return False


async def _addresses(host: str, port: int) -> list[Address] | None:
    """The host's addresses (itself if it is one); None when it does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        return None
    out: list[Address] = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        except ValueError:
            continue
    return out


async def refusal(endpoint: str) -> str | None:
    """Why posting to this endpoint is refused, or None when it may be reached."""
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "The endpoint is not a valid URL"
    if not host:
        return "The endpoint has no host"
    allowed = subscription_allowed_hosts()
    if host in allowed:
        return None
    addresses = await _addresses(host, port)
    for address in addresses or []:
        if not _public(address) and not _allowed(host, address, allowed):
            return (
                f"The endpoint's host {host} is not a public address ({address}); an operator "
                "may allow it with SOCLE_SUBSCRIPTION_ALLOWED_HOSTS"
            )
    return None


async def refusal_cached(endpoint: str) -> str | None:
    """`refusal`, its verdict kept `CACHE_S` per host and allowed list (for each delivery)."""
    try:
        parts = urlsplit(endpoint)
        key = (f"{parts.hostname}:{parts.port}", ",".join(subscription_allowed_hosts()))
    except ValueError:
        return await refusal(endpoint)
    now = time.monotonic()
    kept = _verdicts.get(key)
    if kept is not None and kept[0] > now:
        return kept[1]
    verdict = await refusal(endpoint)
    _verdicts[key] = (now + CACHE_S, verdict)
    return verdict

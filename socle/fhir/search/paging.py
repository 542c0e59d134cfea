"""Paging tokens: the server's own cursors, signed so that a forged or altered one is refused.

A token is ``base64url(JSON state) "." base64url(HMAC-SHA256)`` under a per-installation key
(the server derives it from its secrets in the data dir, shared by every worker; an engine used
as a library gets a key of its own). The state names its kind (search, sorted search, history,
$everything) and, for a sorted search, the sort it was made for: a token replayed on another
kind of paging, or another sort, is refused too. Only what the server wrote is ever parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from ..outcome import bad_request

_MAC_BYTES = 16


class PageTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a paging-token key needs 16 bytes at least")
        self._key = key

    @classmethod
    def ephemeral(cls) -> PageTokens:
        """A key of this process only (library use, tests): tokens die with the process."""
        return cls(secrets.token_bytes(32))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, kind: str, state: dict[str, Any]) -> str:
        payload = _b64(json.dumps({"_": kind, **state}, separators=(",", ":")).encode())
        return payload + "." + _b64(self._mac(payload.encode()))

    def decode(self, token: str, kind: str) -> dict[str, Any]:
        """The state of a token this server issued for ``kind``; 400 for anything else."""
        payload, _, mac = token.partition(".")
        try:
            given = _unb64(mac)
            if not hmac.compare_digest(given, self._mac(payload.encode("ascii"))):
                raise ValueError
            state = json.loads(_unb64(payload))
        except (ValueError, UnicodeEncodeError):
            raise bad_request(
                "The paging token is not valid: restart the search", "_page_token"
            ) from None
        if not isinstance(state, dict) or state.pop("_", None) != kind:
            raise bad_request("The paging token does not match this search", "_page_token")
        return state


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None

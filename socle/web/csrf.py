"""Form tokens against cross-site request forgery.

A token is signed with a server key, bound to the form's purpose and to a value the attacker
cannot choose (e.g. the pending request of the cookie), and expires: a forged cross-site POST
has no valid token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

FORM_TTL = 15 * 60


def _mac(key: bytes, purpose: str, binding: str, issued: int) -> str:
    msg = f"{purpose}\n{binding}\n{issued}".encode()
    return base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def form_token(key: bytes, purpose: str, binding: str) -> str:
    issued = int(time.time())
    return f"{issued}.{_mac(key, purpose, binding, issued)}"


def check_form_token(key: bytes, purpose: str, binding: str, token: str | None) -> bool:
    if not token or "." not in token:
        return False
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    if not 0 <= time.time() - issued <= FORM_TTL:
        return False
    return hmac.compare_digest(mac, _mac(key, purpose, binding, issued))

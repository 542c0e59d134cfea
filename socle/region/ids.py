"""Deterministic ids and check digits."""

from __future__ import annotations

import uuid

from .codes import unverified

NAMESPACE = uuid.UUID("6f1c5b0e-3d2a-5c8e-9a41-2b7d0c9e8f10")


def rid(seed: int, kind: str, index: int | str) -> str:
    """The id of the `index`-th resource of `kind` in the region of `seed` (uuid5)."""
    return str(uuid.uuid5(NAMESPACE, f"{seed}:{kind}:{index}"))


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to `digits`."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    return number[:-1].isdigit() and luhn_digit(number[:-1]) == number[-1]


def _finess_digits(value: str) -> str:
    letters = unverified()["finess_letter_digits"]
    return "".join(letters.get(ch, ch) for ch in value.upper())


def finess(dept: str, serial: int) -> str:
    """A FINESS-shaped number: 2-char department (2A/2B) + 6 digits + check digit (Luhn)."""
    body = f"{dept}{serial % 1_000_000:06d}"
    if not unverified()["finess_check_luhn"]:
        return body + "0"
    return body + luhn_digit(_finess_digits(body))


def finess_ok(value: str) -> bool:
    return len(value) == 9 and luhn_ok(_finess_digits(value))


def rpps(serial: int) -> str:
    """An RPPS-shaped number: 11 digits, starting with 1 (real ones do), Luhn check digit."""
    body = f"1{serial % 10**9:09d}"
    return body + (luhn_digit(body) if unverified()["rpps_check_luhn"] else "0")


def siret(serial: int) -> str:
    body = f"9{serial % 10**12:012d}"
    return body + luhn_digit(body)


def oid_of(seed: int, kind: str, index: int | str) -> str:
    """A stable OID under the UUID arc 2.25 (ITU-T X.667) for local identifier systems."""
    return "2.25." + str(uuid.uuid5(NAMESPACE, f"{seed}:{kind}:{index}").int)

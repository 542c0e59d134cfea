"""NIR / NIA: structure and control key (fr-identity §1.2).

15 characters = 13 + a 2-digit key:

    sex(1) | year(2) | month(2) | place(5: department 2 + commune 3) | order(3) | key(2)

* key = 97 - (int(first13) mod 97), zero-padded. For Corsica the department `2A` / `2B`
  (positions 6-7, i.e. ``nir[5:7]``) is replaced by `19` / `18` for the computation only — a
  positional replacement, never a replace over the whole string.
* Born abroad: place = `99` + INSEE country code; overseas departments (97x/98x) use 3 characters
  for the department and 2 for the commune: both are plain digits and need no special handling.
* Real NIRs have months outside 01-12 (20-42 and 50-99 for incomplete civil records), so the
  checks accept them; NIA (sex digit 7/8, same key) is accepted too (UNVERIFIED in the reference).
"""

from __future__ import annotations

import datetime as dt

_CORSICA = {"2A": "19", "2B": "18"}
_DIGITS = frozenset("0123456789")
# 1/2: NIR; 3/4: other civil-status cases; 7/8: NIA (UNVERIFIED). Not over-constrained.
_SEX_DIGITS = {"1": "male", "2": "female", "3": "male", "4": "female", "7": "male", "8": "female"}


def _numeric(first13: str) -> int:
    """The 13 characters as a number, Corsica positions translated; ValueError if not possible."""
    if len(first13) != 13:
        raise ValueError(f"a NIR body has 13 characters, not {len(first13)}")
    dept = first13[5:7]
    if dept in _CORSICA:
        first13 = first13[:5] + _CORSICA[dept] + first13[7:]
    if not set(first13) <= _DIGITS:
        raise ValueError("a NIR body has only digits, apart from 2A/2B at positions 6-7")
    return int(first13)


def nir_key(first13: str) -> str:
    """The 2-digit control key of the 13 first characters (Corsica 2A/2B allowed at 6-7)."""
    return f"{97 - _numeric(first13.upper()) % 97:02d}"


def is_valid_nir(nir: str) -> bool:
    """True when `nir` has 15 characters of the right kinds and its key matches."""
    if not isinstance(nir, str) or len(nir) != 15:
        return False
    body, key = nir[:13].upper(), nir[13:]
    if not set(key) <= _DIGITS:
        return False
    try:
        return nir_key(body) == key
    except ValueError:
        return False


def _charset_errors(body: str, key: str) -> list[str]:
    """Characters a NIR never holds: digits only, apart from 2A/2B at positions 6-7."""
    errors: list[str] = []
    outside = body[:5] + (body[5:7] if body[5:7] not in _CORSICA else "00") + body[7:]
    if not set(outside) <= _DIGITS:
        errors.append(
            "charset: only digits are allowed, except 2A or 2B (Corsica) at positions 6-7"
        )
    if not set(key) <= _DIGITS:
        errors.append("key: the last 2 characters (the key) must be digits")
    return errors


def _key_errors(body: str, key: str) -> list[str]:
    expected = nir_key(body)
    if expected != key:
        return [f"key: the key is {key} but 97 - (number mod 97) gives {expected}"]
    return []


def nir_structure_errors(nir: object) -> list[str]:
    """What makes `nir` no NIR/NIA at all: its length, its characters, its key.

    Nothing more on purpose (fr-identity §1.2): real matricules have unusual months, sex digits
    and places, which `check_nir` reports as plausibility. Spaces are not allowed here: this
    is the stored value of an identifier, not something typed at a desk.
    """
    if not isinstance(nir, str):
        return ["length: a NIR is a string of 15 characters"]
    if len(nir) != 15:
        return [f"length: a NIR has 15 characters (13 + a 2-digit key), got {len(nir)}"]
    body, key = nir[:13].upper(), nir[13:]
    return _charset_errors(body, key) or _key_errors(body, key)


def _month_ok(month: str) -> bool:
    m = int(month)
    return 1 <= m <= 12 or 20 <= m <= 42 or 50 <= m <= 99


def check_nir(
    nir: str, *, sex: str | None = None, birth_date: dt.date | str | None = None
) -> list[str]:
    """Every rule `nir` breaks, as English messages; an empty list means no problem found.

    `sex` is the FHIR gender (`male`/`female`); `birth_date` a date or an ISO `YYYY-MM-DD` string.
    Only what real NIRs never allow is reported: special month codes, NIA sex digits, born-abroad
    and overseas places are accepted.
    """
    errors: list[str] = []
    if not isinstance(nir, str):
        return ["length: a NIR is a string of 15 characters"]
    raw = nir.replace(" ", "")
    if len(raw) != 15:
        return [f"length: a NIR has 15 characters (13 + a 2-digit key), got {len(raw)}"]
    raw = raw.upper()
    body, key = raw[:13], raw[13:]
    place = body[5:10]
    errors.extend(_charset_errors(body, key))
    charset_ok = not errors
    sex_digit = body[0]
    if sex_digit.isdigit() and sex_digit not in _SEX_DIGITS:
        errors.append(
            f"sex: the first digit must be 1 or 2 (3/4, or 7/8 for a NIA), got {sex_digit}"
        )
    elif sex in ("male", "female") and sex_digit in _SEX_DIGITS and _SEX_DIGITS[sex_digit] != sex:
        errors.append(f"sex: the first digit {sex_digit} does not match the sex {sex}")
    month = body[3:5]
    if month.isdigit() and not _month_ok(month):
        errors.append(
            f"month: {month} is neither a calendar month (01-12) nor a special code (20-42, 50-99)"
        )
    if birth_date is not None and body[1:5].isdigit():
        born = dt.date.fromisoformat(birth_date) if isinstance(birth_date, str) else birth_date
        if body[1:3] != f"{born.year % 100:02d}":
            errors.append(
                f"birth year: positions 2-3 ({body[1:3]}) do not match the birth year {born.year}"
            )
        if 1 <= int(month) <= 12 and int(month) != born.month:
            errors.append(
                f"birth month: positions 4-5 ({month}) do not match the birth month "
                f"{born.month:02d}"
            )
    if place[:2] == "99" and not place[2:].isdigit():
        errors.append("place: born abroad (99) must be followed by a 3-digit country code")
    if charset_ok:
        errors.extend(_key_errors(body, key))
    return errors

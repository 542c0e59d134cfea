"""Hand translations of the simple FHIRPath invariants of the R4 definitions.

The compiler attaches an entry of `INVARIANTS` to an element only where the definitions declare a
constraint with that key, and the message quotes the definitions' own `human` text; nothing here
decides *where* an invariant applies. Keys are not globally unique: a key the definitions use with
two different expressions must be qualified by its element path (`Parameters.parameter:inv-1`),
otherwise it is not attached. Each function takes the JSON object the constraint sits on and
returns True when the invariant holds. They are the fast path for the constraints typical
resources meet (fhirpathpy, which runs every other one, costs 50-150 µs an evaluation);
tests/fhir/validation/test_validation_invariants.py checks each against fhirpathpy on generated
inputs.

`dom-2..dom-5`, `ref-1`, `ele-1` and `ext-1` are enforced by the walker itself and `bdl-*` by
`bundles` (they need the surrounding resource); `txt-1`/`txt-2` by the narrative checker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .bundles import BUNDLE_KEYS

Obj = dict[str, Any]


def _has(o: Obj, name: str) -> bool:
    """FHIRPath `name.exists()` for a JSON property (a primitive may exist by its `_name` only)."""
    return name in o or ("_" + name) in o


def _has_value(o: Obj, name: str) -> bool:
    return o.get(name) is not None


# --- date ranges ----------------------------------------------------------------------------


def _bounds(text: Any) -> tuple[datetime, datetime] | None:
    """The earliest and latest UTC instants a (partial) date/dateTime can denote."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        if len(text) == 4:
            y = int(text)
            return datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
        if len(text) == 7:
            y, m = int(text[:4]), int(text[5:7])
            nxt = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
            return datetime(y, m, 1, tzinfo=UTC), nxt
        if len(text) == 10:
            d = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return d, d + timedelta(days=1)
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        return d, d
    except (ValueError, OverflowError):
        return None


def per_1(o: Obj) -> bool:
    start, end = _bounds(o.get("start")), _bounds(o.get("end"))
    if start is None or end is None:
        return True
    return start[0] < end[1] or start[0] == end[0]


# --- quantities -----------------------------------------------------------------------------


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        return None
    try:
        d = Decimal(v)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def qty_3(o: Obj) -> bool:
    return not _has(o, "code") or _has(o, "system")


_UCUM = "http://unitsofmeasure.org"


def _equals_if_present(o: Obj, name: str, expected: str) -> bool | None:
    """FHIRPath `name = 'expected'` on a primitive: empty (None) when it has no value."""
    v = o.get(name)
    return None if v is None else v == expected


def _coded_quantity(o: Obj, system: str) -> bool:
    """`(code.exists() or value.empty()) and (system.empty() or system = <system>)` (dis-1,
    mqty-1 and the start of age-1, cnt-3); fails only on a definite false."""
    if not _has(o, "code") and _has(o, "value"):
        return False
    return not _has(o, "system") or _equals_if_present(o, "system", system) is not False


def age_1(o: Obj) -> bool:
    if not _coded_quantity(o, _UCUM):
        return False
    v = _num(o.get("value"))
    return v is None or v > 0


def cnt_3(o: Obj) -> bool:
    if not _coded_quantity(o, _UCUM):
        return False
    if _has(o, "code") and _equals_if_present(o, "code", "1") is False:
        return False
    v = o.get("value")
    return _num(v) is None or "." not in str(v)


def drt_1(o: Obj) -> bool:
    """`code.exists() implies ((system = %ucum) and value.exists())`."""
    if not _has(o, "code"):
        return True
    return _has(o, "value") and _equals_if_present(o, "system", _UCUM) is not False


def rng_2(o: Obj) -> bool:
    low, high = o.get("low"), o.get("high")
    if not isinstance(low, dict) or not isinstance(high, dict):
        return True
    lv, hv = _num(low.get("value")), _num(high.get("value"))
    if lv is None or hv is None:
        return True
    lu = (low.get("system"), low.get("code"), low.get("unit"))
    hu = (high.get("system"), high.get("code"), high.get("unit"))
    if lu != hu:
        return True  # not comparable without unit conversion
    return lv <= hv


def rat_1(o: Obj) -> bool:
    num, den = _has(o, "numerator"), _has(o, "denominator")
    return (num == den) and (num or _has(o, "extension"))


def _coding_has(cc: Any, system: str, codes: tuple[str, ...]) -> bool:
    if not isinstance(cc, dict):
        return False
    for c in cc.get("coding") or ():
        if isinstance(c, dict) and c.get("system") == system and c.get("code") in codes:
            return True
    return False


# --- resources ------------------------------------------------------------------------------

_CONDITION_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CONDITION_CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def con_4(o: Obj) -> bool:
    if not any(k.startswith("abatement") for k in o):
        return True
    return _coding_has(
        o.get("clinicalStatus"), _CONDITION_CLIN, ("inactive", "resolved", "remission")
    )


def con_5(o: Obj) -> bool:
    entered = _coding_has(o.get("verificationStatus"), _CONDITION_VER, ("entered-in-error",))
    return not entered or "clinicalStatus" not in o


def ait_1(o: Obj) -> bool:
    entered = _coding_has(o.get("verificationStatus"), _ALLERGY_VER, ("entered-in-error",))
    return entered or "clinicalStatus" in o


def ait_2(o: Obj) -> bool:
    entered = _coding_has(o.get("verificationStatus"), _ALLERGY_VER, ("entered-in-error",))
    return not entered or "clinicalStatus" not in o


def obs_6(o: Obj) -> bool:
    return "dataAbsentReason" not in o or not any(k.startswith("value") for k in o)


def _codings(cc: Any) -> set[tuple[Any, Any]]:
    if not isinstance(cc, dict):
        return set()
    return {
        (c.get("system"), c["code"])
        for c in cc.get("coding") or ()
        if isinstance(c, dict)
        and isinstance(c.get("code"), str)
        and isinstance(c.get("system"), str)
    }


def obs_7(o: Obj) -> bool:
    if not any(k.startswith("value") for k in o):
        return True
    own = _codings(o.get("code"))
    if not own:
        return True
    for comp in o.get("component") or ():
        if isinstance(comp, dict) and own & _codings(comp.get("code")):
            return False
    return True


def inv_1(o: Obj) -> bool:
    part = "part" in o
    value = any(k.startswith("value") or k.startswith("_value") for k in o)
    resource = "resource" in o
    if part:
        return not value and not resource
    return value != resource


def org_2(o: Obj) -> bool:
    return o.get("use") != "home"


def tim_9(o: Obj) -> bool:
    if "offset" not in o:
        return True
    when = o.get("when")
    return (
        isinstance(when, list)
        and bool(when)
        and not any(w in ("C", "CM", "CD", "CV") for w in when)
    )


def _non_negative(name: str) -> Callable[[Obj], bool]:
    def check(o: Obj) -> bool:
        n = _num(o.get(name))
        return n is None or n >= 0

    return check


def _implies(a: str, b: str) -> Callable[[Obj], bool]:
    """`a.empty() or b.exists()`."""

    def check(o: Obj) -> bool:
        return not _has(o, a) or _has(o, b)

    return check


def _any_of(*names: str) -> Callable[[Obj], bool]:
    def check(o: Obj) -> bool:
        return any(_has(o, n) for n in names)

    return check


def _not_both(a: str, b: str) -> Callable[[Obj], bool]:
    def check(o: Obj) -> bool:
        return not (_has(o, a) and _has(o, b))

    return check


INVARIANTS: dict[str, Callable[[Obj], bool]] = {
    "per-1": per_1,
    "qty-3": qty_3,
    "rng-2": rng_2,
    "rat-1": rat_1,
    "att-1": _implies("data", "contentType"),
    "cpt-2": _implies("value", "system"),
    "obs-3": _any_of("low", "high", "text"),
    "obs-6": obs_6,
    "obs-7": obs_7,
    "con-1": _any_of("summary", "assessment"),
    "con-2": _any_of("code", "detail"),
    "con-4": con_4,
    "con-5": con_5,
    "ait-1": ait_1,
    "ait-2": ait_2,
    "imm-1": _any_of("documentType", "reference"),
    "pat-1": _any_of("name", "telecom", "address", "organization"),
    "org-1": _any_of("identifier", "name"),
    "org-2": org_2,
    "org-3": org_2,
    "Parameters.parameter:inv-1": inv_1,  # `inv-1` is also a Task and a TestReport key
    "age-1": age_1,
    "cnt-3": cnt_3,
    "dis-1": lambda o: _coded_quantity(o, _UCUM),
    "drt-1": drt_1,
    "mqty-1": lambda o: _coded_quantity(o, "urn:iso:std:iso:4217"),
    "cmp-1": _any_of("text", "entry", "section"),
    "tim-1": _implies("duration", "durationUnit"),
    "tim-2": _implies("period", "periodUnit"),
    "tim-4": _non_negative("duration"),
    "tim-5": _non_negative("period"),
    "tim-6": _implies("periodMax", "period"),
    "tim-7": _implies("durationMax", "duration"),
    "tim-8": _implies("countMax", "count"),
    "tim-9": tim_9,
    "tim-10": _not_both("timeOfDay", "when"),
}

# Keys the walker enforces itself.
# (sqty-1, "no comparator on a SimpleQuantity", is the max-0 cardinality of the profile's snapshot.)
BUILT_IN = (
    frozenset(
        {"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "ref-1", "txt-1", "txt-2", "sqty-1"}
    )
    | BUNDLE_KEYS
)  # the Bundle rules, located at their entries (bundles.py)

"""The INSi téléservice (fr-identity §1.6): a pluggable client and a simulated service.

INSi answers a *récupération* (look-up by traits, or by Vitale card data) and a *vérification*
(of an INS already held, with its traits) with a return code:

* ``00``: one identity found: the matricule INS (NIR or NIA) + the OID of its authority + the 5
  INS traits (birth family name, birth given names separated by spaces, birth date, sex, INSEE
  birthplace code). The returned traits *replace* the local ones;
* ``01``: none found (the caller may retry with other criteria);
* ``02``: several found: retry adding the other given names, then the birthplace.

`SimulatedInsi` behaves like that over a reference population its caller gives: traits
are compared after normalisation (accents, case, hyphens / apostrophes / spaces of compound
names), the typed given names must be the first given names of the reference (ending where a
reference given name ends), the birthplace narrows when given. It is indexed by
(compact birth name, birth date) and by NIR, so a look-up costs a few dict probes at 1M
identities. The real protocol (SOAP, GIE SESAM-Vitale specification) and the verification
codes are UNVERIFIED in our references: the simulated verification answers ``00`` when the INS
and the traits match and ``01`` otherwise, listing the traits that differ.
"""

from __future__ import annotations

import datetime as dt
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..synthetic import is_generated_duplicate
from .nir import check_nir, nir_key
from .traits import (
    OID_NIA,
    OID_NIR,
    Ins,
    Traits,
    compact,
    given_prefix_match,
    given_tokens,
    ins_from_patient,
    nss_from_patient,
    traits_from_patient,
)

FOUND = "00"
NOT_FOUND = "01"
SEVERAL = "02"
CODES = {FOUND: "one identity found", NOT_FOUND: "no identity found", SEVERAL: "several found"}


@dataclass(frozen=True, slots=True)
class InsIdentity:
    """What INSi returns with code 00: the INS and the reference (INS) traits."""

    ins: Ins
    traits: Traits


@dataclass(frozen=True, slots=True)
class InsiResult:
    operation: str  # lookup-traits | lookup-card | verify
    code: str  # 00 | 01 | 02
    identity: InsIdentity | None = None
    candidates: int = 0  # identities that matched (0, 1, or more with code 02)
    mismatches: tuple[str, ...] = ()  # verification: the traits that differ
    message: str = ""

    @property
    def found(self) -> bool:
        return self.code == FOUND

    @property
    def ins(self) -> Ins | None:
        return self.identity.ins if self.identity else None

    @property
    def traits(self) -> Traits | None:
        """The INS traits: they replace the local traits (used names are kept locally)."""
        return self.identity.traits if self.identity else None


@dataclass(frozen=True, slots=True)
class VitaleCard:
    """What a Vitale card read gives for the chosen beneficiary.

    `nss` is the number the card carries for this beneficiary (for an ayant-droit child it is a
    parent's number, not the child's matricule INS); the beneficiary's names and birth date
    come with it.
    """

    nss: str
    birth_date: dt.date | None = None
    family: str | None = None
    given: str | None = None


class InsiClient(ABC):
    """The INSi operations; implementations: `SimulatedInsi`, or a real téléservice client."""

    @abstractmethod
    def lookup_by_traits(self, traits: Traits) -> InsiResult:
        """Récupération by traits: birth name, given name(s), birth date, sex (+ birthplace)."""

    @abstractmethod
    def lookup_by_card(self, card: VitaleCard) -> InsiResult:
        """Récupération from Vitale card data (the recommended way)."""

    @abstractmethod
    def verify(self, ins: Ins | str, traits: Traits) -> InsiResult:
        """Vérification of an INS already held, with its traits."""


@dataclass(slots=True)
class InsiSearch:
    """A look-up with the retries of the real procedure; `attempts` in order."""

    result: InsiResult
    attempts: list[tuple[Traits, InsiResult]] = field(default_factory=list)


def search_ins(client: InsiClient, traits: Traits) -> InsiSearch:
    """The look-up by traits as an operator does it (§1.6).

    First given name only; on ``02`` retry with every birth given name, then also with the
    birthplace. A ``01`` on the first given name alone is retried with every given name too
    (the first typed word may be half of a compound given name: ``Marie Claire``).
    """
    first = replace(traits, birth_given=traits.birth_given[:1], birthplace=None)
    every = replace(traits, birthplace=None)
    search = InsiSearch(client.lookup_by_traits(first))
    search.attempts.append((first, search.result))
    for query in (every, traits):
        code = search.result.code
        if code == FOUND:
            break
        if code == NOT_FOUND and (
            len(search.attempts) > 1 or query.birth_given == search.attempts[-1][0].birth_given
        ):
            break  # only more given names can turn a 01 on the first given name into a 00
        if query == search.attempts[-1][0]:
            continue  # nothing to add (one given name, or no birthplace)
        search.result = client.lookup_by_traits(query)
        search.attempts.append((query, search.result))
    return search


# ------------------------------------------------------------------------------ the simulator


def _synthetic_nir(traits: Traits, salt: str, taken: Mapping[str, int]) -> str:
    """A NIR shaped from the traits, for a reference identity whose resource carries none."""
    born = traits.birth_date or dt.date(1900, 1, 1)
    sex = "2" if traits.sex == "female" else "1"
    place = (traits.birthplace or "99999").upper()[:5].rjust(5, "9")
    order = zlib.crc32(salt.encode()) % 999
    for step in range(999):
        body = f"{sex}{born.year % 100:02d}{born.month:02d}{place}{(order + step) % 999 + 1:03d}"
        nir = body + nir_key(body)
        if nir not in taken:
            return nir
    raise ValueError("no free NIR order number for these traits")


class SimulatedInsi(InsiClient):
    """INSi over a reference population, with the behaviour of the real service.

    Columns (not one object per identity) keep 1M identities within a few hundred MB; the
    by-traits index maps ``compact(birth name)|birth date`` to one row or a list of rows.
    """

    def __init__(self) -> None:
        self._nir: list[str] = []
        self._oid: list[str] = []
        self._family: list[str] = []
        self._given: list[str] = []
        self._born: list[dt.date | None] = []
        self._sex: list[str | None] = []
        self._place: list[str | None] = []
        self._by_key: dict[str, int | list[int]] = {}
        self._by_nir: dict[str, int] = {}
        self._strings: dict[str, str] = {}
        self._dates: dict[dt.date, dt.date] = {}
        self.synthesised = 0  # reference identities given a NIR of our own (see from_patients)

    def __len__(self) -> int:
        return len(self._nir)

    # -- building

    def _intern(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self._strings.setdefault(value, value)

    def add(self, ins: Ins, traits: Traits) -> bool:
        """Add a reference identity; False (and nothing added) when its NIR is already known."""
        return self.add_raw(
            ins.value,
            ins.oid,
            traits.birth_family,
            traits.given_string,
            traits.birth_date,
            traits.sex,
            traits.birthplace,
        )

    def add_raw(
        self,
        nir: str,
        oid: str,
        family: str,
        given: str,
        born: dt.date | None,
        sex: str | None,
        place: str | None,
    ) -> bool:
        """`add` without building objects (bulk loads); `given` is space-separated."""
        if nir in self._by_nir:
            return False
        row = len(self._nir)
        self._nir.append(nir)
        self._oid.append(self._intern(oid) or OID_NIR)
        self._family.append(self._intern(family) or "")
        self._given.append(self._intern(given) or "")
        self._born.append(self._dates.setdefault(born, born) if born else None)
        self._sex.append(self._intern(sex))
        self._place.append(self._intern(place))
        self._by_nir[nir] = row
        key = self._key(family, born)
        slot = self._by_key.get(key)
        if slot is None:
            self._by_key[key] = row
        elif isinstance(slot, int):
            self._by_key[key] = [slot, row]
        else:
            slot.append(row)
        return True

    @classmethod
    def from_identities(cls, identities: Iterable[InsIdentity]) -> SimulatedInsi:
        insi = cls()
        for identity in identities:
            insi.add(identity.ins, identity.traits)
        return insi

    @classmethod
    def from_patients(
        cls, resources: Iterable[dict[str, Any]], *, skip_synthetic_duplicates: bool = True
    ) -> SimulatedInsi:
        """The reference population of a region: one identity per person.

        Non-Patient resources are ignored. The INS is the Patient's INS identifier, else its NSS
        when that NSS is the person's own (sex and birth year/month agree), else a NIR made up
        from the traits (counted in `synthesised`). Records tagged ``duplicate`` by the region
        generator are second local records of a person already there: skipped by default; a
        NIR already known is never added twice.
        """
        insi = cls()
        for resource in resources:
            if resource.get("resourceType") != "Patient":
                continue
            if skip_synthetic_duplicates and is_generated_duplicate(resource):
                continue
            traits = traits_from_patient(resource)
            found = ins_from_patient(resource)
            if found:
                ins = found[0]
            else:
                nss = nss_from_patient(resource)
                if nss and not check_nir(nss, sex=traits.sex, birth_date=traits.birth_date):
                    ins = Ins(nss, OID_NIA if nss[:1] in "78" else OID_NIR)
                else:
                    nir = _synthetic_nir(traits, str(resource.get("id")), insi._by_nir)
                    ins = Ins(nir, OID_NIR)
                    insi.synthesised += 1
            insi.add(ins, traits)
        return insi

    # -- reading

    @staticmethod
    def _key(family: str, born: dt.date | None) -> str:
        return f"{compact(family)}|{born.isoformat() if born else ''}"

    def _rows(self, family: str, born: dt.date | None) -> list[int]:
        slot = self._by_key.get(self._key(family, born))
        if slot is None:
            return []
        return [slot] if isinstance(slot, int) else slot

    def identity(self, row: int) -> InsIdentity:
        traits = Traits(
            birth_family=self._family[row],
            birth_given=tuple(self._given[row].split()),
            birth_date=self._born[row],
            sex=self._sex[row],
            birthplace=self._place[row],
        )
        return InsIdentity(Ins(self._nir[row], self._oid[row]), traits)

    def _answer(self, operation: str, rows: list[int]) -> InsiResult:
        if not rows:
            return InsiResult(operation, NOT_FOUND, message=CODES[NOT_FOUND])
        if len(rows) > 1:
            return InsiResult(
                operation,
                SEVERAL,
                candidates=len(rows),
                message="several identities found: add the other given names, then the birthplace",
            )
        return InsiResult(operation, FOUND, self.identity(rows[0]), 1, message=CODES[FOUND])

    def _match(self, traits: Traits, rows: list[int]) -> list[int]:
        sex = traits.sex if traits.sex in ("male", "female") else None
        place = (traits.birthplace or "").upper()
        out = []
        for row in rows:
            if sex and self._sex[row] != sex:
                continue
            if place and self._place[row] and self._place[row] != place:
                continue
            if not given_prefix_match(traits.birth_given, self._given[row].split()):
                continue
            out.append(row)
        return out

    def lookup_by_traits(self, traits: Traits) -> InsiResult:
        if not traits.birth_family or not traits.birth_given or traits.birth_date is None:
            return InsiResult(
                "lookup-traits",
                NOT_FOUND,
                message="birth name, a given name and the birth date are required",
            )
        rows = self._match(traits, self._rows(traits.birth_family, traits.birth_date))
        return self._answer("lookup-traits", rows)

    def lookup_by_card(self, card: VitaleCard) -> InsiResult:
        row = self._by_nir.get(card.nss.replace(" ", "").upper())
        if row is not None and (card.birth_date is None or self._born[row] == card.birth_date):
            return self._answer("lookup-card", [row])
        # an ayant-droit: the card number is a parent's; the beneficiary is found by its data
        if card.family and card.given and card.birth_date:
            query = Traits(card.family, (card.given,), card.birth_date, None, None)
            rows = self._match(query, self._rows(card.family, card.birth_date))
            return self._answer("lookup-card", rows)
        return self._answer("lookup-card", [])

    def verify(self, ins: Ins | str, traits: Traits) -> InsiResult:
        value = ins.value if isinstance(ins, Ins) else ins
        row = self._by_nir.get(value.replace(" ", "").upper())
        if row is None:
            return InsiResult("verify", NOT_FOUND, mismatches=("ins",), message="unknown INS")
        ref = self.identity(row).traits
        diff: list[str] = []
        if isinstance(ins, Ins) and ins.oid != self._oid[row]:
            diff.append("oid")
        if compact(traits.birth_family) != compact(ref.birth_family):
            diff.append("birth_family")
        if given_tokens(traits.birth_given)[0] != given_tokens(ref.birth_given)[0]:
            diff.append("birth_given")
        if traits.birth_date != ref.birth_date:
            diff.append("birth_date")
        if traits.sex != ref.sex:
            diff.append("sex")
        if (traits.birthplace or "").upper() != (ref.birthplace or "").upper():
            diff.append("birthplace")
        if diff:
            return InsiResult(
                "verify",
                NOT_FOUND,
                mismatches=tuple(diff),
                message="the INS and the traits do not match: " + ", ".join(diff),
            )
        return InsiResult("verify", FOUND, self.identity(row), 1, message="INS verified")


# ------------------------------------------------------------------------------------ factory

InsiFactory = Callable[[Mapping[str, Any]], InsiClient]
_BACKENDS: dict[str, InsiFactory] = {}


def register_insi_backend(name: str, factory: InsiFactory) -> None:
    """Plug an INSi implementation (e.g. a real téléservice client) under `name`."""
    _BACKENDS[name] = factory


def _simulated(config: Mapping[str, Any]) -> InsiClient:
    reference = config.get("reference")
    if reference is None:
        raise ValueError("the simulated INSi needs its reference population ('reference')")
    return SimulatedInsi.from_patients(reference)


register_insi_backend("simulated", _simulated)


def insi_client(config: Mapping[str, Any] | None = None) -> InsiClient:
    """The INSi client that `config` names (``mode``; default ``simulated``).

    Simulated: ``reference``, its population (an iterable of Patient resources), given by
    whoever starts it. The caller chooses ``mode`` from the settings (``SOCLE_INSI_MODE``).
    """
    conf = dict(config or {})
    mode = conf.get("mode") or "simulated"
    try:
        factory = _BACKENDS[mode]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        raise ValueError(f"unknown INSi mode {mode!r} (known: {known})") from None
    return factory(conf)

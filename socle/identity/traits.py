"""Identity traits (fr-identity §1.1, §1.4) read from FR Core Patient JSON, and their normalisation.

The 5 strict INS traits are the birth family name, the list of birth given names, the birth date,
the sex and the INSEE (COG) code of the birthplace; the used family / given names are
complementary traits (RNIV). `traits_from_patient` reads them from an FR Core Patient as produced
by the synthetic region (`socle.region`): the `official` name with the
`fr-core-patient-birth-list-given-name` extension, the `usual` name, the HL7 `patient-birthPlace`
extension with its FR Core INSEE code.

Normalisation (used by the INSi matching and by duplicate detection):

* `fold`: accents and ligatures removed, upper case, every separator (hyphen, apostrophe, dot,
  space…) becomes one space: ``"Colonna-d’Istria" -> "COLONNA D ISTRIA"``;
* `compact`: `fold` without spaces, so that hyphen / apostrophe / space variants of a compound
  name compare equal: ``"Jean-Pierre" == "JEAN PIERRE"``;
* `name_parts`: the parts of a compound name without particles (de, d', la, le, di…), to compare
  ``"de Peretti"`` with ``"PERETTI"`` or ``"Martin-Lacroix"`` with ``"MARTIN"``;
* `phonetic`: a small French phonetic key (blocking and near matches), ``"Philippe" ~ "FILIPE"``;
* `given_tokens` / `given_boundaries`: the given names as one token sequence and where each given
  name ends, so that ``"Jean Pierre"`` typed in one field matches the compound ``Jean-Pierre``
  but ``"Jean"`` alone does not.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# FHIR / FR Core constants (fr-identity §1.3-1.5).
BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
BIRTH_LIST_GIVEN_URL = (
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
)
RELIABILITY_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
FR_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
HL7_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OID_NIR = "1.2.250.1.213.1.4.8"
OID_NIA = "1.2.250.1.213.1.4.9"
OID_NIR_TEST = "1.2.250.1.213.1.4.10"
OID_NIR_DEMO = "1.2.250.1.213.1.4.11"
INS_TYPES = {
    "INS-NIR": OID_NIR,
    "INS-NIA": OID_NIA,
    "INS-NIR-TEST": OID_NIR_TEST,
    "INS-NIR-DEMO": OID_NIR_DEMO,
}
INS_TYPE_OF_OID = {oid: kind for kind, oid in INS_TYPES.items()}

# Particles of French (and Corsican, Italian, Iberian, Dutch/German, Arabic) family names.
PARTICLES = frozenset(
    {
        "D", "DE", "DU", "DES", "LA", "LE", "LES", "L", "DI", "DA", "DAL", "DALLA", "DEL",
        "DELLA", "DELLE", "DEI", "DEGLI", "DOS", "DAS", "VAN", "VON", "DER", "DEN", "EL", "AL",
    }
)  # fmt: skip

_LIGATURES = str.maketrans({"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "ß": "SS", "ø": "O"})
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


@lru_cache(maxsize=65536)
def fold(text: str | None) -> str:
    """Accents and case folded, every run of separators (hyphen, apostrophe…) as one space."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()
    return _NOT_ALNUM.sub(" ", plain).strip()


@lru_cache(maxsize=65536)
def compact(text: str | None) -> str:
    """`fold` without the spaces: hyphen, apostrophe and space variants compare equal."""
    return fold(text).replace(" ", "")


def tokens(text: str | None) -> tuple[str, ...]:
    """The words of `text`, folded."""
    return tuple(fold(text).split())


@lru_cache(maxsize=65536)
def name_parts(text: str | None) -> tuple[str, ...]:
    """The parts of a (compound) family name without its particles: ``"Colonna d'Istria"`` ->
    ``("COLONNA", "ISTRIA")``; a name made of particles only keeps them (``"Le"``)."""
    words = tokens(text)
    kept = tuple(w for w in words if w not in PARTICLES)
    return kept or words


def without_particles(text: str | None) -> str:
    """The compact form of `text` without its particles: ``"de La Fontaine"`` -> ``"FONTAINE"``."""
    return "".join(name_parts(text))


_PHONETIC_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(a), b)
    for a, b in (
        (r"[^A-Z]", ""),
        (r"Y", "I"),
        (r"PH", "F"),
        (r"GU(?=[EI])", "G"),
        (r"G(?=[EI])", "J"),
        (r"QU|Q|CK", "K"),
        (r"SCH|SH", "CH"),
        (r"C(?=[EI])", "S"),
        (r"C(?!H)", "K"),
        (r"(?<=[AEIOU])S(?=[AEIOU])", "Z"),
        (r"Z", "S"),
        (r"W", "V"),
        (r"(?<![CS])H", ""),
        (r"EAU|AU", "O"),
        (r"AI|EI", "E"),
        (r"OU", "U"),
        (r"(?<=[AEIOU])[MN](?![AEIOU]|$)", "N"),
        (r"EN|AN", "AN"),
        (r"(?<=.)[STXDZP]$", ""),
        (r"(?<=.)E$", ""),
        (r"(.)\1+", r"\1"),
    )
)


@lru_cache(maxsize=65536)
def phonetic(text: str | None) -> str:
    """A small French phonetic key (blocking and near matches, not an identity rule).

    Not a published algorithm: a few French spelling rules (PH=F, QU=K, soft C/G, silent H and
    final consonants, AU/EAU=O, AI/EI=E, doubled letters), applied to the compact name.
    """
    key = compact(text)
    for pattern, repl in _PHONETIC_RULES:
        key = pattern.sub(repl, key)
    return key


def given_tokens(given: Sequence[str]) -> tuple[tuple[str, ...], frozenset[int]]:
    """The given names as one token sequence and the token counts at which a given name ends.

    ``["Jean-Pierre", "Louis"]`` -> ``(("JEAN", "PIERRE", "LOUIS"), {2, 3})``.
    """
    out: list[str] = []
    ends: set[int] = set()
    for name in given:
        words = tokens(name)
        if words:
            out.extend(words)
            ends.add(len(out))
    return tuple(out), frozenset(ends)


def given_prefix_match(typed: Sequence[str], reference: Sequence[str]) -> bool:
    """True when the typed given names are the first given names of `reference`.

    Compared on folded tokens, so separators do not matter, but the typed names must end where a
    reference given name ends: ``"Jean Pierre"`` matches ``["Jean-Pierre", "Louis"]``, ``"Jean"``
    does not.
    """
    typed_tokens, _ = given_tokens(typed)
    ref_tokens, ends = given_tokens(reference)
    k = len(typed_tokens)
    return k > 0 and k in ends and ref_tokens[:k] == typed_tokens


def split_given(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Given names from an INSi-style space-separated string or a list (blank entries dropped)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(v.strip() for v in value if v and v.strip())


def parse_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Traits:
    """The identity traits of one person (5 strict INS traits + used names)."""

    birth_family: str
    birth_given: tuple[str, ...]
    birth_date: dt.date | None
    sex: str | None  # FHIR gender: male | female | unknown | other
    birthplace: str | None  # INSEE (COG) commune code, or 99 + country code
    used_family: str | None = None
    used_given: str | None = None

    def __post_init__(self) -> None:
        # accept a list or an INSi space-separated string for the given names
        if not isinstance(self.birth_given, tuple):
            object.__setattr__(self, "birth_given", split_given(self.birth_given))

    @property
    def first_given(self) -> str:
        return self.birth_given[0] if self.birth_given else ""

    @property
    def given_string(self) -> str:
        """The birth given names as INSi returns them: separated by spaces."""
        return " ".join(self.birth_given)

    def normalised(self) -> NormalisedTraits:
        return normalise(self)


@dataclass(frozen=True, slots=True)
class NormalisedTraits:
    """Pre-computed comparison forms of a `Traits` (all folded / compact)."""

    family: str  # compact birth family name
    family_parts: tuple[str, ...]
    family_phonetic: str
    used_family: str  # compact used family name ('' when none)
    used_parts: tuple[str, ...]
    given: tuple[str, ...]  # compact given names, in order
    given_tokens: tuple[str, ...]
    first_given: str  # compact first given name
    used_given: str
    birth_date: dt.date | None
    sex: str | None
    birthplace: str | None
    names: frozenset[str] = field(default_factory=frozenset)  # every compact family name


def normalise(traits: Traits) -> NormalisedTraits:
    family = compact(traits.birth_family)
    used = compact(traits.used_family)
    given = tuple(c for c in (compact(g) for g in traits.birth_given) if c)
    gtokens, _ = given_tokens(traits.birth_given)
    sex = traits.sex if traits.sex in ("male", "female") else None
    return NormalisedTraits(
        family=family,
        family_parts=name_parts(traits.birth_family),
        family_phonetic=phonetic(traits.birth_family),
        used_family=used,
        used_parts=name_parts(traits.used_family) if used else (),
        given=given,
        given_tokens=gtokens,
        first_given=given[0] if given else "",
        used_given=compact(traits.used_given),
        birth_date=traits.birth_date,
        sex=sex,
        birthplace=(traits.birthplace or "").upper() or None,
        names=frozenset(n for n in (family, used) if n),
    )


# --------------------------------------------------------------------------- FHIR Patient JSON


@dataclass(frozen=True, slots=True)
class Ins:
    """A matricule INS: the NIR or NIA and the OID of its assigning authority (§1.3)."""

    value: str
    oid: str = OID_NIR

    @property
    def kind(self) -> str:
        """`INS-NIR`, `INS-NIA`, `INS-NIR-TEST` or `INS-NIR-DEMO`."""
        return INS_TYPE_OF_OID.get(self.oid, "INS-NIR")

    @property
    def system(self) -> str:
        return "urn:oid:" + self.oid

    def identifier(self) -> dict[str, Any]:
        """The FR Core `Patient.identifier` (slice INS-NIR / INS-NIA…) of this INS."""
        display = "NIR temporaire" if self.oid == OID_NIA else "NIR définitif"
        return {
            "use": "temp" if self.oid == OID_NIA else "official",
            "type": {"coding": [{"system": FR_V2_0203, "code": self.kind, "display": display}]},
            "system": self.system,
            "value": self.value,
        }


def _codes(concept: dict[str, Any] | None) -> list[tuple[str | None, str | None]]:
    if not concept:
        return []
    return [(c.get("system"), c.get("code")) for c in concept.get("coding", [])]


def ins_identifiers(
    resource: dict[str, Any], *, include_old: bool = False
) -> list[tuple[int, Ins]]:
    """The INS identifiers of a Patient with their index in `identifier` (error locations)."""
    out: list[tuple[int, Ins]] = []
    for index, ident in enumerate(resource.get("identifier") or []):
        if not include_old and ident.get("use") == "old":
            continue
        kinds = [code for system, code in _codes(ident.get("type")) if code in INS_TYPES]
        value = ident.get("value")
        if not kinds or not value:
            continue
        system = ident.get("system") or ""
        oid = system.removeprefix("urn:oid:") if system.startswith("urn:oid:") else ""
        out.append((index, Ins(value, oid if oid in INS_TYPE_OF_OID else INS_TYPES[kinds[0]])))
    return out


def ins_from_patient(resource: dict[str, Any], *, include_old: bool = False) -> list[Ins]:
    """The INS identifiers of a Patient, told from the NSS by their `type` (never by system)."""
    return [ins for _, ins in ins_identifiers(resource, include_old=include_old)]


def nss_from_patient(resource: dict[str, Any]) -> str | None:
    """The NSS (billing number, type `NH`) of a Patient, if any."""
    for ident in resource.get("identifier") or []:
        if ident.get("use") == "old":
            continue
        if any(code == "NH" for _, code in _codes(ident.get("type"))) and ident.get("value"):
            value: str = ident["value"]
            return value
    return None


def _ext(items: Iterable[dict[str, Any]] | None, url: str) -> dict[str, Any] | None:
    for item in items or []:
        if item.get("url") == url:
            return item
    return None


def birthplace_from_patient(resource: dict[str, Any]) -> str | None:
    place = _ext(resource.get("extension"), BIRTH_PLACE_URL)
    if not place:
        return None
    address = place.get("valueAddress") or {}
    code = _ext(address.get("extension"), INSEE_CODE_URL)
    if code:
        coding = code.get("valueCoding") or {}
        value = coding.get("code") or code.get("valueCode") or code.get("valueString")
        if value:
            return str(value)
    district = address.get("district")
    return str(district) if district else None


def traits_from_patient(resource: dict[str, Any]) -> Traits:
    """The traits of an FR Core Patient (official name = birth name, usual name = used name)."""
    names = resource.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), None)
    usual = next((n for n in names if n.get("use") == "usual"), None)
    birth = official or next((n for n in names if n.get("use") in (None, "maiden")), None) or usual
    family = ""
    given: tuple[str, ...] = ()
    if birth:
        family = birth.get("family") or ""
        listed = _ext(birth.get("extension"), BIRTH_LIST_GIVEN_URL)
        if listed and listed.get("valueString"):
            given = split_given(listed["valueString"])
        else:
            given = split_given(birth.get("given") or [])
    used_family = used_given = None
    if usual is not None and usual is not birth:
        used_family = usual.get("family") or None
        used_given = (usual.get("given") or [None])[0]
    if used_family and compact(used_family) == compact(family):
        used_family = None
    return Traits(
        birth_family=family,
        birth_given=given,
        birth_date=parse_date(resource.get("birthDate")),
        sex=resource.get("gender"),
        birthplace=birthplace_from_patient(resource),
        used_family=used_family,
        used_given=used_given,
    )

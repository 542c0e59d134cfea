"""Duplicate detection (doublons) and INS collisions, on write and as a batch report.

Pairs of identities are scored with additive weights (log-odds style: agreement adds, conflict
subtracts) on normalised traits (see `traits`): family names (birth and used, compound names,
particles, phonetic), given names (full list, first given name, prefix of the list), birth date
(exact, day/month swapped, one-digit typo), sex, birthplace, and optionally the identifiers (INS,
NSS). `Thresholds` turn the score into a level: certain / probable / possible.

To avoid comparing every pair, records are put in blocks (keys sharing a compact name and the
birth date with day and month unordered, the phonetic birth name and the date, the name, the first
given name and the year or the day-month, the first given name, the sex and the date); only records
sharing a block are scored. `DuplicateIndex` does it incrementally: `candidates(record)` on
write, `add(record)` after; `find_duplicates` is the batch scan built on it.

Collisions (`find_collisions`): the same INS on two records (a duplicate when their traits agree,
else a collision: RNIV comments DOUB / COLP) and one record holding two different INS.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..synthetic import DUPLICATE, HOMONYM, synthetic_tags
from .traits import (
    Ins,
    NormalisedTraits,
    Traits,
    ins_from_patient,
    normalise,
    nss_from_patient,
    traits_from_patient,
)

CERTAIN, PROBABLE, POSSIBLE = "certain", "probable", "possible"
LEVELS = (CERTAIN, PROBABLE, POSSIBLE)


@dataclass(frozen=True, slots=True)
class Weights:
    """Score contributions (agreements positive, conflicts negative)."""

    family_exact: float = 6.0  # same birth name (compact: accents, case, separators ignored)
    family_cross: float = 4.5  # the birth name of one is the used name of the other
    family_used: float = 2.0  # only the used names agree
    family_compound: float = 3.5  # a part of a compound name agrees (particles ignored)
    family_phonetic: float = 3.5
    family_typo: float = 2.5  # Jaro-Winkler >= name_similarity
    family_differ: float = -5.0
    given_full: float = 5.0  # same list of birth given names
    given_prefix: float = 4.0  # one list starts the other ("Louise" / "Louise Stéphanie")
    given_first: float = 1.5  # same first given name, the rest of the lists conflict
    given_crossed: float = 2.0  # the first of one is in the other's list, or the used given name
    given_typo: float = 1.5
    given_differ: float = -6.0
    date_exact: float = 5.0
    date_swapped: float = 3.5  # day and month swapped
    date_typo: float = 2.0  # one digit differs, or two adjacent digits swapped
    date_differ: float = -8.0
    sex_same: float = 0.5
    sex_differ: float = -3.0
    place_same: float = 3.0
    place_differ: float = -8.0
    ins_same: float = 8.0  # both hold the same INS
    ins_differ: float = -10.0  # both hold an INS, none in common: two persons
    nss_same: float = 3.0
    name_similarity: float = 0.9


@dataclass(frozen=True, slots=True)
class Thresholds:
    certain: float = 19.0
    probable: float = 12.0
    possible: float = 7.0

    def level(self, score: float) -> str | None:
        if score >= self.certain:
            return CERTAIN
        if score >= self.probable:
            return PROBABLE
        if score >= self.possible:
            return POSSIBLE
        return None

    def minimum(self, level: str) -> float:
        return {CERTAIN: self.certain, PROBABLE: self.probable, POSSIBLE: self.possible}[level]


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """One local identity record: its id, traits and identifiers."""

    id: str
    traits: Traits
    ins: tuple[Ins, ...] = ()
    nss: str | None = None

    @classmethod
    def from_patient(cls, resource: Mapping[str, Any]) -> IdentityRecord:
        res = dict(resource)
        return cls(
            id=str(res.get("id")),
            traits=traits_from_patient(res),
            ins=tuple(ins_from_patient(res)),
            nss=nss_from_patient(res),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pair of records that may be the same person."""

    score: float
    a: str
    b: str
    level: str
    evidence: tuple[str, ...]  # e.g. ("family=birth +6.0", "date~swapped +3.5", …)

    @property
    def homonym_suspect(self) -> bool:
        """Same birth name, first given name and date, but a conflicting birthplace or list."""
        ev = set(self.evidence)
        return (
            any(e.startswith("family=birth") for e in ev)
            and any(e.startswith("date=") for e in ev)
            and any(e.startswith(("place≠", "given=first ")) for e in ev)
        )


@dataclass(frozen=True, slots=True)
class Collision:
    kind: str  # same-ins | several-ins
    ins: tuple[str, ...]
    records: tuple[str, ...]
    score: float | None = None  # trait score of the first two records (same-ins)
    verdict: str = ""  # duplicate | collision | conflict


# ---------------------------------------------------------------------------------- scoring


def jaro_winkler(s: str, t: str) -> float:
    """Jaro-Winkler similarity (0..1) of two short strings."""
    if s == t:
        return 1.0
    ls, lt = len(s), len(t)
    if not ls or not lt:
        return 0.0
    window = max(max(ls, lt) // 2 - 1, 0)
    s_hit = [False] * ls
    t_hit = [False] * lt
    matches = 0
    for i, ch in enumerate(s):
        lo, hi = max(0, i - window), min(lt, i + window + 1)
        for j in range(lo, hi):
            if not t_hit[j] and t[j] == ch:
                s_hit[i] = t_hit[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    t_chars = [t[j] for j in range(lt) if t_hit[j]]
    transpositions = sum(
        1
        for ch, other in zip((s[i] for i in range(ls) if s_hit[i]), t_chars, strict=True)
        if ch != other
    )
    m = float(matches)
    jaro = (m / ls + m / lt + (m - transpositions / 2) / m) / 3
    prefix = 0
    for a, b in zip(s[:4], t[:4], strict=False):
        if a != b:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


def _date_digits(d: dt.date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def _date_typo(a: dt.date, b: dt.date) -> bool:
    x, y = _date_digits(a), _date_digits(b)
    diff = [i for i in range(8) if x[i] != y[i]]
    if len(diff) == 1:
        return True
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and x[diff[0]] == y[diff[1]]
        and (x[diff[1]] == y[diff[0]])
    )


def _starts(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    return len(shorter) < len(longer) and longer[: len(shorter)] == shorter


def score_pair(
    a: NormalisedTraits,
    b: NormalisedTraits,
    weights: Weights = Weights(),  # noqa: B008 (frozen dataclass)
) -> tuple[float, list[str]]:
    """The score of the pair and the evidence behind it (one entry per trait)."""
    w = weights
    ev: list[tuple[str, float]] = []
    # family names
    if a.family and a.family == b.family:
        ev.append(("family=birth", w.family_exact))
    elif a.family in b.names or b.family in a.names:
        ev.append(("family=birth/used", w.family_cross))
    elif a.names & b.names:
        ev.append(("family=used", w.family_used))
    elif set(a.family_parts + a.used_parts) & set(b.family_parts + b.used_parts):
        ev.append(("family~compound", w.family_compound))
    elif a.family_phonetic and a.family_phonetic == b.family_phonetic:
        ev.append(("family~phonetic", w.family_phonetic))
    elif jaro_winkler(a.family, b.family) >= w.name_similarity:
        ev.append(("family~typo", w.family_typo))
    else:
        ev.append(("family≠", w.family_differ))
    # given names
    if a.given_tokens and a.given_tokens == b.given_tokens:
        ev.append(("given=list", w.given_full))
    elif _starts(a.given_tokens, b.given_tokens) or _starts(b.given_tokens, a.given_tokens):
        ev.append(("given=prefix", w.given_prefix))
    elif a.first_given and a.first_given == b.first_given:
        ev.append(("given=first", w.given_first))
    elif (a.first_given and a.first_given in b.given + (b.used_given,)) or (
        b.first_given and b.first_given in a.given + (a.used_given,)
    ):
        ev.append(("given~crossed", w.given_crossed))
    elif jaro_winkler(a.first_given, b.first_given) >= w.name_similarity:
        ev.append(("given~typo", w.given_typo))
    else:
        ev.append(("given≠", w.given_differ))
    # birth date
    da, db = a.birth_date, b.birth_date
    if da is not None and db is not None:
        if da == db:
            ev.append(("date=", w.date_exact))
        elif da.year == db.year and da.day == db.month and da.month == db.day:
            ev.append(("date~swapped", w.date_swapped))
        elif _date_typo(da, db):
            ev.append(("date~typo", w.date_typo))
        else:
            ev.append(("date≠", w.date_differ))
    if a.sex and b.sex:
        ev.append(("sex=", w.sex_same) if a.sex == b.sex else ("sex≠", w.sex_differ))
    if a.birthplace and b.birthplace:
        if a.birthplace == b.birthplace:
            ev.append(("place=", w.place_same))
        else:
            ev.append(("place≠", w.place_differ))
    return sum(v for _, v in ev), [f"{name} {v:+.1f}" for name, v in ev]


def score_records(
    a: IdentityRecord | Traits,
    b: IdentityRecord | Traits,
    weights: Weights = Weights(),  # noqa: B008 (frozen dataclass)
    *,
    use_identifiers: bool = True,
) -> tuple[float, list[str]]:
    """`score_pair` of two records (or bare traits), with the identifiers when asked."""
    ra = a if isinstance(a, IdentityRecord) else IdentityRecord("a", a)
    rb = b if isinstance(b, IdentityRecord) else IdentityRecord("b", b)
    score, evidence = score_pair(normalise(ra.traits), normalise(rb.traits), weights)
    if use_identifiers:
        extra = _identifier_evidence(ra, rb, weights)
        score += sum(v for _, v in extra)
        evidence += [f"{name} {v:+.1f}" for name, v in extra]
    return score, evidence


def _identifier_evidence(
    a: IdentityRecord, b: IdentityRecord, w: Weights
) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    if a.ins and b.ins:
        if {i.value for i in a.ins} & {i.value for i in b.ins}:
            out.append(("ins=", w.ins_same))
        else:
            out.append(("ins≠", w.ins_differ))
    if a.nss and a.nss == b.nss:
        out.append(("nss=", w.nss_same))
    return out


def score_candidate(
    earlier: IdentityRecord,
    earlier_norm: NormalisedTraits,
    record: IdentityRecord,
    norm: NormalisedTraits,
    floor: float,
    thresholds: Thresholds,
    weights: Weights,
    *,
    use_identifiers: bool = True,
) -> Candidate | None:
    """The candidate pair (`earlier`, `record`) when it scores `floor` or above: what the
    in-memory index and the report on the stored traits (`stored_report.py`) both find."""
    score, evidence, with_ids, id_evidence = pair_scores(
        earlier, earlier_norm, record, norm, weights
    )
    if use_identifiers:
        score, evidence = with_ids, evidence + id_evidence
    return candidate_of(earlier.id, record.id, score, evidence, floor, thresholds)


def pair_scores(
    earlier: IdentityRecord,
    earlier_norm: NormalisedTraits,
    record: IdentityRecord,
    norm: NormalisedTraits,
    weights: Weights,
) -> tuple[float, list[str], float, list[str]]:
    """(traits' score, their evidence, score with the identifiers, the identifiers' evidence) of
    the pair (`earlier`, `record`): both ways of scoring, the stored report keeps both."""
    score, evidence = score_pair(norm, earlier_norm, weights)
    with_ids = score
    extra = _identifier_evidence(record, earlier, weights)
    if extra:
        with_ids += sum(v for _, v in extra)
    return score, evidence, with_ids, [f"{name} {v:+.1f}" for name, v in extra]


def candidate_of(
    earlier: str,
    record: str,
    score: float,
    evidence: Iterable[str],
    floor: float,
    thresholds: Thresholds,
) -> Candidate | None:
    """The candidate of a scored pair, None under `floor`."""
    if score < floor:
        return None
    lvl = thresholds.level(score) or POSSIBLE
    return Candidate(round(score, 2), earlier, record, lvl, tuple(evidence))


# ---------------------------------------------------------------------------------- blocking


def blocking_keys(n: NormalisedTraits) -> list[str]:
    """The blocks a record belongs to (records sharing none are never compared)."""
    keys: list[str] = []
    d = n.birth_date
    first = n.first_given
    if d is not None:
        lo, hi = sorted((d.day, d.month))
        iso = d.isoformat()
        for name in n.names:
            keys.append(f"n|{name}|{d.year}|{lo}|{hi}")
            if first:
                keys.append(f"y|{name}|{first}|{d.year}")
                keys.append(f"m|{name}|{first}|{d.month}|{d.day}")
        if n.family_phonetic:
            keys.append(f"p|{n.family_phonetic}|{iso}")
        if first:
            keys.append(f"g|{first}|{n.sex}|{iso}")
    else:
        for name in n.names:
            keys.append(f"x|{name}|{first}")
    return keys


@dataclass
class DuplicateIndex:
    """Records seen so far, by block: `candidates` on write, then `add`."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    weights: Weights = field(default_factory=Weights)
    use_identifiers: bool = True
    # Blocks grown larger are no longer searched (counted in the report). In a real region a block
    # (name + first given name + birth year, or exact birth date) holds a handful of records; one of
    # hundreds says the traits do not discriminate (placeholder identities, a load test) and would
    # cost a quadratic scan.
    max_block: int = 200
    records: list[IdentityRecord] = field(default_factory=list)
    normalised: list[NormalisedTraits] = field(default_factory=list)
    blocks: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    compared: int = 0
    oversized: set[str] = field(default_factory=set)

    def _rows(self, keys: list[str]) -> set[int]:
        rows: set[int] = set()
        for key in keys:
            block = self.blocks.get(key)
            if block:
                if len(block) > self.max_block:
                    self.oversized.add(key)
                    continue
                rows.update(block)
        return rows

    def candidates(
        self,
        record: IdentityRecord,
        *,
        level: str = POSSIBLE,
        _norm: NormalisedTraits | None = None,
    ) -> list[Candidate]:
        """The records already added that score at `level` or above with `record`."""
        norm = _norm or normalise(record.traits)
        floor = self.thresholds.minimum(level)
        out: list[Candidate] = []
        for row in self._rows(blocking_keys(norm)):
            other = self.records[row]
            if other.id == record.id:
                continue
            self.compared += 1
            found = score_candidate(
                other,
                self.normalised[row],
                record,
                norm,
                floor,
                self.thresholds,
                self.weights,
                use_identifiers=self.use_identifiers,
            )
            if found is not None:
                out.append(found)
        out.sort(key=lambda c: -c.score)
        return out

    def add(self, record: IdentityRecord, *, _norm: NormalisedTraits | None = None) -> None:
        norm = _norm or normalise(record.traits)
        row = len(self.records)
        self.records.append(record)
        self.normalised.append(norm)
        for key in blocking_keys(norm):
            self.blocks[key].append(row)


def as_records(patients: Iterable[Mapping[str, Any] | IdentityRecord]) -> Iterator[IdentityRecord]:
    """Identity records of Patient resources (other resources skipped) or records as given."""
    for item in patients:
        if isinstance(item, IdentityRecord):
            yield item
        elif item.get("resourceType") == "Patient":
            yield IdentityRecord.from_patient(item)


@dataclass
class DuplicateReport:
    candidates: list[Candidate]
    collisions: list[Collision]
    records: int
    compared: int
    oversized_blocks: int
    # the last kept report, served while the kept pairs are rebuilt (`pair_rows`)
    refreshing: bool = False

    def counts(self) -> dict[str, int]:
        out = {lvl: 0 for lvl in LEVELS}
        for c in self.candidates:
            out[c.level] += 1
        return out


def duplicate_report(
    patients: Iterable[Mapping[str, Any] | IdentityRecord],
    *,
    level: str = POSSIBLE,
    thresholds: Thresholds | None = None,
    weights: Weights | None = None,
    use_identifiers: bool = True,
) -> DuplicateReport:
    """The batch scan: candidates at `level` or above (best first) and INS collisions."""
    index = DuplicateIndex(
        thresholds or Thresholds(), weights or Weights(), use_identifiers=use_identifiers
    )
    found: list[Candidate] = []
    records: list[IdentityRecord] = []
    for record in as_records(patients):
        norm = normalise(record.traits)
        found.extend(index.candidates(record, level=level, _norm=norm))
        index.add(record, _norm=norm)
        records.append(record)
    found.sort(key=lambda c: -c.score)
    return DuplicateReport(
        candidates=found,
        collisions=find_collisions(records, thresholds=index.thresholds, weights=index.weights),
        records=len(records),
        compared=index.compared,
        oversized_blocks=len(index.oversized),
    )


def find_duplicates(
    patients: Iterable[Mapping[str, Any] | IdentityRecord],
    *,
    level: str = POSSIBLE,
    thresholds: Thresholds | None = None,
    weights: Weights | None = None,
    use_identifiers: bool = True,
) -> list[Candidate]:
    """Candidate duplicate pairs at `level` or above, best first (see `duplicate_report`)."""
    return duplicate_report(
        patients,
        level=level,
        thresholds=thresholds,
        weights=weights,
        use_identifiers=use_identifiers,
    ).candidates


def find_collisions(
    records: Iterable[IdentityRecord],
    *,
    thresholds: Thresholds | None = None,
    weights: Weights | None = None,
) -> list[Collision]:
    """Same INS on several records; several different INS on one record."""
    thresholds = thresholds or Thresholds()
    weights = weights or Weights()
    by_ins: dict[str, list[IdentityRecord]] = defaultdict(list)
    out: list[Collision] = []
    for record in records:
        values = sorted({i.value for i in record.ins})
        if len(values) > 1:
            out.append(Collision("several-ins", tuple(values), (record.id,), None, "conflict"))
        for value in values:
            by_ins[value].append(record)
    for value, group in by_ins.items():
        if len(group) < 2:
            continue
        score, _ = score_records(group[0], group[1], weights, use_identifiers=False)
        verdict = "duplicate" if score >= thresholds.probable else "collision"
        out.append(
            Collision("same-ins", (value,), tuple(r.id for r in group), round(score, 2), verdict)
        )
    return out


# ------------------------------------------------------------- answer key of the region


def synthetic_answer_key(
    resources: Iterable[Mapping[str, Any]],
) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    """(duplicate pairs, homonym pairs) from the region generator's `meta.tag` answer key."""
    duplicates: set[frozenset[str]] = set()
    homonyms: set[frozenset[str]] = set()
    for r in resources:
        if r.get("resourceType") != "Patient":
            continue
        for tag in synthetic_tags(r):
            if not tag.get("display"):
                continue
            pair = frozenset({str(r["id"]), tag["display"].removeprefix("Patient/")})
            if tag.get("code") == DUPLICATE:
                duplicates.add(pair)
            elif tag.get("code") == HOMONYM:
                homonyms.add(pair)
    return duplicates, homonyms


def precision_recall(
    candidates: Iterable[Candidate], truth: set[frozenset[str]], minimum: float
) -> tuple[float, float, int, int]:
    """(precision, recall, true positives, predicted) of the candidates scoring >= minimum."""
    predicted = {frozenset({c.a, c.b}) for c in candidates if c.score >= minimum}
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall, hits, len(predicted)

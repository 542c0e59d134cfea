"""« Mes mesures »: the ANS *mesures de santé* (weight, height, BMI, blood pressure, heart rate,
temperature, glucose, pain, steps…) as Observations of the patient's record with LOINC codes and
UCUM units. The list (latest value of each), a measure's page (a server-rendered SVG chart over
time with a data table as its text alternative) and a form to add one, every value checked
against a plausible range with the error tied to its field. Read and written with the patient's
own Access."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..fhir.entries import EntryRequest
from ..web import redirect
from ..web.errors import error_page
from ..web.times import PARIS
from .posted import checked_form
from .reading import engine, own, patient_ref
from .site import SignedIn, page, signed_in

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FORM_PURPOSE = "measure"


@dataclass(frozen=True)
class Part:
    """One value of a measure (blood pressure has two) and its plausible range."""

    name: str  # the form field
    label: str
    code: str  # LOINC
    low: Decimal
    high: Decimal
    decimals: int


@dataclass(frozen=True)
class Measure:
    key: str  # the page's address: /mes-mesures/<key>
    label: str
    code: str  # LOINC of the Observation
    unit: str  # UCUM
    unit_label: str  # what a person reads
    category: str
    parts: tuple[Part, ...]

    @property
    def single(self) -> bool:
        return len(self.parts) == 1


def _one(
    key: str,
    label: str,
    code: str,
    unit: str,
    shown: str,
    low: str,
    high: str,
    decimals: int,
    category: str = "vital-signs",
) -> Measure:
    return Measure(
        key,
        label,
        code,
        unit,
        shown,
        category,
        (Part("valeur", label, code, Decimal(low), Decimal(high), decimals),),
    )


# The set of the ANS « Mesures de santé » guide (fr-documents §4.1). Body weight: 29463-7, the
# FHIR vital-signs code (the guide's list prints 9463-7, see codes' unverified.json).
MEASURES: dict[str, Measure] = {
    m.key: m
    for m in (
        _one("poids", "Poids", "29463-7", "kg", "kg", "0.5", "400", 1),
        _one("taille", "Taille", "8302-2", "cm", "cm", "20", "250", 0),
        _one("imc", "Indice de masse corporelle (IMC)", "39156-5", "kg/m2", "kg/m²", "8", "80", 1),
        _one("tour-de-taille", "Tour de taille", "8280-0", "cm", "cm", "30", "250", 0),
        Measure(
            "tension",
            "Tension artérielle",
            "85354-9",
            "mm[Hg]",
            "mmHg",
            "vital-signs",
            (
                Part(
                    "systolique",
                    "Systolique (le plus haut)",
                    "8480-6",
                    Decimal(50),
                    Decimal(260),
                    0,
                ),
                Part(
                    "diastolique",
                    "Diastolique (le plus bas)",
                    "8462-4",
                    Decimal(30),
                    Decimal(160),
                    0,
                ),
            ),
        ),
        _one(
            "frequence-cardiaque",
            "Fréquence cardiaque",
            "8867-4",
            "/min",
            "battements par minute",
            "20",
            "250",
            0,
        ),
        _one("temperature", "Température", "8310-5", "Cel", "°C", "30", "45", 1),
        _one("glycemie", "Glycémie", "2339-0", "g/L", "g/L", "0.2", "6", 2, "laboratory"),
        _one("douleur", "Douleur", "72514-3", "{score}", "sur 10", "0", "10", 0, "survey"),
        _one(
            "pas", "Pas quotidiens", "41950-7", "/d", "pas par jour", "0", "100000", 0, "activity"
        ),
        _one("perimetre-cranien", "Périmètre crânien", "8287-5", "cm", "cm", "20", "70", 1),
    )
}
BY_CODE = {m.code: m for m in MEASURES.values()}


# -- reading ------------------------------------------------------------------------------------


@dataclass
class Point:
    when: str  # the Observation's effective time, as FHIR gives it
    values: tuple[Decimal, ...]  # one per part


def _quantity(q: Any) -> Decimal | None:
    try:
        return Decimal(str((q or {}).get("value")))
    except (InvalidOperation, TypeError):
        return None


def point(measure: Measure, obs: dict[str, Any]) -> Point | None:
    when = str(
        obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start") or ""
    )
    if measure.single:
        value = _quantity(obs.get("valueQuantity"))
        return Point(when, (value,)) if value is not None and when else None
    values = []
    for part in measure.parts:
        comp = next(
            (
                c
                for c in obs.get("component") or []
                if any(
                    x.get("code") == part.code for x in (c.get("code") or {}).get("coding") or []
                )
            ),
            None,
        )
        value = _quantity((comp or {}).get("valueQuantity"))
        if value is None:
            return None
        values.append(value)
    return Point(when, tuple(values)) if when else None


def measure_of(obs: dict[str, Any]) -> Measure | None:
    for c in (obs.get("code") or {}).get("coding") or []:
        if isinstance(c, dict) and c.get("system") == LOINC and c.get("code") in BY_CODE:
            return BY_CODE[str(c["code"])]
    return None


async def _points(request: Request, who: SignedIn, measure: Measure) -> list[Point]:
    found = await own(
        request,
        who,
        "Observation",
        [("patient", patient_ref(who)), ("code", f"{LOINC}|{measure.code}"), ("_sort", "date")],
        "mes-mesures",
    )
    return [p for p in (point(measure, o) for o in found) if p is not None]


def shown(value: Decimal, part: Part) -> str:
    """A value in French: a decimal comma, the measure's decimals."""
    return f"{value:.{part.decimals}f}".replace(".", ",")


# -- the chart ----------------------------------------------------------------------------------

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 280, 56, 16, 16, 40
COLOURS = ("#000091", "#c9191e")  # DSFR blue France and red Marianne: contrast ≥ 4.5 on white


@dataclass
class Chart:
    """What the SVG template draws: one polyline per part, axis ticks, in SVG coordinates."""

    lines: list[dict[str, Any]]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM


def _date_of(when: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def chart(measure: Measure, points: list[Point]) -> Chart | None:
    if not points:
        return None
    times = [_date_of(p.when).timestamp() for p in points]
    values = [v for p in points for v in p.values]
    low, high = float(min(values)), float(max(values))
    pad = (high - low) * 0.1 or max(abs(high) * 0.1, 1.0)
    low, high = low - pad, high + pad
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * ((t - t0) / span if t1 > t0 else 0.5), 1)

    def y(v: float) -> float:
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - (v - low) / (high - low)), 1)

    lines = []
    for i, part in enumerate(measure.parts):
        dots = [(x(t), y(float(p.values[i]))) for t, p in zip(times, points, strict=True)]
        lines.append(
            {
                "label": part.label,
                "colour": COLOURS[i % len(COLOURS)],
                "points": " ".join(f"{a},{b}" for a, b in dots),
                "dots": dots,
            }
        )
    part = measure.parts[0]
    y_ticks = [
        (y(v), shown(Decimal(str(round(v, part.decimals))), part))
        for v in (low + (high - low) * k / 4 for k in range(5))
    ]
    first, last = _date_of(points[0].when), _date_of(points[-1].when)
    x_ticks = [(x(times[0]), _short(first))]
    if t1 > t0:
        x_ticks.append((x(times[-1]), _short(last)))
    return Chart(lines, y_ticks, x_ticks)


def _short(moment: dt.datetime) -> str:
    return moment.astimezone(PARIS).strftime("%d/%m/%Y")


# -- adding -------------------------------------------------------------------------------------


@dataclass
class Entry:
    values: dict[str, str]
    errors: dict[str, str]
    observation: dict[str, Any] | None = None


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip().replace(",", ".").replace(" ", "").replace("\u202f", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _moment(day: str, hour: str, now: dt.datetime) -> tuple[dt.datetime | None, str | None]:
    """The measure's time (Paris), or which field is wrong: ``date`` or ``heure``."""
    try:
        d = (
            dt.date.fromisoformat(day.strip())
            if "-" in day
            else dt.datetime.strptime(day.strip(), "%d/%m/%Y").date()
        )
    except ValueError:
        return None, "date"
    try:
        t = dt.time.fromisoformat(hour.strip()) if hour.strip() else dt.time(12, 0)
    except ValueError:
        return None, "heure"
    moment = dt.datetime.combine(d, t, tzinfo=PARIS)
    if moment > now + dt.timedelta(minutes=5):
        return None, "date-futur"
    if d.year < 1900:
        return None, "date"
    return moment, None


def read_entry(measure: Measure, form: dict[str, str], patient: str, now: dt.datetime) -> Entry:
    """The form's values checked; with no error, the Observation to create."""
    values = {k: form.get(k, "") for k in ("date", "heure", *(p.name for p in measure.parts))}
    errors: dict[str, str] = {}
    numbers: list[Decimal] = []
    for part in measure.parts:
        text = values[part.name]
        number = _decimal(text) if text.strip() else None
        if not text.strip():
            errors[part.name] = f"Saisissez la valeur ({measure.unit_label})."
        elif number is None:
            errors[part.name] = (
                "Saisissez un nombre, par exemple " + shown(part.high / 2, part) + "."
            )
        elif not part.low <= number <= part.high:
            errors[part.name] = (
                f"Saisissez une valeur entre {shown(part.low, part)} et "
                f"{shown(part.high, part)} {measure.unit_label}."
            )
        else:
            numbers.append(number.quantize(Decimal(1).scaleb(-part.decimals), ROUND_HALF_UP))
    moment, wrong = _moment(values["date"], values["heure"], now)
    if wrong == "heure":
        errors["heure"] = "Saisissez une heure au format hh:mm, par exemple 08:30."
    elif wrong == "date-futur":
        errors["date"] = "La date ne peut pas être dans le futur."
    elif wrong:
        errors["date"] = "Saisissez une date au format jj/mm/aaaa, par exemple 31/12/2025."
    if errors or moment is None:
        return Entry(values, errors)
    return Entry(values, errors, observation(measure, numbers, moment, patient))


def _quantity_of(value: Decimal, measure: Measure) -> dict[str, Any]:
    return {"value": value, "unit": measure.unit_label, "system": UCUM, "code": measure.unit}


def observation(
    measure: Measure, numbers: list[Decimal], moment: dt.datetime, patient: str
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": measure.category}]}],
        "code": {
            "coding": [{"system": LOINC, "code": measure.code, "display": measure.label}],
            "text": measure.label,
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": moment.isoformat(timespec="seconds"),
        "performer": [{"reference": f"Patient/{patient}"}],  # entered by the patient
    }
    if measure.single:
        obs["valueQuantity"] = _quantity_of(numbers[0], measure)
    else:
        obs["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": part.code, "display": part.label}]},
                "valueQuantity": _quantity_of(n, measure),
            }
            for part, n in zip(measure.parts, numbers, strict=True)
        ]
    return obs


# -- the pages ----------------------------------------------------------------------------------


async def list_measures(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    found = await own(
        request,
        who,
        "Observation",
        [("patient", patient_ref(who)), ("_sort", "-date")],
        "mes-mesures",
        limit=500,
    )
    latest: dict[str, Point] = {}
    counts: dict[str, int] = {}
    for obs in found:
        measure = measure_of(obs)
        p = point(measure, obs) if measure else None
        if measure and p:
            latest.setdefault(measure.key, p)
            counts[measure.key] = counts.get(measure.key, 0) + 1
    rows = [
        {
            "measure": m,
            "latest": latest.get(m.key),
            "count": counts.get(m.key, 0),
            "text": " / ".join(
                shown(v, part) for v, part in zip(latest[m.key].values, m.parts, strict=True)
            )
            if m.key in latest
            else "",
        }
        for m in MEASURES.values()
    ]
    return page(
        request, "mesures.html", "Mes mesures", rows=rows, added=request.query_params.get("ajout")
    )


def _measure(request: Request) -> Measure | None:
    return MEASURES.get(request.path_params["key"])


async def show_measure(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    measure = _measure(request)
    if measure is None:
        return error_page(404, "Cette mesure n'existe pas.")
    points = await _points(request, who, measure)
    table = [
        {
            "when": p.when,
            "values": [shown(v, part) for v, part in zip(p.values, measure.parts, strict=True)],
        }
        for p in reversed(points)
    ]
    return page(
        request,
        "mesure.html",
        measure.label,
        measure=measure,
        chart=chart(measure, points),
        table=table,
        first=points[0].when if points else None,
        last=points[-1].when if points else None,
    )


def _form_page(
    request: Request, who: SignedIn, measure: Measure, entry: Entry, status: int
) -> Response:
    return page(
        request,
        "mesure_ajout.html",
        f"Ajouter une mesure : {measure.label.lower()}",
        status=status,
        measure=measure,
        entry=entry,
        csrf=who.session.form_token(FORM_PURPOSE),
    )


async def add_measure(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    measure = _measure(request)
    if measure is None:
        return error_page(404, "Cette mesure n'existe pas.")
    if request.method == "GET":
        today = dt.datetime.now(PARIS)
        values = {"date": today.date().isoformat(), "heure": today.strftime("%H:%M")}
        return _form_page(request, who, measure, Entry(values, {}), 200)
    form = await checked_form(request, who, FORM_PURPOSE)
    if isinstance(form, Response):
        return form
    entry = read_entry(measure, form, who.session.patient or "", dt.datetime.now(PARIS))
    if entry.observation is None:
        return _form_page(request, who, measure, entry, 400)
    await engine(request).transaction(
        [EntryRequest("POST", "Observation", resource=entry.observation, where="Observation")],
        who.access,
    )
    return redirect(f"/mes-mesures/{measure.key}?ajout=1")


ROUTES: list[BaseRoute] = [
    Route("/mes-mesures", list_measures, methods=["GET"]),
    Route("/mes-mesures/{key}", show_measure, methods=["GET"]),
    Route("/mes-mesures/{key}/ajouter", add_measure, methods=["GET", "POST"]),
]

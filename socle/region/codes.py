"""Reference data of the generator, read once from the small files in `data/`."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


def _text(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


@cache
def nomenclatures() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_text("nomenclatures.json"))
    return data


@cache
def unverified() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_text("unverified.json"))
    return data


@cache
def establishments() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_text("establishments.json"))
    return data


@dataclass(frozen=True, slots=True)
class Commune:
    insee: str
    name: str
    postal_codes: tuple[str, ...]
    population: int


@dataclass(frozen=True, slots=True)
class Place:
    code: str
    name: str
    kind: str  # commune | country
    weight: int


@cache
def communes() -> tuple[Commune, ...]:
    rows = csv.DictReader(_text("communes.csv").splitlines())
    return tuple(
        Commune(r["insee"], r["name"], tuple(r["postal_codes"].split("|")), int(r["population"]))
        for r in rows
    )


@cache
def birthplaces() -> tuple[Place, ...]:
    """Places of birth outside the region (mainland communes and countries, code 99xxx)."""
    rows = csv.DictReader(_text("birthplaces.csv").splitlines())
    return tuple(Place(r["code"], r["name"], r["kind"], int(r["weight"])) for r in rows)


@cache
def family_names() -> tuple[tuple[str, ...], tuple[int, ...]]:
    names: list[str] = []
    weights: list[int] = []
    for line in _text("family_names.txt").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, weight = line.partition("|")
        names.append(name)
        weights.append(int(weight or 1))
    return tuple(names), tuple(weights)


@cache
def given_names(sex: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    rows = [r for r in csv.DictReader(_text("given_names.csv").splitlines()) if r["sex"] == sex]
    return tuple(r["name"] for r in rows), tuple(int(r["weight"]) for r in rows)


def system(key: str) -> str:
    value: str = nomenclatures()["systems"][key]
    return value


def coding(system_key: str, code: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system(system_key), "code": code}
    if display is not None:
        out["display"] = display
    return out


def format_system(format_code: str) -> str:
    for prefix, key in unverified()["format_code_systems"].items():
        if format_code.startswith(prefix):
            return system(key)
    return system("a06")

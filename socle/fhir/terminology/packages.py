"""Reading terminology resources from a file: a FHIR package (`.tgz`, npm layout), a JSON
Bundle or resource, or NDJSON. Only CodeSystems, ValueSets and ConceptMaps are kept."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import KINDS


@dataclass
class Package:
    name: str  # the origin recorded for its rows: name#version for a FHIR package
    resources: list[dict[str, Any]] = field(default_factory=list)


class UnreadablePackage(ValueError):
    pass


def _kept(items: Any) -> Iterator[dict[str, Any]]:
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("resourceType") == "Bundle":
            yield from _kept(e.get("resource") for e in item.get("entry") or [])
        elif item.get("resourceType") in KINDS:
            yield item


def _json(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UnreadablePackage(f"{where}: not JSON ({exc})") from None


def read_package(path: Path) -> Package:
    """The terminology resources of ``path``; UnreadablePackage when it cannot be read."""
    if not path.is_file():
        raise UnreadablePackage(f"{path}: no such file")
    if path.name.endswith((".tgz", ".tar.gz")):
        return _read_tgz(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ndjson":
        items = [
            _json(line, f"{path} line {i + 1}")
            for i, line in enumerate(text.splitlines())
            if line.strip()
        ]
        return Package(path.name, list(_kept(items)))
    return Package(path.name, list(_kept([_json(text, str(path))])))


def _read_tgz(path: Path) -> Package:
    name = path.name
    resources: list[dict[str, Any]] = []
    try:
        archive = tarfile.open(path, "r:gz")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise UnreadablePackage(f"{path}: not a FHIR package ({exc})") from None
    with archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            data = _json(handle.read(), f"{path}:{member.name}")
            if member.name.rsplit("/", 1)[-1] == "package.json" and member.name.count("/") <= 1:
                if isinstance(data, dict) and data.get("name"):
                    name = f"{data['name']}#{data.get('version', '')}"
                continue
            resources.extend(_kept([data]))
    return Package(name, resources)

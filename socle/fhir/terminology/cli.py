"""`socle terminology load FILE`: a file's terminology resources loaded as a package, once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg

from ...config import Settings
from ...database import prepare, resolve_url
from .packages import read_package
from .startup import load_package


async def load_file(path: Path, data_dir: Path | None) -> dict[str, Any]:
    """What was loaded from ``path`` (ValueError when it cannot be read or holds nothing)."""
    package = read_package(path)
    if not package.resources:
        raise ValueError(f"{path}: no CodeSystem, ValueSet or ConceptMap in it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    settings = Settings.from_env(data_dir)
    url = resolve_url(settings)
    prepare(url)
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        report = await load_package(conn, package.name, digest, package.resources)
    out: dict[str, Any] = {"package": package.name, "resources": len(package.resources)}
    if report is None:
        out["unchanged"] = True
    else:
        out.update(report.__dict__)
    return out

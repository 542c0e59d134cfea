"""`socle terminology load FILE`: a file's terminology resources loaded as a package, once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from .packages import read_package
from .startup import load_package


async def load_file(conn: AsyncConnection, path: Path) -> dict[str, Any]:
    """What was loaded from ``path``, in one transaction (ValueError when it cannot be read or
    holds nothing)."""
    package = read_package(path)
    if not package.resources:
        raise ValueError(f"{path}: no CodeSystem, ValueSet or ConceptMap in it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    async with conn.transaction():
        report = await load_package(conn, package.name, digest, package.resources)
    out: dict[str, Any] = {"package": package.name, "resources": len(package.resources)}
    if report is None:
        out["unchanged"] = True
    else:
        out.update(report.__dict__)
    return out

"""Front-end and definition packages installed from npm by `scripts/setup.sh`.

A package is found the way Node resolves one: the nearest ``node_modules/<name>`` in a folder
holding the installed ``socle`` package (the project's virtual environment lives in the project)
or the working directory, checked by the name in its ``package.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def installed_package(name: str, starts: tuple[Path, ...] | None = None) -> Path | None:
    """The folder of the npm package `name` above one of `starts` (by default Socle's package and
    the working directory), or None when it is not installed there."""
    for start in starts or (_HERE, Path.cwd()):
        for folder in (start, *start.parents):
            candidate = folder / "node_modules" / name
            manifest = candidate / "package.json"
            if manifest.is_file() and json.loads(manifest.read_text("utf-8")).get("name") == name:
                return candidate
    return None

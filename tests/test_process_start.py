"""What every process start pays for: the server and the CLI import only what serving needs.

Each `socle serve`, `socle worker` and CLI run imports `socle.server` or `socle.cli`; a library
only one feature uses (the generator's PDFs, the rest-hooks' HTTP client) is imported where that
feature runs, not at start (docs/performance.md, "Process start")."""

from __future__ import annotations

import subprocess
import sys

import pytest

# imported where used: fpdf2 by the region generator's PDFs, aiohttp by the first rest-hook
LATE = ("fpdf", "aiohttp")


@pytest.mark.parametrize("entry", ["socle.server", "socle.cli"])
def test_starting_a_process_does_not_import_what_one_feature_uses(entry: str) -> None:
    probe = f"import sys, {entry}; print(' '.join(m for m in {LATE!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == []

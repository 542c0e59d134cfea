"""Every benchmark script still starts: `--help` parses its options after importing what it
uses of Socle (a renamed module or constant breaks a script no test runs otherwise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
# modules the scripts import, not scripts themselves
NOT_SCRIPTS = {"__init__.py", "floor_app.py", "http_client.py", "settle.py"}
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in NOT_SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_script_starts(script: str) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and scripts
        [sys.executable, str(BENCH / script), "--help"],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower(), done.stdout[:500]

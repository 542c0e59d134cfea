"""docs/record.md's examples run as documented: docs/examples/record.py fills the request files
with ids of the region the server holds, sends each one and checks the answer; the filled files
are what the page tells a vendor to send with curl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from rich.console import Console

from socle.region.demo import load_region
from socle.testing import auth_headers, token_for

ROOT = Path(__file__).resolve().parents[2]


def _script(server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter, our script
        [
            sys.executable,
            str(ROOT / "docs/examples/record.py"),
            "--fhir",
            server.fhir,
            "--data-dir",
            str(server.database.data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_record_examples_run_as_documented(server, tmp_path):
    load_region(server.fhir, 12, 77, Console(quiet=True), token_for(server))
    done = _script(server)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("ITI-65", "ITI-105", "ITI-67 by INS", "ITI-66", "ITI-68 bytes", "DELETE"):
        assert step in done.stdout, done.stdout
    # --fill-only, then the page's curl: POST the filled Bundle with the author's token
    filled = _script(server, "--fill-only", str(tmp_path))
    assert filled.returncode == 0, filled.stdout + filled.stderr
    rpps = filled.stdout.split("RPPS=")[1].split()[0]
    for name in ("iti65-provide-document-bundle.json", "iti105-simplified-publish.json"):
        text = (tmp_path / name).read_text()
        assert "{{" not in text and json.loads(text)["resourceType"]
    r = httpx.post(
        server.fhir,
        content=(tmp_path / "iti65-provide-document-bundle.json").read_bytes(),
        headers={
            "Content-Type": "application/fhir+json",
            **auth_headers(server, f"practitioner:{rpps}"),
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201"] * 3

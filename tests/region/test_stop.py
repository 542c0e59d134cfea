"""SIGINT and SIGTERM to `socle demo` or `socle serve` end everything they started: the server,
its workers and the embedded PostgreSQL (no stray postmaster, no pid left in pgserver's list of
holders)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from socle.testing import ROOT, free_port, fresh_database, start_server

EMBEDDED = not os.environ.get("DATABASE_URL")


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _postmaster(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _assert_all_gone(data_dir: Path, processes: list[psutil.Process]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(p.is_running() for p in processes):
        time.sleep(0.2)
    left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running: {[(p.pid, p.cmdline()) for p in left]}"
    if EMBEDDED:
        pid = _postmaster(data_dir)
        assert pid is None or not psutil.pid_exists(pid), "the embedded PostgreSQL still runs"
        holders = data_dir / "pg" / ".handle_pids.json"
        assert json.loads(holders.read_text()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_socle_demo_stops_everything(sig):
    with fresh_database(os.environ.get("DATABASE_URL")) as db:
        data_dir = db.data_dir / "demo"
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        # its own SMTP port: another test run on this host may be running a demo too
        env["SOCLE_SMTP_PORT"] = str(free_port())
        if db.url:
            env["DATABASE_URL"] = db.url
        port = free_port()
        log = db.data_dir / "demo.log"
        demo = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "socle.cli", "demo", "--port", str(port)]
            + ["--patients", "2", "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            # as a shell starts a background job: SIGINT ignored, which Python would keep
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            deadline = time.monotonic() + 240
            while "Press Ctrl+C" not in log.read_text(errors="replace"):
                assert demo.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            started = _descendants(demo.pid)
            assert any("serve" in p.cmdline() for p in started)
            if EMBEDDED:
                postmaster = _postmaster(data_dir)
                assert postmaster and psutil.pid_exists(postmaster)
                started.append(psutil.Process(postmaster))
            demo.send_signal(sig)
            assert demo.wait(90) == 0, log.read_text()[-3000:]
            _assert_all_gone(data_dir, started)
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert "Socle stopped." in log.read_text()
        finally:
            if demo.poll() is None:
                demo.kill()


def test_signals_to_socle_serve_stop_its_workers_and_database():
    with fresh_database(os.environ.get("DATABASE_URL")) as db:
        for sig in (signal.SIGINT, signal.SIGTERM):
            server = start_server(db, workers=2)
            processes = [psutil.Process(server.process.pid), *_descendants(server.process.pid)]
            if EMBEDDED:
                processes.append(psutil.Process(_postmaster(db.data_dir) or 0))
            server.process.send_signal(sig)
            assert server.process.wait(90) == 0, server.log.read_text()[-3000:]
            _assert_all_gone(db.data_dir, processes)
            if EMBEDDED:
                # A holder killed without releasing (SIGKILL, crash) is forgotten at the next
                # start, instead of keeping the database up for ever.
                dead = subprocess.Popen(["true"])  # noqa: S607 - a pid that no longer exists
                dead.wait()
                holders = db.data_dir / "pg" / ".handle_pids.json"
                holders.write_text(json.dumps([dead.pid]))

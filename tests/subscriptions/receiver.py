"""A local rest-hook receiver for the subscription tests: it keeps what each path was sent,
refuses on `/refuse/…`, and holds the first event notification sent to `/hold/…` until the test
lets it go (to kill the worker sending it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from socle.testing import ROOT, ServerProcess, free_port


def kind_of(bundle: dict[str, Any]) -> str:
    status = bundle["entry"][0]["resource"]
    return next(p["valueCode"] for p in status["parameter"] if p["name"] == "type")


def event_numbers(bundle: dict[str, Any]) -> list[int]:
    status = bundle["entry"][0]["resource"]
    return [
        int(part["valueString"])
        for p in status["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]


class Receiver:
    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = defaultdict(list)
        self.holding = threading.Event()  # a held request is in flight
        self.release = threading.Event()
        self.port = free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.startswith("/refuse"):
                    self.send_response(503)
                    self.end_headers()
                    return
                hold = self.path.startswith("/hold") and kind_of(body) == "event-notification"
                if hold and not receiver.holding.is_set():
                    receiver.holding.set()
                    receiver.release.wait(60)
                    return  # its sender was killed meanwhile: nobody reads an answer
                receiver.received[self.path].append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bundles(self, path: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [b for _, b in self.received[path] if kind is None or kind_of(b) == kind]

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()


def until(what: Callable[[], Any], limit: float = 60) -> Any:
    """Poll until `what()` is true (a bound, not a measure)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not reached")


class Worker:
    """A `socle worker` process on the server's database, with the tests' environment."""

    def __init__(self, server: ServerProcess, name: str, env: dict[str, str]) -> None:
        assert server.database.url is not None
        full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        full.update(env, DATABASE_URL=server.database.url)
        full["SOCLE_DATA_DIR"] = str(server.database.data_dir)
        self.log = Path(server.database.data_dir) / f"worker-{name}.log"
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            [sys.executable, "-m", "socle.cli", "worker"],
            cwd=ROOT,
            env=full,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        until(lambda: "running jobs" in self.log.read_text() or self._exited(), 90)

    def _exited(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

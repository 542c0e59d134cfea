"""A local rest-hook receiver for the subscription tests: it keeps what each path was sent,
refuses on `/refuse/…` (on `/fail/…` all but the handshake), and holds the first event
notification sent to `/hold/…` until the test lets it go (to kill the worker sending it)."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from socle.testing import free_port


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
                failing = self.path.startswith("/fail") and kind_of(body) != "handshake"
                if self.path.startswith("/refuse") or failing:
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

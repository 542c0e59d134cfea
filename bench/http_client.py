"""A lean HTTP/1.1 keep-alive client for load generation (asyncio streams, no framework).

The benchmark must spend its CPU on the server, not on the client: this client sends
pre-encoded requests and parses only the status line, headers and Content-Length body.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field


@dataclass
class Connection:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def with_headers(self, headers: dict[str, str] | None) -> Connection:
        self.default_headers = dict(headers or {})
        return self

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body:
            head.append("Content-Type: application/fhir+json")
            head.append(f"Content-Length: {len(body)}")
        for k, v in {**getattr(self, "default_headers", {}), **(headers or {})}.items():
            head.append(f"{k}: {v}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        resp_headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            resp_headers[k.strip().lower()] = v.strip()
        length = int(resp_headers.get("content-length", "0"))
        data = await self.reader.readexactly(length) if length else b""
        return status, resp_headers, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    items: int = 0  # resources written/read (a bundle counts its entries)
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self, elapsed: float) -> dict[str, float | int | dict[int, int]]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            if not lat:
                return 0.0
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2)

        return {
            "requests": len(lat),
            "items": self.items,
            "seconds": round(elapsed, 2),
            "requests_per_s": round(len(lat) / elapsed, 1) if elapsed else 0,
            "items_per_s": round(self.items / elapsed, 1) if elapsed else 0,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "errors": self.errors,
            "statuses": self.statuses,
        }


async def run_load(
    host: str,
    port: int,
    clients: int,
    make_request,
    *,
    duration: float | None,
    total: int | None = None,
    expect: tuple[int, ...] = (200, 201),
    headers: dict[str, str] | None = None,
    rate: float | None = None,
) -> dict:
    """Run `clients` concurrent loops; each asks `make_request(i)` for (method, path, body,
    headers, items) until `duration` seconds pass or `total` requests were sent. With `rate`,
    the requests of all loops together start at most `rate` per second (open loop paced)."""
    stats = Stats()
    counter = iter(range(total)) if total is not None else None
    start = time.perf_counter()
    deadline = start + duration if duration else None
    ticks = itertools.count()

    async def loop(n: int) -> None:
        conn = Connection(host, port).with_headers(headers)
        i = n
        while True:
            if counter is not None:
                i = next(counter, None)
                if i is None:
                    break
            elif deadline and time.perf_counter() >= deadline:
                break
            if rate:
                due = start + next(ticks) / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            method, path, body, extra, items = make_request(i)
            t0 = time.perf_counter()
            try:
                status, _, _ = await conn.request(method, path, body, extra)
            except (ConnectionError, asyncio.IncompleteReadError):
                stats.errors += 1
                conn = Connection(host, port).with_headers(headers)
                continue
            stats.latencies.append(time.perf_counter() - t0)
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status in expect:
                stats.items += items
            else:
                stats.errors += 1
            if counter is None:
                i += clients
        await conn.close()

    await asyncio.gather(*(loop(n) for n in range(clients)))
    return stats.summary(time.perf_counter() - start)

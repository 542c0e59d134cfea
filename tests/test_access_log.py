"""The access log (socle/server.py): one line per request, written together rather than one
system call each, every line out by the end of the lifespan."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from socle.server import AccessLog


class _CountedStream(io.StringIO):
    """The log's stream, counting the writes that reach it (each one a system call on an
    unbuffered stdout)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _lines(stream: _CountedStream) -> list[dict[str, object]]:
    return [json.loads(x) for x in stream.getvalue().splitlines()]


async def _ok(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _get(log: AccessLog, paths: list[str]) -> None:
    """GET the paths through the log, together; each answered 200."""
    transport = httpx.ASGITransport(app=log)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answers = await asyncio.gather(*(c.get(path) for path in paths))
    assert all(a.status_code == 200 for a in answers)


class _HeldLog(AccessLog):
    """A flush delay never due during a test: what is held stays held however slow the host."""

    FLUSH_S = 3600.0


def test_the_lines_of_many_requests_leave_in_few_writes() -> None:
    stream = _CountedStream()
    log = _HeldLog(Starlette(routes=[Route("/r/{n}", _ok)]), stream)

    async def run() -> None:
        for _ in range(4):
            await _get(log, [f"/r/{i}?secret=1" for i in range(10)])
        assert stream.writes == 0  # held: nothing written yet
        assert log._flushing is not None  # the flush is due, once, for all of them
        log.flush()

    asyncio.run(run())
    lines = _lines(stream)
    assert sorted(line["path"] for line in lines) == sorted([f"/r/{i}" for i in range(10)] * 4)
    assert all(line["status"] == 200 and line["method"] == "GET" for line in lines)
    assert stream.writes == 1, stream.writes


def test_held_lines_go_out_by_themselves_after_the_delay() -> None:
    stream = _CountedStream()
    log = AccessLog(Starlette(routes=[Route("/r/{n}", _ok)]), stream)

    async def run() -> None:
        await _get(log, [f"/r/{i}" for i in range(10)])
        # no shutdown, no further request: the timer alone writes them (a generous bound, the
        # delay is 0.1 s)
        for _ in range(200):
            if len(_lines(stream)) == 10:
                return
            await asyncio.sleep(AccessLog.FLUSH_S)

    asyncio.run(run())
    assert sorted(line["path"] for line in _lines(stream)) == sorted(f"/r/{i}" for i in range(10))
    assert log._flushing is None


def test_the_end_of_the_lifespan_writes_what_is_held() -> None:
    stream = _CountedStream()
    log = AccessLog(Starlette(routes=[Route("/r", _ok)]), stream)

    async def run() -> None:
        await _get(log, ["/r"])
        # the server shuts down at once: its lifespan ends
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict[str, str]:
            return next(messages)

        async def send(message: dict[str, str]) -> None:
            pass

        await log({"type": "lifespan", "state": {}}, receive, send)  # type: ignore[arg-type]
        assert [line["path"] for line in _lines(stream)] == ["/r"]

    asyncio.run(run())

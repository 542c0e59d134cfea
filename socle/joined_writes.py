"""One write per response: uvicorn's HTTP protocol, with the writes of one event-loop step joined.

uvicorn writes a response's status line and headers as soon as the application sends
``http.response.start``, then its body: two ``send`` system calls and two TCP segments for every
small answer (a read by id), each waking the client up. On a virtual machine, where a system
call and a wake-up cost more than the Python around them, those writes were a sixth of a read's
CPU time (py-spy on ``bench/cpu_per_request.py``). Here the transport holds the small writes made
during one step of the event loop and hands them over in one write at the end of that step
(``call_soon``): the same bytes in the same order, one system call.

Only small writes are held (:data:`HOLD_LIMIT`): a large or streamed body is written at once, so
the transport's flow control (pausing a producer whose client reads slowly) works as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD_LIMIT = 64 * 1024  # bytes held at most until the end of the loop step


class _JoinedWrites:
    """A transport that defers small writes to the end of the current loop step, joined."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._size + len(data) > HOLD_LIMIT:
            self._held.append(data)
            self._flush()
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)
        self._size += len(data)

    def _flush(self) -> None:
        held, self._held, self._size = self._held, [], 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, chunks: Any) -> None:
        for data in chunks:
            self.write(data)

    def close(self) -> None:
        self._flush()  # what the response wrote goes out before the connection closes
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()  # a WebSocket's last frame, held, goes out before the EOF
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses leave in one write each."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _JoinedWrites(transport, self.loop)  # type: ignore[assignment]

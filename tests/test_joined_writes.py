"""The joined-writes transport (socle/joined_writes.py) over a real socket: every byte arrives,
in order, whether held to the end of the loop step, written at once (large), or flushed by a
close."""

from __future__ import annotations

import asyncio
import socket

from socle.joined_writes import HOLD_LIMIT, _JoinedWrites


async def _through(writes: list[bytes], then_close: bool) -> tuple[bytes, int]:
    """What the peer receives, and how many writes reached the real transport."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    real_writes = 0
    real_write = transport.write

    def counted(data: bytes) -> None:  # the real transport's write, counted
        nonlocal real_writes
        real_writes += 1
        real_write(data)

    transport.write = counted  # type: ignore[method-assign]
    joined = _JoinedWrites(transport, loop)  # type: ignore[arg-type]
    for data in writes:
        joined.write(data)
    if then_close:
        joined.close()
    else:
        await asyncio.sleep(0)  # the end of the loop step
        await asyncio.sleep(0)
        joined.close()
    theirs.setblocking(False)
    received = b""
    while True:
        chunk = await loop.sock_recv(theirs, 65536)
        if not chunk:
            break
        received += chunk
    theirs.close()
    return received, real_writes


def test_the_writes_of_one_step_leave_joined_in_order() -> None:
    head, body = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hello"
    received, writes = asyncio.run(_through([head, body], then_close=False))
    assert received == head + body
    assert writes == 1


def test_a_close_sends_what_is_held_first() -> None:
    received, _ = asyncio.run(_through([b"a", b"b", b"c"], then_close=True))
    assert received == b"abc"


def test_a_large_write_goes_at_once_after_what_is_held() -> None:
    big = bytes(range(256)) * (HOLD_LIMIT // 256 + 10)
    received, writes = asyncio.run(_through([b"head", big, b"tail"], then_close=False))
    assert received == b"head" + big + b"tail"
    assert writes == 2  # head and the large body together; the tail at the end of the step

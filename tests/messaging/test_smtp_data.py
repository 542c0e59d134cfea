"""DATA read in chunks (socle/messaging/smtp_data.py) against aiosmtpd's own line-by-line
reading, over real TCP with smtplib and raw sockets: whatever the message — dots at the start
of lines, empty lines, lines across the 64 KiB reads, an empty message —, both servers keep the
same bytes; too much data and too long a line get the same answers; a command pipelined right
after the data is answered, in order."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.messaging.smtp_data import ChunkedData
from socle.testing import free_port

LIMIT = 300_000


class Keep:
    def __init__(self) -> None:
        self.last: bytes | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802, ANN001
        self.last = envelope.original_content
        return "250 OK"


class Server(Controller):
    def __init__(self, cls: type[SMTP]) -> None:
        self.cls = cls
        self.keep = Keep()
        super().__init__(self.keep, hostname="127.0.0.1", port=free_port())

    def factory(self) -> SMTP:
        return self.cls(self.handler, data_size_limit=LIMIT)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    pair = Server(SMTP), Server(ChunkedData)
    for s in pair:
        s.start()
    try:
        yield pair
    finally:
        for s in pair:
            s.stop()


def _send(server: Server, body: bytes) -> tuple[int, bytes | None]:
    server.keep.last = None
    with smtplib.SMTP(server.hostname, server.port, timeout=30) as client:
        client.ehlo()
        client.esmtp_features.pop("size", None)  # the size is found at the end of DATA, then
        try:
            client.sendmail("a@example.org", ["b@example.org"], body)
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code, None
    return 250, server.keep.last


_line = st.one_of(
    st.text(alphabet=".aZ09 =+/-", max_size=120),
    st.sampled_from(["", ".", "..", ". x", ".\t", "=2E", "x" * 997, "." + "y" * 996]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_line, max_size=400), filler=st.integers(0, 3))
def test_both_readers_keep_the_same_bytes(
    servers: tuple[Server, Server], lines: list[str], filler: int
) -> None:
    # filler: a block of lines that puts the message's end across the 64 KiB reads
    body = "\r\n".join([*lines, *(["z" * 75] * (filler * 870))]).encode() + b"\r\n"
    line_by_line, chunked = (_send(s, body) for s in servers)
    assert chunked == line_by_line


@pytest.mark.parametrize(
    "body",
    [b"", b".\r\n", b"x" * 2000 + b"\r\n", b"y\r\n" * (LIMIT // 3 + 10), b"..\r\n.x\r\n"],
    ids=["empty", "a-dot", "line-too-long", "too-much", "dots"],
)
def test_both_readers_answer_the_same(servers: tuple[Server, Server], body: bytes) -> None:
    line_by_line, chunked = (_send(s, body) for s in servers)
    assert chunked == line_by_line


def test_a_command_pipelined_after_the_data_is_answered_in_order(
    servers: tuple[Server, Server],
) -> None:
    _, chunked = servers
    with socket.create_connection((chunked.hostname, chunked.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # 220
        sock.sendall(b"EHLO x\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [reader.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        sock.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        answers = [reader.readline()[:3] for _ in range(4)]
    assert answers == [b"250", b"250", b"250", b"221"]
    assert chunked.keep.last == b"Subject: x\r\n\r\nbody\r\n"

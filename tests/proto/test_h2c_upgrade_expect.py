"""The HTTP/1.1 core's decision on an h2c Upgrade (RFC 7540 §3.2, RFC 9110 §7.8 and §10.1.1), byte
level, no event loop: which requests are handed to HTTP/2 (read state UPGRADED, the rest of the
bytes kept for it) and which are declined and parsed on as HTTP/1.1. Each case is fed whole, one
byte at a time, and with a pipelined request after it."""

from __future__ import annotations

import pytest

from wherry.proto.events import Data, EndOfMessage, Request
from wherry.proto.http1 import UPGRADED, DefaultHeaders, H1Connection, H1Limits

HEAD = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n"
)
NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


def feed(data: bytes, step: int | None) -> tuple[H1Connection, list[object]]:
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0, frozenset((b"h2c",)))
    events: list[object] = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        if conn.read_state == UPGRADED:
            conn.trailing_data += piece  # what the driver would hand to HTTP/2
        else:
            events.extend(conn.receive_data(piece, 0.0))
    return conn, events


STEPS = [None, 1]


@pytest.mark.parametrize("step", STEPS, ids=["whole", "byte_by_byte"])
def test_h2c_with_a_body_behind_expect_100_continue_is_declined(step: int | None) -> None:
    """RFC 9110 §10.1.1, §7.8: a client that sent Expect: 100-continue waits for an HTTP/1.1 100
    before its body, and after a 101 nothing HTTP/1.1 can be sent, so the upgrade is declined: the
    request is HTTP/1.1, expects its 100, and its body (then the next request) is parsed as such."""
    wire = HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + NEXT
    conn, events = feed(wire, step)
    assert conn.read_state != UPGRADED
    requests = [e for e in events if isinstance(e, Request)]
    assert [(r.raw_path, r.upgrade, r.expect_continue) for r in requests] == [
        (b"/up", None, True),
        (b"/next", None, False),
    ]
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"hello"
    assert sum(isinstance(e, EndOfMessage) for e in events) == 2


@pytest.mark.parametrize("step", STEPS, ids=["whole", "byte_by_byte"])
def test_h2c_with_a_body_and_no_expect_is_upgraded(step: int | None) -> None:
    """RFC 7540 §3.2: without Expect the client sends its body at once, in HTTP/1.1 framing, then
    waits for the 101: the core stops after the head and keeps everything after it for HTTP/2."""
    wire = HEAD + b"Content-Length: 5\r\n\r\nhello" + b"PRI * HTTP/2.0"
    conn, events = feed(wire, step)
    assert conn.read_state == UPGRADED
    requests = [e for e in events if isinstance(e, Request)]
    assert len(requests) == 1 and requests[0].upgrade == b"h2c"
    assert conn.trailing_data == b"hello" + b"PRI * HTTP/2.0"


@pytest.mark.parametrize("step", STEPS, ids=["whole", "byte_by_byte"])
def test_h2c_behind_expect_with_no_body_is_upgraded(step: int | None) -> None:
    """Expect: 100-continue on a request with no body holds nothing back (RFC 9110 §10.1.1): the
    upgrade goes ahead."""
    wire = HEAD + b"Expect: 100-continue\r\n\r\n" + b"PRI * HTTP/2.0"
    conn, events = feed(wire, step)
    assert conn.read_state == UPGRADED
    assert [e.upgrade for e in events if isinstance(e, Request)] == [b"h2c"]

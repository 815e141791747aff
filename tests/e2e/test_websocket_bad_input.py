"""Bad WebSocket input as raw bytes over real sockets: each broken frame ends the session with its
close code (RFC 6455 §7.4.1) and each broken handshake gets its HTTP status, and nothing of either
reaches the application (ARCHITECTURE property 5)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio.lowlevel
import pytest

from tests.conftest import RunningServer, read_response
from tests.wsframes import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    TEXT,
    close_code,
    close_frame,
    frame,
    handshake,
    open_websocket,
    parse_frames,
    read_until_closed,
)

Serve = Callable[..., RunningServer]


class Collector:
    """Accepts, then records every message until the disconnect."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.called = threading.Event()
        self.done = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        self.called.set()
        try:
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                await anyio.lowlevel.checkpoint()
        finally:
            self.done.set()


BAD_FRAMES = [
    ("frame over --ws-max-size", frame(BINARY, b"x" * 1025), 1009),
    ("declared length over the limit", frame(BINARY, b"", length=2**40), 1009),
    ("reserved bit 2", frame(TEXT, b"x", rsv=2), 1002),
    ("reserved bit 3", frame(TEXT, b"x", rsv=1), 1002),
    ("compressed bit without deflate", frame(TEXT, b"x", rsv=4), 1002),
    ("unknown data opcode 3", frame(0x3, b"x"), 1002),
    ("unknown control opcode 0xF", frame(0xF, b""), 1002),
    ("unmasked client frame", frame(TEXT, b"x", mask=False), 1002),
    ("invalid UTF-8", frame(TEXT, b"\xf4\x90\x80\x80"), 1007),
    ("overlong UTF-8", frame(TEXT, b"\xc0\xaf"), 1007),
    ("UTF-16 surrogate", frame(TEXT, b"\xed\xa0\x80"), 1007),
    ("invalid UTF-8 in a fragment", frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff"), 1007),
    ("close code 1006 on the wire", close_frame(1006), 1002),
    ("close code 1015 on the wire", close_frame(1015), 1002),
    ("close code 0", close_frame(0), 1002),
    ("close code 65535", close_frame(65535), 1002),
    ("close with a one-byte payload", frame(CLOSE, b"\x03"), 1002),
    ("ping of 126 bytes", frame(PING, b"p" * 126), 1002),
    ("fragmented ping", frame(PING, b"p", fin=False) + frame(CONT, b"p"), 1002),
    ("continuation first", frame(CONT, b"x"), 1002),
    ("text inside a fragmented message", frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
]


@pytest.mark.parametrize(("wire", "code"), [c[1:] for c in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES])
def test_bad_frame_is_closed_with_its_code(serve: Serve, wire: bytes, code: int) -> None:
    """RFC 6455 §5.2, §5.4-5.5, §7.4.1, §8.1, §10.4: the session fails with the code the error
    calls for, the server closes the TCP connection, and the app gets only the disconnect."""
    app = Collector()
    server = serve(app, ws_max_size=1024)
    with server.connect() as sock:
        _, early = open_websocket(sock)
        sock.sendall(wire + frame(TEXT, b"after"))
        frames = parse_frames(early + read_until_closed(sock))
    assert [(op, close_code(payload)) for op, payload in frames] == [(CLOSE, code)]
    assert app.done.wait(5)
    assert [m["type"] for m in app.messages] == ["websocket.disconnect"]
    assert app.messages[0]["code"] == code


BAD_HANDSHAKES = [
    ("\\x0b in a header value", handshake(extra=b"X-Forwarded-For: 1.2.3.4\x0bOrigin: evil\r\n"), 400),
    ("\\x0c in a header value", handshake(extra=b"Origin: https://a.example\x0cX-Real-Ip: 1\r\n"), 400),
    ("\\x85 in a header value", handshake(extra=b"X-Forwarded-For: 1.2.3.4\x85Origin: evil\r\n"), 400),
    ("\\x1c in a header value", handshake(extra=b"Cookie: a=1\x1cb=2\r\n"), 400),
    ("\\x85 in the subprotocol list", handshake(extra=b"Sec-WebSocket-Protocol: chat\x85admin\r\n"), 400),
    ("no key", handshake(key=b"").replace(b"Sec-WebSocket-Key: \r\n", b""), 400),
    ("short key", handshake(key=b"c2hvcnQ="), 400),
    ("two keys", handshake(extra=b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n"), 400),
    ("version 8", handshake().replace(b"Version: 13", b"Version: 8"), 426),
    ("POST", handshake().replace(b"GET ", b"POST ", 1), 400),
    ("a body", handshake(extra=b"Content-Length: 4\r\n") + b"body", 400),
]


@pytest.mark.parametrize(
    ("wire", "status"), [c[1:] for c in BAD_HANDSHAKES], ids=[c[0] for c in BAD_HANDSHAKES]
)
def test_bad_handshake_gets_an_http_error_and_never_reaches_the_app(
    serve: Serve, wire: bytes, status: int
) -> None:
    """RFC 6455 §4.2.1-4.2.2, CVE-2026-44546 (daphne): a broken handshake, or one whose header
    values hold bytes that str.splitlines() breaks on, is answered 400 (426 for another version)
    with connection: close; the app is never called."""
    app = Collector()
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(wire)
        got, headers, _ = read_response(sock)
        rest = read_until_closed(sock, 3)
    assert got == status
    assert headers["connection"] == "close"
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    assert rest == b""
    assert not app.called.is_set()

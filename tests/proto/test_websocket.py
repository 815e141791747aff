"""The sans-IO WebSocket core without a loop: the handshake checks (RFC 6455 §4.2.1, CVE-2026-44546)
and the session, each case fed whole, one byte at a time, and followed by trailing garbage."""

from __future__ import annotations

import tracemalloc
import zlib
from typing import Any

import pytest
from websockets.typing import ExtensionName

from tests.wsframes import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    close_code,
    close_frame,
    deflated,
    frame,
    parse_frames,
)
from wherry.proto.events import RemoteProtocolError
from wherry.proto.websocket import (
    Message,
    Offer,
    WebSocketClosed,
    WebSocketSession,
    accept_key,
    h1_accept,
    h1_key,
    h1_refusal,
    negotiate,
    parse_offer,
)

MAX = 1000

# ----------------------------------------------------------------------------------- handshake

GOOD = [
    (b"host", b"example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]


def with_(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    out = [(n, v) for n, v in headers if n != name]
    if value is not None:
        out.append((name, value))
    return out


def test_accept_key_is_the_rfc_example() -> None:
    """RFC 6455 §1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" is answered "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="."""
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_handshake_gives_key_subprotocols_and_extensions() -> None:
    """RFC 6455 §4.2.1: a GET over HTTP/1.1 with Upgrade, Connection, a 16-byte key and version 13."""
    headers = [
        *GOOD,
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"sec-websocket-protocol", b"v2"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
    ]
    offer = parse_offer(headers)
    assert offer.subprotocols == ["chat", "superchat", "v2"]
    assert offer.extensions[0][0] == "permessage-deflate"
    assert h1_key(b"GET", "1.1", headers) == b"dGhlIHNhbXBsZSBub25jZQ=="


BAD_HANDSHAKES = [
    ("another version", with_(GOOD, b"sec-websocket-version", b"8"), b"GET", "1.1", 426),
    ("no version", with_(GOOD, b"sec-websocket-version", None), b"GET", "1.1", 426),
    ("no key", with_(GOOD, b"sec-websocket-key", None), b"GET", "1.1", 400),
    ("short key", with_(GOOD, b"sec-websocket-key", b"c2hvcnQ="), b"GET", "1.1", 400),
    ("key not base64", with_(GOOD, b"sec-websocket-key", b"!!!!!!!!!!!!!!!!!!!!!!!!"), b"GET", "1.1", 400),
    ("two keys", [*GOOD, (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")], b"GET", "1.1", 400),
    ("POST", GOOD, b"POST", "1.1", 400),
    ("HTTP/1.0", GOOD, b"GET", "1.0", 400),
    ("no upgrade token", with_(GOOD, b"connection", b"keep-alive"), b"GET", "1.1", 400),
    ("upgrade to another protocol", with_(GOOD, b"upgrade", b"h2c"), b"GET", "1.1", 400),
    ("a body", [*GOOD, (b"content-length", b"5")], b"GET", "1.1", 400),
    ("chunked body", [*GOOD, (b"transfer-encoding", b"chunked")], b"GET", "1.1", 400),
    ("malformed subprotocols", [*GOOD, (b"sec-websocket-protocol", b"a b")], b"GET", "1.1", 400),
    ("malformed extensions", [*GOOD, (b"sec-websocket-extensions", b"x; =")], b"GET", "1.1", 400),
]
for byte in (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85"):
    BAD_HANDSHAKES.append(
        (f"{byte!r} in a header value", [*GOOD, (b"x-forwarded-for", b"1.2.3.4" + byte)], b"GET", "1.1", 400)
    )


@pytest.mark.parametrize(
    ("headers", "method", "version", "status"),
    [c[1:] for c in BAD_HANDSHAKES],
    ids=[c[0] for c in BAD_HANDSHAKES],
)
def test_broken_handshake_is_refused_with_its_status(
    headers: list[tuple[bytes, bytes]], method: bytes, version: str, status: int
) -> None:
    """RFC 6455 §4.2.1-4.2.2: a handshake that breaks a rule gets 400 (426 and the version spoken for
    another version); header values that Python's splitlines() would split (CVE-2026-44546) get 400."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_offer(headers)
        h1_key(method, version, headers)
    assert caught.value.status == status


def test_refusal_names_the_version_for_426() -> None:
    """RFC 6455 §4.4: a 426 carries Sec-WebSocket-Version with the versions the server speaks."""
    response = h1_refusal(426, "unsupported Sec-WebSocket-Version", b"")
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"sec-websocket-version: 13\r\n" in response
    assert b"connection: close\r\n" in response


def test_accept_response_carries_subprotocol_extensions_and_headers() -> None:
    """RFC 6455 §4.2.2: 101 with Upgrade, Connection, Sec-WebSocket-Accept, the chosen subprotocol."""
    response = h1_accept(
        b"dGhlIHNhbXBsZSBub25jZQ==", b"chat", b"permessage-deflate", [(b"x-a", b"1")], b"server: w\r\n"
    )
    head = response.decode()
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert "sec-websocket-protocol: chat\r\n" in head
    assert "sec-websocket-extensions: permessage-deflate\r\n" in head
    assert head.endswith("x-a: 1\r\nserver: w\r\n\r\n")


def test_deflate_is_negotiated_only_when_offered_and_enabled() -> None:
    """RFC 7692 §5: the server accepts an offer it can meet, with its own window size, or none."""
    offer = parse_offer([*GOOD, (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")])
    header, extensions = negotiate(offer, True)
    assert header == b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    assert len(extensions) == 1
    assert negotiate(offer, False) == (None, [])
    assert negotiate(Offer([], [(ExtensionName("x-other"), [])]), True) == (None, [])
    # A client that does not offer to shrink its own window keeps it; ours is still 4 KiB.
    plain = parse_offer([*GOOD, (b"sec-websocket-extensions", b"permessage-deflate")])
    assert negotiate(plain, True)[0] == b"permessage-deflate; server_max_window_bits=12"


# ------------------------------------------------------------------------------------- session


def feed(session: WebSocketSession, data: bytes, mode: str) -> tuple[list[Any], bytes, bool]:
    events: list[Any] = []
    out = []
    close = False
    if mode == "bytewise":
        pieces = [data[i : i + 1] for i in range(len(data))]
    elif mode == "garbage":
        pieces = [data + b"\xff\xff\xff\xff\x00garbage"]
    else:
        pieces = [data]
    for piece in pieces:
        events += session.receive_data(piece, 0.0)
        written, closing = session.data_to_send()
        out.append(written)
        close = close or closing
    return events, b"".join(out), close


def summary(events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        if isinstance(event, Message):
            out.append(event.data)
        elif isinstance(event, WebSocketClosed):
            out.append(("closed", event.code))
    return out


SESSION_CASES: list[tuple[str, bytes, list[Any], int | None]] = [
    ("text", frame(TEXT, "héllo".encode()), ["héllo"], None),
    ("binary", frame(BINARY, b"\x00\xff"), [b"\x00\xff"], None),
    ("empty text", frame(TEXT), [""], None),
    ("two messages", frame(TEXT, b"a") + frame(BINARY, b"b"), ["a", b"b"], None),
    (
        "fragmented text",
        frame(TEXT, b"h", fin=False) + frame(CONT, b"\xc3", fin=False) + frame(CONT, b"\xa9"),
        ["hé"],
        None,
    ),
    ("fragmented binary", frame(BINARY, b"a", fin=False) + frame(CONT, b"b"), [b"ab"], None),
    (
        "binary in three fragments",
        frame(BINARY, b"a", fin=False) + frame(CONT, b"b", fin=False) + frame(CONT, b"c"),
        [b"abc"],
        None,
    ),
    ("ping between fragments", frame(TEXT, b"a", 0) + frame(PING, b"p") + frame(CONT, b"b"), ["ab"], None),
    ("unsolicited pong", frame(PONG, b"x") + frame(TEXT, b"a"), ["a"], None),
    ("close with a code and reason", close_frame(4000, b"bye"), [("closed", 4000)], 4000),
    ("close without a code", close_frame(None), [("closed", 1005)], None),
    ("close between fragments", frame(TEXT, b"a", fin=False) + close_frame(1000), [("closed", 1000)], 1000),
    ("reserved bit 2", frame(TEXT, b"x", rsv=2), [("closed", 1002)], 1002),
    ("reserved bit 3", frame(BINARY, b"x", rsv=1), [("closed", 1002)], 1002),
    ("compressed bit without deflate", frame(TEXT, b"x", rsv=4), [("closed", 1002)], 1002),
    ("unknown data opcode", frame(0x3, b"x"), [("closed", 1002)], 1002),
    ("unknown control opcode", frame(0xB, b""), [("closed", 1002)], 1002),
    ("unmasked client frame", frame(TEXT, b"x", mask=False), [("closed", 1002)], 1002),
    ("invalid UTF-8", frame(TEXT, b"\xce\xba\xff"), [("closed", 1007)], 1007),
    ("invalid UTF-8 in the first fragment", frame(TEXT, b"\xff", fin=False), [("closed", 1007)], 1007),
    ("truncated UTF-8 at the end", frame(TEXT, b"a", 0) + frame(CONT, b"\xce"), [("closed", 1007)], 1007),
    ("invalid UTF-8 in a close reason", close_frame(1000, b"\xff"), [("closed", 1007)], 1007),
    ("close code 1005 on the wire", close_frame(1005), [("closed", 1002)], 1002),
    ("close code 999", close_frame(999), [("closed", 1002)], 1002),
    ("close code 2000", close_frame(2000), [("closed", 1002)], 1002),
    ("close code 5000", close_frame(5000), [("closed", 1002)], 1002),
    ("close payload of one byte", frame(CLOSE, b"\x03"), [("closed", 1002)], 1002),
    ("ping over 125 bytes", frame(PING, b"x" * 126), [("closed", 1002)], 1002),
    ("close over 125 bytes", close_frame(1000, b"x" * 124), [("closed", 1002)], 1002),
    ("fragmented ping", frame(PING, b"x", fin=False), [("closed", 1002)], 1002),
    ("continuation with nothing to continue", frame(CONT, b"x"), [("closed", 1002)], 1002),
    ("new message between fragments", frame(TEXT, b"a", 0) + frame(TEXT, b"b"), [("closed", 1002)], 1002),
    ("frame declaring more than the limit", frame(BINARY, b"", length=MAX + 1), [("closed", 1009)], 1009),
    ("frame declaring 2**63 bytes", frame(BINARY, b"", length=2**63 - 1), [("closed", 1009)], 1009),
    (
        "fragments adding up past the limit",
        frame(BINARY, b"x" * 600, fin=False) + frame(CONT, b"x" * 600),
        [("closed", 1009)],
        1009,
    ),
    ("a message at the limit", frame(BINARY, b"x" * MAX), [b"x" * MAX], None),
]


@pytest.mark.parametrize("mode", ["whole", "bytewise", "garbage"])
@pytest.mark.parametrize(
    ("wire", "expected", "code"), [c[1:] for c in SESSION_CASES], ids=[c[0] for c in SESSION_CASES]
)
def test_session_case(wire: bytes, expected: list[Any], code: int | None, mode: str) -> None:
    """RFC 6455 §5 (framing, masking, fragmentation, control frames), §5.6 and §8.1 (UTF-8), §7.4
    (close codes), §10.4 (a size bound: 1009): each case gives its messages, or ends the session with
    the close code it sends; nothing of a broken message is delivered."""
    session = WebSocketSession(MAX, [], 0.0)
    events, out, close = feed(session, wire, mode)
    got = summary(events)
    if mode == "garbage" and code is None and expected[-1:] != [("closed", 1005)]:
        # The garbage after a good case fails the session after the case's own messages.
        assert got[: len(expected)] == expected
        assert got[len(expected)][0] == "closed"
        return
    assert got == expected
    sent = [(op, payload) for op, payload in parse_frames(out) if op == CLOSE]
    if code is None:
        if expected and expected[-1] == ("closed", 1005):
            assert sent == [(CLOSE, b"")]  # the empty Close is echoed as it came
        else:
            assert sent == []
    else:
        assert [close_code(payload) for _, payload in sent] == [code]
        assert close, "the server closes the TCP connection after a Close (RFC 6455 §7.1.1)"


def test_ping_is_answered_with_its_payload() -> None:
    """RFC 6455 §5.5.2-5.5.3: a Pong with the Ping's application data answers it."""
    session = WebSocketSession(MAX, [], 0.0)
    _, out, _ = feed(session, frame(PING, b"abc"), "whole")
    assert parse_frames(out) == [(PONG, b"abc")]


def test_sent_frames_are_unmasked_and_well_formed() -> None:
    """RFC 6455 §5.1: a server does not mask its frames."""
    session = WebSocketSession(MAX, [], 0.0)
    assert parse_frames(session.send_text("hé")) == [(TEXT, "hé".encode())]
    assert parse_frames(session.send_bytes(b"x" * 70000)) == [(BINARY, b"x" * 70000)]
    out = session.send_close(4001, "done", 0.0)
    assert parse_frames(out) == [(CLOSE, b"\x0f\xa1done")]
    assert not session.can_send


@pytest.mark.parametrize(("code", "reason"), [(1005, ""), (1006, ""), (999, ""), (1000, "x" * 124)])
def test_close_that_cannot_be_sent_is_refused(code: int, reason: str) -> None:
    """RFC 6455 §7.4.1-7.4.2, §5.5: 1005/1006 are never sent; a close payload is at most 125 bytes."""
    session = WebSocketSession(MAX, [], 0.0)
    with pytest.raises(ValueError):
        session.send_close(code, reason, 0.0)
    assert session.can_send


def deflate_session(max_size: int = MAX) -> WebSocketSession:
    offer = Offer([], [(ExtensionName("permessage-deflate"), [("client_max_window_bits", None)])])
    _, extensions = negotiate(offer, True)
    return WebSocketSession(max_size, extensions, 0.0)


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_compressed_message_is_inflated(mode: str) -> None:
    """RFC 7692 §6.2: a message with RSV1 set is inflated; the answer is compressed too."""
    session = deflate_session()
    events, _, _ = feed(session, frame(TEXT, deflated(b"hello " * 50), rsv=4), mode)
    assert summary(events) == ["hello " * 50]
    out = parse_frames(session.send_text("x" * 500))
    assert len(out[0][1]) < 50


@pytest.mark.parametrize(
    "params",
    [
        [],
        [("server_no_context_takeover", None)],
        [("client_no_context_takeover", None), ("client_max_window_bits", "9")],
        [("server_no_context_takeover", None), ("client_no_context_takeover", None)],
    ],
)
def test_deflate_round_trips_with_every_context_setting(params: list[tuple[str, str | None]]) -> None:
    """RFC 7692 §7.1.1-7.1.2: with or without context takeover on either side, messages inflate
    and the server's compressed answers inflate on the client's side."""
    _, extensions = negotiate(Offer([], [(ExtensionName("permessage-deflate"), params)]), True)
    session = WebSocketSession(MAX, extensions, 0.0)
    client = zlib.decompressobj(wbits=-15)
    for text in ("first " * 20, "second " * 20, "third"):
        events = session.receive_data(frame(TEXT, deflated(text.encode()), rsv=4), 0.0)
        assert summary(events) == [text]
        ((opcode, payload),) = parse_frames(session.send_text(text.upper()))
        assert opcode == TEXT
        if "server_no_context_takeover" in dict(params):
            client = zlib.decompressobj(wbits=-15)  # each message starts a fresh context
        assert client.decompress(payload + b"\x00\x00\xff\xff") == text.upper().encode()


def test_compression_bomb_is_closed_with_1009_without_inflating_it() -> None:
    """RFC 7692 §8.1 and RFC 6455 §10.4: 64 MiB of zeros compressed to ~64 KiB are refused (1009)
    after inflating at most the limit: memory never holds the inflated message."""
    bomb = deflated(b"\x00" * (64 * 1024 * 1024))
    assert len(bomb) < 100_000
    session = deflate_session(max_size=1024 * 1024)
    wire = frame(BINARY, bomb, rsv=4)
    tracemalloc.start()
    try:
        events = session.receive_data(wire, 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary(events) == [("closed", 1009)]
    assert peak < 4 * 1024 * 1024, f"{peak} bytes allocated while refusing the bomb"


def test_bomb_in_fragments_is_bounded_by_the_whole_message() -> None:
    """RFC 6455 §10.4: the bound is on the message, so small compressed fragments add up."""
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"\x00" * 600_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"\x00" * 600_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    session = deflate_session(max_size=1024 * 1024)
    events = session.receive_data(frame(BINARY, first, fin=False, rsv=4) + frame(CONT, second[:-4]), 0.0)
    assert summary(events) == [("closed", 1009)]


# ------------------------------------------------------------------------------------ deadlines


def test_keepalive_ping_after_silence_and_1011_without_answer() -> None:
    """RFC 6455 §5.5.2: a keepalive Ping after ``ping_interval`` of silence; no answer within
    ``ping_timeout`` fails the session with 1011."""
    session = WebSocketSession(MAX, [], 0.0, ping_interval=1.0, ping_timeout=2.0)
    assert session.deadline == 1.0
    assert session.on_deadline(0.5) == (b"", False)  # early: nothing to do
    out, close = session.on_deadline(1.0)
    ((opcode, _payload),) = parse_frames(out)
    assert opcode == PING and not close
    assert session.deadline == 3.0
    out, close = session.on_deadline(3.0)
    assert [(op, close_code(p)) for op, p in parse_frames(out)] == [(CLOSE, 1011)]
    assert close
    assert session.closed is not None and session.closed.code == 1011
    assert session.deadline is None


def test_anything_heard_answers_the_keepalive_ping() -> None:
    """RFC 6455 §5.5.3: the Pong (or any frame: the peer is alive) resets the keepalive clock."""
    session = WebSocketSession(MAX, [], 0.0, ping_interval=1.0, ping_timeout=2.0)
    out, _ = session.on_deadline(1.0)
    ((_, payload),) = parse_frames(out)
    session.receive_data(frame(PONG, payload), 1.5)
    assert session.deadline == 2.5
    session.on_deadline(2.5)
    session.receive_data(frame(TEXT, b"x"), 3.0)
    assert session.deadline == 4.0


def test_no_keepalive_clock_while_reading_is_paused() -> None:
    """A peer cannot answer a Ping the server does not read: no deadline runs while paused."""
    session = WebSocketSession(MAX, [], 0.0, ping_interval=1.0, ping_timeout=2.0)
    session.on_deadline(1.0)
    session.pause_reading()
    assert session.deadline is None
    session.resume_reading(10.0)
    assert session.deadline == 11.0


def test_our_close_unanswered_ends_the_session_after_close_timeout() -> None:
    """RFC 6455 §7.1.1: after its Close the server waits a bounded time for the peer's, then closes
    the TCP connection."""
    session = WebSocketSession(MAX, [], 0.0, ping_interval=1.0, ping_timeout=2.0, close_timeout=5.0)
    session.send_close(1000, "", 0.5)
    assert session.deadline == 5.5
    assert session.on_deadline(5.5) == (b"", True)
    assert session.closed is not None and session.closed.code == 1000


def test_peer_close_after_ours_ends_the_session_with_its_code() -> None:
    """RFC 6455 §7.1.2: the closing handshake ends when the peer's Close arrives."""
    session = WebSocketSession(MAX, [], 0.0, close_timeout=5.0)
    session.send_close(1001, "", 0.0)
    events, out, close = feed(session, close_frame(1001), "whole")
    assert summary(events) == [("closed", 1001)]
    assert out == b"" and close
    assert session.deadline is None


def test_end_of_input_is_1006() -> None:
    """RFC 6455 §7.1.5: a connection that ends without a Close is 1006."""
    session = WebSocketSession(MAX, [], 0.0)
    events = session.receive_data(frame(TEXT, b"a", fin=False), 0.0) + session.receive_data(b"", 0.0)
    assert summary(events) == [("closed", 1006)]
    assert session.receive_data(b"more", 0.0) == []


def test_end_of_input_after_our_close_is_1006() -> None:
    """Our Close sent, the connection ends without the peer's: 1006, and nothing more is read."""
    session = WebSocketSession(MAX, [], 0.0, close_timeout=5.0)
    session.send_close(1000, "", 0.0)
    assert summary(session.receive_data(b"", 1.0)) == [("closed", 1006)]
    assert session.deadline is None
    assert session.receive_data(close_frame(1000), 1.0) == []


def test_without_keepalive_an_open_session_has_no_deadline() -> None:
    session = WebSocketSession(MAX, [], 0.0)
    assert session.receive_data(frame(TEXT, b"a"), 1.0)
    assert session.deadline is None
    assert session.on_deadline(100.0) == (b"", False)


def test_a_compressed_binary_message_is_sent_deflated() -> None:
    """RFC 7692 §7.2.1: with permessage-deflate a binary message is compressed (RSV1 set), and
    its payload inflates back to the message."""
    session = deflate_session()
    out = session.send_bytes(b"\x00\x01" * 400)
    assert out[0] == 0xC2  # FIN, RSV1, binary
    assert len(out) < 100
    size = out[1] & 0x7F
    payload = out[2 : 2 + size]
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + b"\x00\x00\xff\xff") == b"\x00\x01" * 400


def test_a_frame_with_a_16_bit_length_split_inside_its_mask_key() -> None:
    """A text frame of 200 bytes arriving 6 bytes first (its head and half its mask key), then
    the rest: nothing is read until the frame is whole."""
    session = WebSocketSession(MAX, [], 0.0)
    wire = frame(TEXT, b"a" * 200)
    assert session.receive_data(wire[:6], 0.0) == []
    assert summary(session.receive_data(wire[6:], 0.0)) == ["a" * 200]


def test_a_deflate_offer_the_server_cannot_meet_is_declined() -> None:
    """RFC 7692 §5: an offer with a parameter out of range is skipped; the next one is taken."""
    bad = "permessage-deflate; server_max_window_bits=100"
    offer = parse_offer([*GOOD, (b"sec-websocket-extensions", bad.encode())])
    assert negotiate(offer, True) == (None, [])
    both = parse_offer([*GOOD, (b"sec-websocket-extensions", f"{bad}, permessage-deflate".encode())])
    assert negotiate(both, True)[0] == b"permessage-deflate; server_max_window_bits=12"


def test_the_session_events_show_what_they_carry() -> None:
    assert repr(Message("hi")) == "Message('hi')"
    assert repr(Message(b"\x00")) == "Message(b'\\x00')"
    assert repr(WebSocketClosed(1000, "bye")) == "WebSocketClosed(1000, 'bye')"

"""The header-field rule (wherry/proto/fields.py, RFC 9110 §5, RFC 9113 §8.2): tables of names and
values, byte by byte, and the same answer from every place that sends fields: the HTTP/1.1 and
HTTP/2 cores' responses and trailers, and both WebSocket handshake answers."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from wherry.connection.extensions import encode_trailers
from wherry.proto.events import LocalProtocolError, Request
from wherry.proto.fields import (
    check_field,
    h2_field,
    h2_received_name,
    h2_received_value,
    is_token,
    trailer_fields,
)
from wherry.proto.http1 import DefaultHeaders, H1Connection, H1Limits
from wherry.proto.http2 import H2Connection, H2Limits
from wherry.proto.websocket import accept_fields, h1_accept

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
CONTROL = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])  # every CTL but HTAB


def test_a_name_is_a_token_byte_by_byte() -> None:
    """RFC 9110 §5.6.2: every tchar makes a name; every other byte of 0x00-0xff does not."""
    for byte in range(256):
        char = bytes([byte])
        assert is_token(b"x" + char) == (char in TCHAR), char


@pytest.mark.parametrize(
    "name", [b"", b"x a", b"x:a", b":status", b"x\ta", b'x"', b"(x)", b"x\xe9", b"x\r\n"]
)
def test_a_name_that_is_not_a_token_is_refused(name: bytes) -> None:
    """RFC 9110 §5.1: a field name is a token; anything else is the app's error."""
    with pytest.raises(LocalProtocolError):
        check_field(name, b"1", "response header")


@pytest.mark.parametrize("position", ["start", "middle", "end"])
def test_every_control_byte_but_htab_is_refused_anywhere(position: str) -> None:
    """RFC 9110 §5.5: NUL, CR, LF and every other CTL except HTAB make a value invalid, wherever
    they are (also beside the whitespace that would be trimmed)."""
    for byte in CONTROL:
        char = bytes([byte])
        value = {"start": char + b"a", "middle": b"a" + char + b"b", "end": b" a" + char + b" "}[position]
        with pytest.raises(LocalProtocolError):
            check_field(b"x-a", value, "response header")


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (b"", b""),
        (b"a", b"a"),
        (b"a b", b"a b"),
        (b"a\tb", b"a\tb"),
        (b"a  \t  b", b"a  \t  b"),
        (b"\x80\xe9\xff", b"\x80\xe9\xff"),
        (bytes(range(0x21, 0x7F)), bytes(range(0x21, 0x7F))),
        (b" a", b"a"),
        (b"a ", b"a"),
        (b"\ta b\t ", b"a b"),
        (b" ", b""),
        (b" \t \t", b""),
    ],
)
def test_values_are_sent_without_surrounding_whitespace(value: bytes, sent: bytes) -> None:
    """RFC 9110 §5.5: visible bytes, obs-text, SP and HTAB inside are sent as given; whitespace
    around a value is not part of it and is not sent."""
    assert check_field(b"x-a", value, "response header") == sent


def test_http2_lowercases_names_and_leaves_connection_specific_fields_out() -> None:
    """RFC 9113 §8.2.1-§8.2.2, on top of RFC 9110: names lowercase, connection fields not sent."""
    assert h2_field(b"X-Thing", b" v ", "response header") == (b"x-thing", b"v")
    for name in (b"Connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"):
        assert h2_field(name, b"x", "response header") is None
    with pytest.raises(LocalProtocolError):
        h2_field(b"x-a", b"a\x01b", "response header")


def test_trailer_fields_leave_out_what_must_not_be_a_trailer() -> None:
    """RFC 9110 §6.5.1: framing, routing, authentication and content fields are left out; the
    others are lowercased and checked like every field."""
    fields = [
        (b"Content-Length", b"2"),
        (b"content-type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"authorization", b"x"),
        (b"X-Checksum", b" abc "),
    ]
    assert trailer_fields(fields) == [(b"x-checksum", b"abc")]
    with pytest.raises(LocalProtocolError):
        trailer_fields([(b"x-checksum", b"a\x7f")])


def test_received_on_http2_follows_rfc9113() -> None:
    """RFC 9113 §8.2.1, what a peer sends: no uppercase, space, colon or byte outside ASCII in a
    name; no NUL, CR or LF in a value and no whitespace around it; other controls are carried."""
    assert h2_received_name(b"x-a") and h2_received_name(b"x{y}")
    for name in (b"", b"X-A", b"x a", b"x:a", b"x\x7f", b"x\xe9"):
        assert not h2_received_name(name), name
    for value in (b"", b"a", b"a b", b"a\x01b", b"a\x0b"):
        assert h2_received_value(value), value
    for value in (b"a\x00", b"a\rb", b"a\nb", b" a", b"a ", b"a\t", b"\ta"):
        assert not h2_received_value(value), value


# ---------------------------------------------------------------- every place, the same answer

CASES = [
    b"a\x01b",
    b"a\x7f",
    b"a\x0bb",
    b"a\rb",
    b"a\nb",
    b"a\x00b",
    b" a",
    b"a \t",
    b"a b",
    b"a\tb",
    b"\x80\xff",
    b"",
    b"  ",
]


def _h1_head(value: bytes) -> bytes | None:
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    request = conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0.0)[0]
    assert isinstance(request, Request)
    try:
        head = conn.response_head(request, 200, [(b"x-a", value)])
    except LocalProtocolError:
        return None
    line = next(x for x in head.split(b"\r\n") if x.startswith(b"x-a:"))
    return line[len(b"x-a: ") :]


def _h2_pair() -> tuple[H2Connection, h2.connection.H2Connection, int]:
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    sid = client.get_next_available_stream_id()
    block = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
    client.send_headers(sid, block, end_stream=True)
    server.receive_data(client.data_to_send(), 0.0)
    client.receive_data(server.data_to_send())
    return server, client, sid


def _h2_head(value: bytes) -> bytes | None:
    server, client, sid = _h2_pair()
    try:
        server.send_response(sid, 200, [(b"x-a", value)], [], True)
    except LocalProtocolError:
        return None
    (event,) = [
        e for e in client.receive_data(server.data_to_send()) if isinstance(e, h2.events.ResponseReceived)
    ]
    return dict(event.headers)[b"x-a"]


def _h1_trailer(value: bytes) -> bytes | None:
    try:
        section = encode_trailers([(b"x-a", value)])
    except LocalProtocolError:
        return None
    assert section.startswith(b"x-a: ") and section.endswith(b"\r\n")
    return section[len(b"x-a: ") : -2]


def _h2_trailer(value: bytes) -> bytes | None:
    server, client, sid = _h2_pair()
    server.send_response(sid, 200, [], [], False)
    try:
        server.send_trailers(sid, [(b"x-a", value)])
    except LocalProtocolError:
        return None
    (event,) = [
        e for e in client.receive_data(server.data_to_send()) if isinstance(e, h2.events.TrailersReceived)
    ]
    return dict(event.headers)[b"x-a"]


def _ws_h1(value: bytes) -> bytes | None:
    try:
        head = h1_accept(b"dGhlIHNhbXBsZSBub25jZQ==", None, None, [(b"x-a", value)], b"")
    except LocalProtocolError:
        return None
    line = next(x for x in head.split(b"\r\n") if x.startswith(b"x-a:"))
    return line[len(b"x-a: ") :]


def _ws_h2(value: bytes) -> bytes | None:
    try:
        fields = accept_fields(None, None, [(b"x-a", value)])
    except LocalProtocolError:
        return None
    return dict(fields)[b"x-a"]


@pytest.mark.parametrize("value", CASES)
def test_every_place_that_sends_a_field_gives_the_same_answer(value: bytes) -> None:
    """One rule: the HTTP/1.1 and HTTP/2 heads and trailer sections and both WebSocket answers
    refuse the same values and send the others with the same bytes."""
    answers = {
        "h1 head": _h1_head(value),
        "h2 head": _h2_head(value),
        "h1 trailer": _h1_trailer(value),
        "h2 trailer": _h2_trailer(value),
        "ws h1": _ws_h1(value),
        "ws h2": _ws_h2(value),
    }
    try:
        want: bytes | None = check_field(b"x-a", value, "response header")
    except LocalProtocolError:
        want = None
    assert answers == dict.fromkeys(answers, want)

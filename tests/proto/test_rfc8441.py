"""Extended CONNECT (RFC 8441) in the sans-IO cores, with no loop and no socket: the HTTP/2 core's
SETTINGS, its checks of the extended CONNECT request (fed whole, one byte at a time and with
trailing garbage), the tunnel a WebSocket runs in, and the HTTP/2 half of the WebSocket handshake
in wherry/proto/websocket.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from tests.proto.test_http2_frames import FEEDS, GET, START, frame, headers, run, written
from wherry.proto.events import (
    Data,
    EndOfMessage,
    LocalProtocolError,
    Rejected,
    RemoteProtocolError,
    Request,
    WindowOpened,
)
from wherry.proto.http2 import ENABLE_CONNECT_PROTOCOL, H2Connection, H2Limits
from wherry.proto.websocket import accept_fields, h2_check, parse_offer, refusal

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
ON = H2Limits(connect_protocol=True)
WEBSOCKET = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"https"),
    (b":path", b"/chat?room=1"),
    (b":authority", b"a.example"),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-protocol", b"chat"),
]


def settings_sent(limits: H2Limits) -> dict[int, int]:
    server = H2Connection(limits, 0.0)
    server.initiate()
    first = written(server.data_to_send())[0]
    assert isinstance(first, SettingsFrame)
    return dict(first.settings)


def test_enable_connect_protocol_is_advertised_only_when_on() -> None:
    """RFC 8441 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL=1 in the server preface when WebSocket is on;
    absent (not 0: a value once sent as 1 may not turn 0) when it is off."""
    assert settings_sent(ON)[ENABLE_CONNECT_PROTOCOL] == 1
    assert ENABLE_CONNECT_PROTOCOL not in settings_sent(H2Limits())


def test_h2c_upgrade_advertises_it_too() -> None:
    """RFC 8441 §3, RFC 7540 §3.2: the server preface after a 101 carries the setting as well."""
    server = H2Connection(ON, 0.0)
    request = Request(b"GET", b"/", b"/", b"", "1.1", [(b"host", b"a")], True, False, None)
    server.initiate_upgrade(b"", request, 0.0)
    first = written(server.data_to_send())[0]
    assert isinstance(first, SettingsFrame) and first.settings[ENABLE_CONNECT_PROTOCOL] == 1


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_extended_connect_reaches_the_driver(name: str, split: Callable[[bytes], list[bytes]]) -> None:
    """RFC 8441 §4: CONNECT with :protocol, :scheme, :path and :authority is a request whose
    ``upgrade`` is the protocol and whose target is the path (not the authority, as for a plain
    CONNECT); its DATA follows as Data events. The same however the bytes are split (a
    WINDOW_UPDATE after it is parsed, not an error)."""
    wire = START + headers(1, WEBSOCKET, flags=0x4) + frame(0x0, 0, 1, b"frame")
    events, out, _ = run(wire, split, ON)
    assert [type(e) for e in events if not isinstance(e, WindowOpened)] == [Request, Data]
    request = events[0]
    assert isinstance(request, Request)
    assert (request.method, request.upgrade, request.target) == (b"CONNECT", b"websocket", b"/chat?room=1")
    assert (request.raw_path, request.query_string, request.http_version) == (b"/chat", b"room=1", "2")
    assert request.headers[0] == (b"host", b"a.example")
    assert (b"sec-websocket-protocol", b"chat") in request.headers
    assert not any(isinstance(f, GoAwayFrame) for f in out)


MISSING = [
    ("no-scheme", [f for f in WEBSOCKET if f[0] != b":scheme"]),
    ("no-path", [f for f in WEBSOCKET if f[0] != b":path"]),
    ("no-authority", [f for f in WEBSOCKET if f[0] != b":authority"]),
    ("no-authority-but-host", [*(f for f in WEBSOCKET if f[0] != b":authority"), (b"host", b"a.example")]),
    ("protocol-on-get", [(b":method", b"GET"), *WEBSOCKET[1:]]),
]


@pytest.mark.parametrize(("case", "block"), MISSING, ids=[m[0] for m in MISSING])
@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_extended_connect_without_its_pseudo_headers_is_malformed(
    case: str, block: list[tuple[bytes, bytes]], name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 8441 §4 (with RFC 9113 §8.3.1): :protocol needs CONNECT, :scheme, :path and an
    :authority (a host field does not stand in for it); without them the request is malformed,
    never reaches the driver, and the connection ends with PROTOCOL_ERROR."""
    events, out, server = run(START + headers(1, block), split, ON)
    assert not any(isinstance(e, Request) for e in events)
    assert isinstance(events[-1], Rejected)
    goaway = [f for f in out if isinstance(f, GoAwayFrame)]
    assert len(goaway) == 1 and goaway[0].error_code == PROTOCOL_ERROR
    assert server.closed


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_protocol_without_the_setting_is_a_stream_error(
    name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 8441 §4: a :protocol the server never enabled makes the request malformed: RST_STREAM
    PROTOCOL_ERROR on its stream; the connection goes on (the next request is served)."""
    wire = START + headers(1, WEBSOCKET) + headers(3, GET)
    events, out, server = run(wire, split, H2Limits())
    requests = [e for e in events if isinstance(e, Request)]
    assert [r.stream_id for r in requests] == [3]
    resets = [f for f in out if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, PROTOCOL_ERROR)]
    assert not any(isinstance(f, GoAwayFrame) for f in out)
    assert not server.closed


def tunnel(limits: H2Limits) -> H2Connection:
    server = H2Connection(limits, 0.0)
    server.initiate()
    server.receive_data(START + headers(1, WEBSOCKET, flags=0x4), 0.0)
    server.open_tunnel(1)
    server.send_response(1, 200, [], [], False)
    server.data_to_send()
    return server


def stream_credit(server: H2Connection) -> int:
    """The WINDOW_UPDATE increments the server wrote for stream 1."""
    frames = written(server.data_to_send())
    return sum(f.window_increment for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 1)


def test_a_tunnel_has_no_body_deadline() -> None:
    """RFC 8441 §5: the stream's DATA is a WebSocket, which may be idle for hours (its keepalive
    pings say whether the peer lives), so the request body gap deadline does not apply."""
    server = tunnel(H2Limits(connect_protocol=True, body_timeout=2.0, keep_alive_timeout=5.0))
    server.receive_data(frame(0x0, 0, 1, b"x"), 1.0)
    server.acknowledge(1, 1, 1.0)
    assert server.deadline is None
    assert server.timed_out(1000.0) == ([], None)


def test_a_tunnel_has_no_body_size_limit_but_its_window() -> None:
    """--limit-request-body bounds request bodies, not WebSockets (--ws-max-size bounds their
    messages): 64 KB pass a 10 KB limit, each byte credited only as the driver takes it."""
    server = tunnel(H2Limits(connect_protocol=True, max_body=10_000))
    piece = b"x" * 16_000
    events = []
    for _ in range(4):
        events += server.receive_data(frame(0x0, 0, 1, piece), 0.0)
    assert all(isinstance(e, Data) for e in events) and len(events) == 4
    assert stream_credit(server) == 0
    server.acknowledge(1, 64_000, 0.0)
    assert stream_credit(server) == 64_000


def test_tunnel_data_beyond_the_window_is_a_flow_control_error() -> None:
    """RFC 9113 §6.9.1: a client that sends past the window the driver has not re-opened (it
    paused reading) ends the connection with FLOW_CONTROL_ERROR: the window is the bound."""
    server = tunnel(ON)
    piece = b"x" * 16_384
    events = []
    for _ in range(5):  # 81,920 bytes against 65,535
        events += server.receive_data(frame(0x0, 0, 1, piece), 0.0)
    assert isinstance(events[-1], Rejected)
    goaway = [f for f in written(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway[0].error_code == 0x3


def test_server_end_then_client_end_closes_the_stream_without_reset() -> None:
    """RFC 8441 §5: END_STREAM both ways is the orderly close (TCP FIN both ways): no RST_STREAM."""
    server = tunnel(ON)
    server.send_data(1, b"", True, 0.0)
    events = server.receive_data(frame(0x0, 0x1, 1), 0.0)
    assert [type(e) for e in events] == [EndOfMessage]
    server.stream_done(1, 0.0)
    assert not any(isinstance(f, RstStreamFrame) for f in written(server.data_to_send()))


def test_server_end_without_the_clients_is_reset_with_no_error() -> None:
    """RFC 9113 §8.1: done with a stream the client has not ended, the server asks it to stop
    with RST_STREAM NO_ERROR; late DATA on it is then ignored."""
    server = tunnel(ON)
    server.send_data(1, b"", True, 0.0)
    server.stream_done(1, 0.0)
    resets = [f for f in written(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, NO_ERROR)]
    assert server.receive_data(DataFrame(1, data=b"late").serialize(), 0.0) == []
    assert not any(isinstance(f, (RstStreamFrame, GoAwayFrame)) for f in written(server.data_to_send()))


def test_tunnel_request_body_end_is_the_clients_half_close() -> None:
    """RFC 8441 §5: END_STREAM from the client on its HEADERS (nothing to tunnel) reaches the
    driver as EndOfMessage right after the request."""
    server = H2Connection(ON, 0.0)
    server.initiate()
    events = server.receive_data(START + headers(1, WEBSOCKET), 0.0)
    assert [type(e) for e in events] == [Request, EndOfMessage]


# ---------------------------------------------------------------- the HTTP/2 handshake


def fields_of(block: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in block if not n.startswith(b":")]


def test_h2_offer_reads_version_subprotocols_and_extensions() -> None:
    """RFC 8441 §5, RFC 6455 §4.2.1: the offer is read from the same fields as on HTTP/1.1."""
    fields = [*fields_of(WEBSOCKET), (b"sec-websocket-extensions", b"permessage-deflate")]
    h2_check(fields)
    offer = parse_offer(fields)
    assert offer.subprotocols == ["chat"]
    assert [name for name, _ in offer.extensions] == ["permessage-deflate"]


@pytest.mark.parametrize("name", [b"sec-websocket-key", b"sec-websocket-accept"])
def test_h2_handshake_with_a_key_or_accept_is_refused(name: bytes) -> None:
    """RFC 8441 §5: the key and accept belong to the HTTP/1.1 handshake; an extended CONNECT that
    carries them mixes the two and is refused with 400."""
    with pytest.raises(RemoteProtocolError) as caught:
        h2_check([*fields_of(WEBSOCKET), (name, b"dGhlIHNhbXBsZSBub25jZQ==")])
    assert caught.value.status == 400


@pytest.mark.parametrize("version", [None, b"8", b"12"])
def test_h2_handshake_with_another_version_is_426(version: bytes | None) -> None:
    """RFC 8441 §5, RFC 6455 §4.4: Sec-WebSocket-Version must be 13 over HTTP/2 too; the refusal
    names the version the server speaks."""
    fields = [f for f in fields_of(WEBSOCKET) if f[0] != b"sec-websocket-version"]
    if version is not None:
        fields.append((b"sec-websocket-version", version))
    with pytest.raises(RemoteProtocolError) as caught:
        parse_offer(fields)
    assert caught.value.status == 426
    phrase, answer, body = refusal(426, caught.value.detail)
    assert phrase == b"Upgrade Required" and (b"sec-websocket-version", b"13") in answer
    assert (b"content-length", b"%d" % len(body)) in answer


def test_accept_fields_carry_the_negotiation_and_the_apps_headers() -> None:
    """RFC 8441 §5: the 200 carries the chosen subprotocol and extensions and the app's headers;
    a body framing field from the app is dropped (the stream's DATA is the WebSocket)."""
    fields = accept_fields(
        b"chat",
        b"permessage-deflate; server_max_window_bits=12",
        [(b"x-a", b"1"), (b"content-length", b"0"), (b"transfer-encoding", b"chunked")],
    )
    assert fields == [
        (b"sec-websocket-protocol", b"chat"),
        (b"sec-websocket-extensions", b"permessage-deflate; server_max_window_bits=12"),
        (b"x-a", b"1"),
    ]


@pytest.mark.parametrize(
    ("subprotocol", "headers"),
    [(b"a b", []), (None, [(b"x-a", b"1\r\nx-b: 2")]), (None, [(b"bad name", b"1")])],
    ids=["subprotocol-not-a-token", "crlf-in-value", "name-not-a-token"],
)
def test_accept_fields_that_would_split_the_response_are_an_app_error(
    subprotocol: bytes | None, headers: list[tuple[bytes, bytes]]
) -> None:
    """The app's fields are checked as for the 101: nothing it sends can add a field."""
    with pytest.raises(LocalProtocolError):
        accept_fields(subprotocol, None, headers)

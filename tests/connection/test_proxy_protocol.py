"""The PROXY protocol stage over an in-memory transport: the header read from a trusted peer names
the connection's addresses, anything else closes it silently, and an untrusted peer goes straight
to HTTP/1.1."""

from __future__ import annotations

from typing import Any

from tests.connection.clients import H1Client, Receive, Send, respond
from tests.helpers.memory import ManualRuntime, MemoryTransport, server_context
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver
from wherry.connection.proxy_protocol import ProxyProtocolStage
from wherry.proto.proxy_protocol import V2_SIGNATURE

REQUEST = b"GET /where HTTP/1.1\r\nhost: example.com\r\n\r\n"


async def where(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await respond(send, repr((scope["client"], scope["server"])).encode())


def proxied(ctx: ServerContext, **extra: Any) -> tuple[MemoryTransport, ProxyProtocolStage]:
    """A connection to a listener that runs the PROXY stage first, as the backend makes one."""
    runtime = ctx.runtime
    assert isinstance(runtime, ManualRuntime)
    stage = ProxyProtocolStage(ctx)
    transport = MemoryTransport(runtime, stage, **extra)
    runtime.call(lambda: stage.connection_made(transport))
    return transport, stage


def context(runtime: ManualRuntime, **options: Any) -> ServerContext:
    options.setdefault("forwarded_allow_ips", "127.0.0.1")
    return server_context(where, runtime, proxy_protocol=True, **options)


def v2_unix(source: str, destination: str) -> bytes:
    block = source.encode().ljust(108, b"\x00") + destination.encode().ljust(108, b"\x00")
    return V2_SIGNATURE + bytes([0x21, 0x31]) + len(block).to_bytes(2, "big") + block


def test_v1_header_names_the_client_and_server(runtime: ManualRuntime) -> None:
    """A v1 header's addresses become the scope's client and server; the request after it is served."""
    transport, _ = proxied(context(runtime))
    transport.receive(b"PROXY TCP4 203.0.113.7 198.51.100.1 4711 443\r\n" + REQUEST)
    assert isinstance(transport.protocol, H1Driver)
    status, _, body = H1Client(transport).response()
    assert (status, body) == (200, b"(('203.0.113.7', 4711), ('198.51.100.1', 443))")


def test_header_split_across_reads_is_waited_for(runtime: ManualRuntime) -> None:
    """A header that arrives in pieces is completed before anything is handed over."""
    transport, stage = proxied(context(runtime))
    transport.receive(b"PROXY TCP4 203.0.113.7 ")
    assert transport.protocol is stage and transport.take() == b""
    transport.receive(b"198.51.100.1 4711 443\r\n")
    assert isinstance(transport.protocol, H1Driver)
    transport.receive(REQUEST)
    assert H1Client(transport).response()[2] == b"(('203.0.113.7', 4711), ('198.51.100.1', 443))"


def test_unknown_family_keeps_the_connection_addresses(runtime: ManualRuntime) -> None:
    """A v1 UNKNOWN header leaves the transport's own addresses in the scope."""
    transport, _ = proxied(context(runtime))
    transport.receive(b"PROXY UNKNOWN\r\n" + REQUEST)
    assert H1Client(transport).response()[2] == b"(('127.0.0.1', 50000), ('127.0.0.1', 8000))"


def test_v2_unix_header_names_a_socket_path_and_no_client(runtime: ManualRuntime) -> None:
    """A v2 UNIX header gives no client and the destination path as the server."""
    transport, _ = proxied(context(runtime))
    transport.receive(v2_unix("/run/client.sock", "/run/server.sock") + REQUEST)
    assert H1Client(transport).response()[2] == b"(None, ('/run/server.sock', None))"


def test_untrusted_peer_is_served_without_a_header(runtime: ManualRuntime) -> None:
    """A peer outside forwarded-allow-ips is HTTP/1.1 at once: its own address is the client."""
    transport, _ = proxied(context(runtime), peername=("192.0.2.5", 1234))
    assert isinstance(transport.protocol, H1Driver)
    transport.receive(REQUEST)
    assert H1Client(transport).response()[2] == b"(('192.0.2.5', 1234), ('127.0.0.1', 8000))"


def test_untrusted_peer_sending_a_header_is_refused(runtime: ManualRuntime) -> None:
    """From an untrusted peer a PROXY line is not read as a header: HTTP/1.1 refuses it as a line
    that is no request line (400)."""
    transport, _ = proxied(context(runtime), peername=("192.0.2.5", 1234))
    transport.receive(b"PROXY TCP4 203.0.113.7 198.51.100.1 4711 443\r\n" + REQUEST)
    status, headers, _ = H1Client(transport).response()
    assert (status, headers[b"connection"]) == (400, b"close")


def test_malformed_header_closes_with_nothing_written(runtime: ManualRuntime) -> None:
    """A malformed header closes the connection without a byte of answer."""
    transport, _ = proxied(context(runtime))
    transport.receive(b"PROXY TCP9 nowhere\r\n" + REQUEST)
    assert transport.take() == b""
    assert transport.log == ["close", "lost"]
    transport.receive(REQUEST)  # nothing more is read
    assert transport.take() == b""


def test_late_header_times_out(runtime: ManualRuntime) -> None:
    """A header not complete within the head timeout closes the connection, and only then."""
    ctx = context(runtime, timeout_request_head=5.0)
    transport, _ = proxied(ctx)
    transport.receive(b"PROXY TCP4 ")
    runtime.advance(4.9)
    assert not transport.closing
    runtime.advance(0.2)
    assert transport.log == ["close", "lost"] and transport.take() == b""
    assert not ctx.connections


def test_header_in_time_cancels_the_timeout(runtime: ManualRuntime) -> None:
    """Once the header is read its deadline no longer applies: the keep-alive one does."""
    ctx = context(runtime, timeout_request_head=5.0, timeout_keep_alive=60.0)
    transport, _ = proxied(ctx)
    transport.receive(b"PROXY UNKNOWN\r\n" + REQUEST)
    assert H1Client(transport).response()[0] == 200
    runtime.advance(30.0)
    assert not transport.closing


def test_eof_before_the_header_closes(runtime: ManualRuntime) -> None:
    """A peer that half-closes before a complete header has its connection closed."""
    ctx = context(runtime)
    transport, _ = proxied(ctx)
    transport.receive(b"PROXY ")
    transport.receive_eof()
    assert transport.log == ["close", "lost"] and transport.take() == b""
    assert not ctx.connections


def test_connection_during_shutdown_is_closed(runtime: ManualRuntime) -> None:
    """A trusted connection made while the server shuts down is closed at once."""
    ctx = context(runtime)
    ctx.shutting_down = True
    transport, _ = proxied(ctx)
    assert transport.log == ["close", "lost"]
    assert not runtime.timers.next_when() < float("inf")


def test_shutdown_and_abort_of_a_waiting_stage(runtime: ManualRuntime) -> None:
    """Shutdown closes a stage still waiting for its header; abort_all after it does nothing more."""
    transport, stage = proxied(context(runtime))
    runtime.call(stage.shutdown)
    assert transport.log == ["close", "lost"]
    runtime.call(stage.abort_all)
    assert transport.log == ["close", "lost"]


def test_abort_all_cuts_a_waiting_stage(runtime: ManualRuntime) -> None:
    """At the end of the graceful period a stage waiting for its header is aborted."""
    transport, stage = proxied(context(runtime))
    stage.pause_writing()
    stage.resume_writing()
    runtime.call(stage.abort_all)
    assert transport.log == ["abort", "lost"] and transport.aborted

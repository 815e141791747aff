"""What the tests of the drivers share: gates apps wait at, small apps, and an h11 client on the
peer's side of a ``MemoryTransport``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import wsproto
import wsproto.connection
import wsproto.events

from tests.helpers.memory import ManualRuntime, MemoryTransport

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Gate:
    """A point an app waits at until the test opens it (a runtime future: no wall clock)."""

    def __init__(self, runtime: ManualRuntime) -> None:
        self.runtime = runtime
        self.future = runtime.create_future()

    async def wait(self) -> None:
        await self.future

    def open(self) -> None:
        """Open the gate from a loop callback, then settle."""
        self.runtime.call(lambda: self.future.set_result(None))


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("disconnected")
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def respond(send: Send, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class H1Client:
    """An h11 client on the peer's side of a ``MemoryTransport``."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self.conn = h11.Connection(h11.CLIENT)
        self.peer_closed = False

    def send(self, *events: h11.Event) -> None:
        self.transport.receive(b"".join(self.conn.send(event) or b"" for event in events))

    def request(self, method: str = "GET", target: str = "/", body: bytes | None = None) -> None:
        headers = [("host", "example.com")]
        if body is not None:
            headers.append(("content-length", str(len(body))))
        events: list[h11.Event] = [h11.Request(method=method, target=target, headers=headers)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        self.send(*events)

    def events(self) -> list[h11.Event]:
        """The events of what the server wrote since the last call."""
        data = self.transport.take()
        if data:
            self.conn.receive_data(data)
        closed = self.transport.eof_written or self.transport.closing
        if closed and not self.transport.buffer and not self.peer_closed:
            self.peer_closed = True
            self.conn.receive_data(b"")  # the server's side is closed: no byte follows
        found: list[h11.Event] = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return found
            found.append(event)  # type: ignore[arg-type]
            if isinstance(event, h11.ConnectionClosed):
                return found

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next complete response (status, headers, body); starts the next cycle."""
        status = 0
        headers: dict[bytes, bytes] = {}
        body = b""
        for event in self.events():
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, headers, body
        raise AssertionError(f"no complete response; got status {status} and {body!r}")


def parse_responses(data: bytes, methods: list[str]) -> list[tuple[int, bytes]]:
    """Split ``data`` into the responses to ``methods`` requests sent in order (pipelined), with
    h11's framing rules; every byte must belong to a response."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    found: list[tuple[int, bytes]] = []
    for method in methods:
        conn.send(h11.Request(method=method, target="/", headers=[("host", "example.com")]))
        conn.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            event = conn.next_event()
            assert event is not h11.NEED_DATA, f"response {len(found) + 1} incomplete: {data!r}"
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        found.append((status, body))
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
    assert conn.trailing_data == (b"", False), f"bytes after the responses: {conn.trailing_data}"
    return found


class H2Client:
    """An h2 client on the peer's side of a ``MemoryTransport`` (the connection preface is sent
    by ``start``, or after the 101 of an h2c Upgrade)."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )

    def start(self, settings: dict[int, int] | None = None) -> None:
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.transport.receive(data)

    def request(
        self, path: str = "/", method: str = "GET", body: bytes | None = None, end: bool = True
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "example.com")]
        if body is not None:
            headers.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, headers, end_stream=body is None and end)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def events(self) -> list[h2.events.Event]:
        """The events of what the server wrote since the last call (SETTINGS and PINGs are
        acknowledged)."""
        data = self.transport.take()
        events = self.conn.receive_data(data) if data else []
        self.flush()
        return events


class Responses:
    """HTTP/2 responses gathered from events, by stream."""

    def __init__(self) -> None:
        self.status: dict[int, int] = {}
        self.body: dict[int, bytes] = {}
        self.ended: list[int] = []  # streams in the order they ended

    def add(self, events: list[h2.events.Event]) -> Responses:
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                assert event.stream_id is not None and event.headers is not None
                self.status[event.stream_id] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                self.body[event.stream_id] = self.body.get(event.stream_id, b"") + event.data
            elif isinstance(event, h2.events.StreamEnded):
                assert event.stream_id is not None
                self.ended.append(event.stream_id)
        return self


class WSClient:
    """A wsproto client on the peer's side of a ``MemoryTransport``."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self.conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.peer_closed = False
        self.pending: list[wsproto.events.Event] = []  # read with the handshake's answer

    def send(self, event: wsproto.events.Event) -> None:
        self.transport.receive(self.conn.send(event))

    def events(self) -> list[wsproto.events.Event]:
        """The events of what the server wrote since the last call (its end of the TCP connection
        too, once it closed)."""
        data = self.transport.take()
        if data:
            self.conn.receive_data(data)
        events = [*self.pending, *self.conn.events()]
        self.pending = []
        closed = self.transport.closing and not self.transport.buffer
        if (
            closed
            and not self.peer_closed
            and self.conn.state is not wsproto.connection.ConnectionState.CLOSED
        ):
            self.peer_closed = True
            self.conn.receive_data(None)  # (after the frames: wsproto parses them lazily)
            events += self.conn.events()
        return events

    def handshake(self, target: str = "/ws") -> wsproto.events.Event:
        """Send the opening handshake; the server's answer (AcceptConnection or a rejection)."""
        self.send(wsproto.events.Request(host="example.com", target=target))
        answer, *self.pending = self.events()
        return answer

"""A real HTTP/2 client for the tests: h2's client state machine over a real socket (plain h2c or
TLS with ALPN), plus the test certificates (trustme)."""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import trustme

WAIT = 5.0


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    server_file: Path  # certificate chain and key, PEM
    client_file: Path  # a client certificate for mTLS, with its key
    other_ca_file: Path  # a CA that signed nothing the server trusts
    stranger_file: Path  # a client certificate from that other CA

    def client_context(
        self, alpn: tuple[str, ...] = ("h2", "http/1.1"), client_cert: Path | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.set_alpn_protocols(list(alpn))
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert))
        return ctx


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server_file = directory / "server.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(server_file))
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("client@example.org", common_name="Client, One", organization_name="Wherry Tests")
    client_file = directory / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(client_file))
    other = trustme.CA()
    other_ca_file = directory / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_ca_file))
    stranger = other.issue_cert("stranger@example.org")
    stranger_file = directory / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(stranger_file))
    return Certs(ca, ca_file, server_file, client_file, other_ca_file, stranger_file)


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[tuple[int, list[tuple[bytes, bytes]]]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None
    data_frames: int = 0

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2Client:
    """One client connection. ``events()`` reads what arrived and feeds it to h2."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
        auto_ack: bool = True,
        preface: bool = True,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=WAIT)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.auto_ack = auto_ack  # acknowledge received DATA (open the window) as it arrives
        self.responses: dict[int, Response] = {}
        self.pushed: dict[int, tuple[int, list[tuple[bytes, bytes]]]] = {}  # promised -> parent, headers
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.all_events: list[Any] = []
        self._buffer = b""
        if preface:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        end: bool = True,
        authority: bytes = b"localhost",
        scheme: bytes = b"https",
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        block = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", scheme),
            (b":authority", authority),
            *(headers or []),
        ]
        self.conn.send_headers(sid, block, end_stream=end and not body)
        self.responses[sid] = Response()
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def events(self, timeout: float = WAIT) -> list[Any]:
        """Read once (waiting up to ``timeout``) and return h2's events; [] on timeout."""
        if self.closed:
            return []
        readable = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        if not readable:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return []
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(self._strip_graceful_goaway(data))
        for event in events:
            self._note(event)
        self.all_events.extend(events)
        self.flush()
        return events

    def _strip_graceful_goaway(self, data: bytes) -> bytes:
        """h2's client state machine refuses every frame after a GOAWAY, even on the streams the
        GOAWAY lets finish; a graceful one (NO_ERROR) is recorded here and not passed on."""
        self._buffer += data
        out = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            frame, self._buffer = self._buffer[: 9 + length], self._buffer[9 + length :]
            if frame[3] == 0x7 and int.from_bytes(frame[13:17], "big") == 0:
                self.goaway = h2.events.ConnectionTerminated()
                self.goaway.error_code = h2.errors.ErrorCodes.NO_ERROR
                self.goaway.last_stream_id = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
                continue
            out.append(frame)
        return b"".join(out)

    def _note(self, event: Any) -> None:
        sid = getattr(event, "stream_id", None)
        response = self.responses.get(sid) if sid is not None else None
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            response.headers = [(n, v) for n, v in event.headers if n != b":status"]
            response.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived) and response is not None:
            fields = [(n, v) for n, v in event.headers if n != b":status"]
            response.informational.append((int(dict(event.headers)[b":status"]), fields))
        elif isinstance(event, h2.events.DataReceived) and response is not None:
            response.body += event.data
            response.data_frames += 1
            if self.auto_ack and event.flow_controlled_length:
                assert sid is not None  # the response was found by it
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.TrailersReceived) and response is not None:
            response.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and response is not None:
            response.ended = True
        elif isinstance(event, h2.events.StreamReset) and response is not None:
            response.reset = int(event.error_code)
        elif isinstance(event, h2.events.PushedStreamReceived):
            assert event.pushed_stream_id is not None and event.parent_stream_id is not None
            assert event.headers is not None
            self.pushed[event.pushed_stream_id] = (event.parent_stream_id, list(event.headers))
            self.responses[event.pushed_stream_id] = Response()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def wait(self, predicate: Any, timeout: float = WAIT) -> bool:
        """Read until ``predicate()`` holds (True) or ``timeout`` passes or the peer closes."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return bool(predicate())
            self.events(min(left, 0.5))
        return True

    def response(self, sid: int, timeout: float = WAIT) -> Response:
        response = self.responses[sid]
        self.wait(lambda: response.ended or response.reset is not None, timeout)
        return response

    def wait_closed(self, timeout: float = WAIT) -> bool:
        return self.wait(lambda: self.closed, timeout)

    def wait_goaway(self, timeout: float = WAIT) -> h2.events.ConnectionTerminated | None:
        self.wait(lambda: self.goaway is not None, timeout)
        return self.goaway


def settings(**values: int) -> dict[int, int]:
    codes = h2.settings.SettingCodes
    return {getattr(codes, name.upper()): value for name, value in values.items()}


def h2c_upgrade(sock: socket.socket, path: str, body: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """An h2c Upgrade request (RFC 7540 §3.2) on ``sock``: the 101's head, then the headers and
    body of the answer on stream 1 over HTTP/2."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    offer = conn.initiate_upgrade_connection()
    assert offer is not None  # a client's upgrade has its HTTP2-Settings
    sock.sendall(
        b"POST %b HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: %b\r\nContent-Length: %d\r\n\r\n%b" % (path.encode(), offer, len(body), body)
    )
    sock.settimeout(WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    sock.sendall(conn.data_to_send())
    headers: dict[bytes, bytes] = {}
    answer = b""
    while True:
        for event in conn.receive_data(rest):
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                answer += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                sock.sendall(conn.data_to_send())
                return head, headers, answer
        sock.sendall(conn.data_to_send())
        rest = sock.recv(65536)
        assert rest, "closed before the answer on stream 1 ended"

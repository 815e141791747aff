"""The PROXY protocol header (versions 1 and 2), sans-IO: bytes in, one header out.

A load balancer that speaks the PROXY protocol (HAProxy's ``send-proxy`` / ``send-proxy-v2``, AWS
NLB, nginx's ``proxy_protocol on`` in the stream module) opens each connection to the server with a
header giving the client's and the server's addresses as it saw them; the bytes of the proxied
protocol follow.

Rules of this module:

1. ``ProxyHeaderParser.feed(data)`` returns None until the header is complete, then the header;
   the bytes that came after it are in ``rest``. ``feed(b"")`` is the end of input (the server's one
   EOF convention): before a complete header it is an error.
2. Anything that is not exactly a header is a ``ProxyProtocolError``, and the caller closes the
   connection: nothing of a malformed header is guessed at, and no byte of it reaches HTTP.
3. Bounds: a version 1 line is at most 107 bytes with its CRLF (the specification's own limit);
   a version 2 header is 16 bytes plus the 16-bit length it announces. Time is the caller's: the
   header must arrive within the request-head deadline.
4. No I/O, no sockets, no clock: addresses are returned as text (``ipaddress`` normal form).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

V1_PREFIX = b"PROXY "
V1_MAX = 107  # "PROXY TCP6 " + two full IPv6 addresses + two ports + spaces + CRLF
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16

# Version 2 type-length-value records worth naming (the rest are kept by number).
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_SSL = 0x20
PP2_CLIENT_SSL = 0x01

_V2_FAMILIES = {
    # family/protocol byte -> (name, address block length)
    0x00: ("UNSPEC", 0),
    0x11: ("TCP4", 12),
    0x21: ("TCP6", 36),
    0x31: ("UNIX", 216),
}


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header: close the connection."""


class ProxyHeader:
    """What the header says. ``source``/``destination`` are ``(host, port)`` (a path and None for
    UNIX), or None when the header gives no usable address (v1 UNKNOWN, v2 LOCAL or UNSPEC): the
    connection's own addresses stand then."""

    __slots__ = ("command", "destination", "family", "source", "tlvs", "version")

    def __init__(
        self,
        version: int,
        command: str,
        family: str,
        source: tuple[str, int | None] | None,
        destination: tuple[str, int | None] | None,
        tlvs: list[tuple[int, bytes]],
    ) -> None:
        self.version = version
        self.command = command  # "PROXY" or "LOCAL"
        self.family = family  # "TCP4", "TCP6", "UNIX", "UNKNOWN", "UNSPEC"
        self.source = source
        self.destination = destination
        self.tlvs = tlvs

    @property
    def ssl(self) -> bool:
        """The client reached the proxy over TLS (a v2 PP2_TYPE_SSL record with PP2_CLIENT_SSL)."""
        return any(t == PP2_TYPE_SSL and v[:1] and v[0] & PP2_CLIENT_SSL for t, v in self.tlvs)

    def __repr__(self) -> str:
        where = f"{self.source} -> {self.destination}"
        return f"ProxyHeader(v{self.version}, {self.command}, {self.family}, {where})"


class ProxyHeaderParser:
    """Reads one PROXY header from the start of a connection (rule 1)."""

    __slots__ = ("_buffer", "done", "rest")

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        if self.done:
            raise ProxyProtocolError("the header was already read")
        if not data:
            raise ProxyProtocolError("connection closed before a complete PROXY header")
        buffer = self._buffer = self._buffer + data
        # Decide the version from the first bytes, failing as soon as they cannot match either.
        head = buffer[:12]
        if not (V1_PREFIX.startswith(head[:6]) or V2_SIGNATURE.startswith(head)):
            raise ProxyProtocolError("not a PROXY protocol header")
        if buffer[:1] == b"P":
            return self._v1(buffer)
        return self._v2(buffer)

    def _finish(self, header: ProxyHeader, used: int) -> ProxyHeader:
        self.rest = self._buffer[used:]
        self._buffer = b""
        self.done = True
        return header

    def _v1(self, buffer: bytes) -> ProxyHeader | None:
        end = buffer.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(buffer) >= V1_MAX:
                raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
            if b"\n" in buffer or (b"\r" in buffer[:-1]):
                raise ProxyProtocolError("PROXY v1 line without CRLF")
            return None
        line = buffer[:end]
        if b"\n" in line or b"\r" in line:
            raise ProxyProtocolError("PROXY v1 line without CRLF")
        return self._finish(_parse_v1(line), end + 2)

    def _v2(self, buffer: bytes) -> ProxyHeader | None:
        if len(buffer) < V2_HEADER:
            return None
        length = int.from_bytes(buffer[14:16], "big")
        total = V2_HEADER + length
        if len(buffer) < total:
            return None
        return self._finish(_parse_v2(buffer[12], buffer[13], buffer[V2_HEADER:total]), total)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0"):
        raise ProxyProtocolError(f"bad port {text[:8]!r} in PROXY v1 line")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError("port out of range in PROXY v1 line")
    return port


def _parse_v1(line: bytes) -> ProxyHeader:
    parts = line.split(b" ")  # the line starts with V1_PREFIX (feed checked): two parts at least
    family = parts[1]
    if family == b"UNKNOWN":
        # The sender could not say; whatever follows up to CRLF is ignored (spec §2.1).
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, [])
    if family not in (b"TCP4", b"TCP6") or len(parts) != 6:
        raise ProxyProtocolError("malformed PROXY v1 line")
    version = ipaddress.IPv4Address if family == b"TCP4" else ipaddress.IPv6Address
    try:
        source = version(parts[2].decode("ascii"))
        destination = version(parts[3].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError(f"bad address in PROXY v1 {family.decode()} line") from None
    return ProxyHeader(
        1,
        "PROXY",
        family.decode(),
        (str(source), _port(parts[4])),
        (str(destination), _port(parts[5])),
        [],
    )


def _parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    tlvs = []
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyProtocolError("truncated PROXY v2 TLV")
        kind = data[at]
        size = int.from_bytes(data[at + 1 : at + 3], "big")
        value = data[at + 3 : at + 3 + size]
        if len(value) != size:
            raise ProxyProtocolError("truncated PROXY v2 TLV")
        tlvs.append((kind, value))
        at += 3 + size
    return tlvs


def _parse_v2(version_command: int, family_byte: int, payload: bytes) -> ProxyHeader:
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"unsupported PROXY protocol version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError(f"unknown PROXY v2 command {command}")
    known = _V2_FAMILIES.get(family_byte)
    if known is None:
        raise ProxyProtocolError(f"unsupported PROXY v2 address family/protocol 0x{family_byte:02x}")
    family, size = known
    if len(payload) < size:
        raise ProxyProtocolError("PROXY v2 address block shorter than its family needs")
    tlvs = _parse_tlvs(payload[size:])
    if command == 0:
        # LOCAL: the proxy's own connection (a health check); the real endpoints stand.
        return ProxyHeader(2, "LOCAL", family, None, None, tlvs)
    source: tuple[str, int | None] | None = None
    destination: tuple[str, int | None] | None = None
    if family == "TCP4":
        source = (str(ipaddress.IPv4Address(payload[0:4])), int.from_bytes(payload[8:10], "big"))
        destination = (str(ipaddress.IPv4Address(payload[4:8])), int.from_bytes(payload[10:12], "big"))
    elif family == "TCP6":
        source = (str(ipaddress.IPv6Address(payload[0:16])), int.from_bytes(payload[32:34], "big"))
        destination = (str(ipaddress.IPv6Address(payload[16:32])), int.from_bytes(payload[34:36], "big"))
    elif family == "UNIX":
        source = (_unix_path(payload[0:108]), None)
        destination = (_unix_path(payload[108:216]), None)
    return ProxyHeader(2, "PROXY", family, source, destination, tlvs)


def _unix_path(raw: bytes) -> str:
    return raw.partition(b"\x00")[0].decode("utf-8", "replace")


def v1_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 1 header line (the sender's side; used by tests and tools)."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def v2_header(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None,
    tlvs: Sequence[tuple[int, bytes]] = (),
    local: bool = False,
) -> bytes:
    """A version 2 header (the sender's side; used by tests and tools)."""
    extra = b"".join(bytes([t]) + len(v).to_bytes(2, "big") + v for t, v in tlvs)
    if source is None or destination is None:
        family, block = 0x00, b""
    else:
        src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
        family = 0x11 if src.version == 4 else 0x21
        block = src.packed + dst.packed + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")
    body = block + extra
    command = 0x20 if local else 0x21
    return V2_SIGNATURE + bytes([command, family]) + len(body).to_bytes(2, "big") + body

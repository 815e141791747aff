"""Building WebSocket wire bytes by hand (a client's frames, handshakes) and reading a server's."""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib

from tests.conftest import recv_all

KEY = base64.b64encode(b"0123456789abcdef")

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool | int = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame as a client sends it (masked unless ``mask`` is false). ``rsv`` is the three
    reserved bits (0-7); ``length`` overrides the declared payload length."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_frame(code: int | None = 1000, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def deflated(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def handshake(path: str = "/", extra: bytes = b"", key: bytes = KEY) -> bytes:
    return (
        b"GET %b HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: 13\r\n%b\r\n" % (path.encode(), key, extra)
    )


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole unmasked frame in ``data`` (a server's output)."""
    out = []
    while len(data) >= 2:
        opcode = data[0] & 0x0F
        size = data[1] & 0x7F
        offset = 2
        if size == 126:
            size = struct.unpack("!H", data[2:4])[0]
            offset = 4
        elif size == 127:
            size = struct.unpack("!Q", data[2:10])[0]
            offset = 10
        if len(data) < offset + size:
            break
        out.append((opcode, data[offset : offset + size]))
        data = data[offset + size :]
    return out


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def open_websocket(sock: socket.socket, path: str = "/", extra: bytes = b"") -> tuple[bytes, bytes]:
    """Send a handshake on ``sock`` and read the 101 (asserted); returns its head and the bytes
    that came after it."""
    sock.sendall(handshake(path, extra))
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"closed during the handshake: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return head, rest


read_until_closed = recv_all  # bytes until the peer closes

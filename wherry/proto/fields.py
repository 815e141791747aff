"""Header fields (RFC 9110 §5): which names and values the server sends, one rule for every protocol.

Rules of this module:

1. A field the server sends (response heads, 1xx, trailer sections, pushed requests, WebSocket
   handshake answers, on HTTP/1.1 and HTTP/2 alike) has a name that is a token (RFC 9110 §5.1,
   §5.6.2) and a value made of field-content (§5.5): no NUL, CR, LF or any other control byte
   (0x00-0x1f, 0x7f) but HTAB. obs-text (0x80-0xff) is carried, as RFC 9110 allows. A field that
   breaks this raises ``LocalProtocolError``: the application asked for something no protocol can
   carry (on HTTP/1.1 a CR or LF would split the response), and it is refused the same way
   whichever protocol the client speaks.
2. Leading and trailing whitespace (SP, HTAB) is not part of a field value (RFC 9110 §5.5), so a
   value the application gives with it is sent without it, on every protocol. Why not refuse it:
   an HTTP/1.1 recipient drops that whitespace as it parses, so such a response always worked and
   the client saw the trimmed value; refusing it would turn a formatting slip into a 500 (and break
   apps that run unchanged on other ASGI servers). Why not send it as given: HTTP/2 forbids it
   (RFC 9113 §8.2.1), so the same app would then depend on the protocol. Trimming gives the client
   the value RFC 9110 defines, byte for byte the same on both protocols. Whitespace inside a value
   is kept.
3. HTTP/2 adds RFC 9113 §8.2 on top of rules 1 and 2, not a rule of its own: names are sent
   lowercased (§8.2.1) and connection-specific fields (§8.2.2, ``CONNECTION_SPECIFIC``) are not
   sent (``h2_field``).
4. A trailer section (RFC 9110 §6.5.1) leaves out the fields that must not be trailers
   (``TRAILER_DROPPED``: framing, routing, authentication, how to read the content, and the
   connection-specific ones) on every protocol; the others follow rules 1-2, names lowercased
   (``trailer_fields``).
5. What a server receives is its parser's to check: llhttp on HTTP/1.1 (strict: token names, no
   control byte but HTAB in values), and on HTTP/2 RFC 9113 §8.2.1 as written
   (``h2_received_name``, ``h2_received_value``): no uppercase, no byte outside 0x21-0x7e in a
   name and no colon; no NUL, CR or LF in a value and no whitespace around it. Other control bytes
   in a received HTTP/2 value are carried (RFC 9110 §5.5 lets a recipient keep them); the
   proxy-header and WebSocket readers handle them (docs/discussion/proxies-and-logs.md).
6. The checks are precompiled regular expressions, one search per name and per value; the
   protocol cores also remember the fields they have checked, so an application that sends the
   same fields again pays a dictionary lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from .events import Headers, LocalProtocolError

# token = 1*tchar (RFC 9110 §5.6.2).
TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# field-value = *field-content; field-content = field-vchar [ 1*( SP / HTAB / field-vchar )
# field-vchar ]; field-vchar = VCHAR / obs-text (RFC 9110 §5.5): what is sent as it is.
_VALUE: Final = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
# What no field value may hold anywhere: a control byte other than HTAB.
_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_OWS: Final = b" \t"

# Response fields that only mean something on one HTTP/1.1 connection (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te")
)
# Fields that must not be trailers (RFC 9110 §6.5.1): message framing, routing, authentication,
# how to process the content, and the connection-specific ones.
TRAILER_DROPPED: Final = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"trailer",
        b"content-type",
        b"content-encoding",
        b"authorization",
        b"set-cookie",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"upgrade",
        b"te",
    )
)

# Received on HTTP/2 (RFC 9113 §8.2.1): a name without 0x00-0x20, A-Z, 0x7f-0xff or a colon; a
# value without NUL, CR or LF and without whitespace around it.
_H2_RECEIVED_NAME: Final = re.compile(rb"[^\x00-\x20A-Z:\x7f-\xff]+")
_H2_RECEIVED_BAD_VALUE: Final = re.compile(rb"[\x00\x0a\x0d]|\A[ \t]|[ \t]\Z")


def is_token(data: bytes) -> bool:
    """``data`` is a token (RFC 9110 §5.6.2): a valid field name, method or coding."""
    return TOKEN.fullmatch(data) is not None


def field_value(name: bytes, value: bytes, kind: str) -> bytes:
    """The value to send for ``value`` (rules 1-2): as it is, or without the whitespace around it.
    Raises ``LocalProtocolError`` for a control byte other than HTAB; ``kind`` names the field in
    the message (``"response header"``, ``"trailer field"``)."""
    if _VALUE.fullmatch(value) is not None:
        return value
    if _CONTROL.search(value) is not None:
        raise LocalProtocolError(f"invalid {kind} value for {name!r}")
    return value.strip(_OWS)


def check_field(name: bytes, value: bytes, kind: str) -> bytes:
    """Check a field to send (rule 1); the value to send (rule 2). Raises ``LocalProtocolError``."""
    if TOKEN.fullmatch(name) is None:
        raise LocalProtocolError(f"invalid {kind} name {name!r}")
    return field_value(name, value, kind)


def h2_field(name: bytes, value: bytes, kind: str) -> tuple[bytes, bytes] | None:
    """A field to send on HTTP/2 (rule 3): its lowercased name and its value, or None for a
    connection-specific field, which is not sent. Raises ``LocalProtocolError``."""
    lname = name.lower()
    if lname in CONNECTION_SPECIFIC:
        return None
    return lname, check_field(lname, value, kind)


def check_fields(headers: Iterable[Sequence[bytes]], kind: str) -> Headers:
    """Every field of ``headers`` checked (rule 1), values as they are sent (rule 2)."""
    return [(name, check_field(name, value, kind)) for name, value in headers]


def trailer_fields(headers: Iterable[Sequence[bytes]]) -> Headers:
    """The trailer section to send (rule 4): names lowercased, the fields that must not be
    trailers left out, the others checked. Raises ``LocalProtocolError``."""
    out: Headers = []
    for name, value in headers:
        lname = name.lower()
        if lname in TRAILER_DROPPED:
            continue
        out.append((lname, check_field(lname, value, "trailer field")))
    return out


def h2_received_name(name: bytes) -> bool:
    """A regular field name received on HTTP/2 is well-formed (rule 5)."""
    return _H2_RECEIVED_NAME.fullmatch(name) is not None


def h2_received_value(value: bytes) -> bool:
    """A field value received on HTTP/2 is well-formed (rule 5)."""
    return not value or _H2_RECEIVED_BAD_VALUE.search(value) is None

"""One header-field rule for every protocol (wherry/proto/fields.py, RFC 9110 §5): the same field
from the app gets the same answer over HTTP/1.1 and HTTP/2, in a response head, in a trailer
section and in a WebSocket handshake answer. Real sockets; the HTTP/2 side is h2's client over h2c."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import RunningServer, recv_all
from tests.e2e.test_h2_websocket import WSClient
from tests.h2util import H2Client
from tests.wsframes import handshake

Serve = Callable[..., RunningServer]

# The field the app sends, by case; and what every protocol must make of it: refused (the app's
# error), or sent with the value the client reads (leading and trailing whitespace are not part of
# a field value, RFC 9110 §5.5).
FIELDS: dict[str, tuple[bytes, bytes]] = {
    "control-byte": (b"x-a", b"a\x01b"),
    "delete": (b"x-a", b"a\x7f"),
    "vertical-tab": (b"x-a", b"a\x0bb"),
    "name-not-a-token": (b"x a", b"1"),
    "padded": (b"x-a", b" \ta b \t"),
    "obs-text-and-tab": (b"x-a", b"a\tb\xe9"),
}
SENT = {"padded": b"a b", "obs-text-and-tab": b"a\tb\xe9"}


def expected(case: str) -> tuple[Any, ...]:
    return ("sent", SENT[case]) if case in SENT else ("refused",)


async def app(scope: Any, receive: Any, send: Any) -> None:
    kind, _, case = scope["path"].strip("/").partition("/")
    field = FIELDS.get(case, (b"x-a", b"1"))
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept", "headers": [field]})
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    if kind == "head":
        headers = [field, (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"trailer", b"x-a")],
        "trailers": True,
    }
    await send(start)
    await send({"type": "http.response.body", "body": b"ok"})
    trailers = [field, (b"content-type", b"text/plain")]  # content-type is never a trailer
    await send({"type": "http.response.trailers", "headers": trailers})


def raw_head(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, fields as written (the bytes after ``name: ``, nothing stripped) and what follows."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.lower()] = value[1:] if value[:1] == b" " else value
    return int(lines[0].split(b" ")[1]), fields, rest


def h1_exchange(server: RunningServer, request: bytes) -> bytes:
    with server.connect() as sock:
        sock.sendall(request)
        return recv_all(sock)


def head_answer_h1(server: RunningServer, case: str) -> tuple[Any, ...]:
    data = h1_exchange(
        server, b"GET /head/%b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % case.encode()
    )
    status, fields, body = raw_head(data)
    if status == 500:
        return ("refused",)
    assert (status, body) == (200, b"ok"), data
    return ("sent", fields[b"x-a"])


def head_answer_h2(server: RunningServer, case: str) -> tuple[Any, ...]:
    with H2Client(server.host, server.port) as client:
        response = client.response(client.request(f"/head/{case}", scheme=b"http"))
    if response.status == 500:
        return ("refused",)
    assert (response.status, response.body, response.ended) == (200, b"ok", True)
    return ("sent", response.header(b"x-a"))


def trailer_answer_h1(server: RunningServer, case: str) -> tuple[Any, ...]:
    request = b"GET /trailer/%b HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    status, _, body = raw_head(h1_exchange(server, request % case.encode()))
    assert status == 200
    if not body.startswith(b"2\r\nok\r\n0\r\n") or not body.endswith(b"\r\n\r\n"):
        assert body in (b"", b"2\r\nok\r\n"), body
        return ("cut",)  # the connection closed before the last chunk: the response is incomplete
    section = body[len(b"2\r\nok\r\n0\r\n") : -2]
    return ("complete", [tuple(line.split(b": ", 1)) for line in section.split(b"\r\n") if line])


def trailer_answer_h2(server: RunningServer, case: str) -> tuple[Any, ...]:
    with H2Client(server.host, server.port) as client:
        sid = client.request(f"/trailer/{case}", headers=[(b"te", b"trailers")], scheme=b"http")
        response = client.response(sid)
    assert response.status == 200
    if response.reset is not None:
        return ("cut",)
    assert response.ended and response.body == b"ok"
    return ("complete", response.trailers)


def ws_answer_h1(server: RunningServer, case: str) -> tuple[Any, ...]:
    status, fields, _ = raw_head(h1_exchange(server, handshake(f"/ws/{case}")))
    if status == 500:
        return ("refused",)
    assert status == 101
    return ("sent", fields[b"x-a"])


def ws_answer_h2(server: RunningServer, case: str) -> tuple[Any, ...]:
    with WSClient(server.host, server.port) as client:
        response = client.opened(client.open(f"/ws/{case}".encode()))
    if response.status == 500:
        return ("refused",)
    assert response.status == 200
    return ("sent", response.header(b"x-a"))


@pytest.mark.parametrize("case", list(FIELDS))
def test_a_response_field_gets_the_same_answer_on_http11_and_http2(serve: Serve, case: str) -> None:
    """RFC 9110 §5.5: a control byte (or a name that is not a token) is the app's error, a 500 on
    both protocols; whitespace around a value is not sent on either; the rest is sent as given."""
    server = serve(app, lifespan="off")
    assert head_answer_h1(server, case) == head_answer_h2(server, case) == expected(case)


@pytest.mark.parametrize("case", list(FIELDS))
def test_a_trailer_field_gets_the_same_answer_on_http11_and_http2(serve: Serve, case: str) -> None:
    """RFC 9110 §6.5: a trailer field follows the rule of every field, and a field that must not
    be a trailer (content-type, §6.5.1) is left out; a refused trailer cuts the response short on
    both protocols (no last chunk on HTTP/1.1, RST_STREAM on HTTP/2)."""
    server = serve(app, lifespan="off")
    sent = expected(case)
    answer = ("complete", [(b"x-a", sent[1])]) if sent[0] == "sent" else ("cut",)
    assert trailer_answer_h1(server, case) == trailer_answer_h2(server, case) == answer


@pytest.mark.parametrize("case", list(FIELDS))
def test_a_websocket_accept_field_gets_the_same_answer_on_http11_and_http2(serve: Serve, case: str) -> None:
    """RFC 6455 §4.2.2 and RFC 8441 §5: the app's fields in websocket.accept follow the rule of
    every field; a refused one makes the handshake a 500 on both protocols."""
    server = serve(app, lifespan="off")
    assert ws_answer_h1(server, case) == ws_answer_h2(server, case) == expected(case)

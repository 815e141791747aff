"""``WebSocketCycle`` seen from the app and from the stream, beyond the send state table: what
``receive()`` gives, how ``send()`` checks each message's fields, waiting on a paused writer, and how
the app's end is answered. The cycle runs against an in-memory stream, and a test steps the
steps that wait (``tests/asgi/stepping.py``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.asgi.stepping import Stepped, Waiter
from tests.asgi.test_response_states import run
from tests.asgi.test_websocket_states import MemoryStream
from wherry.asgi.http import ClientDisconnected, FutureLike, Message
from wherry.asgi.websocket import CLOSED, CONNECTED, CONNECTING, RESPONDING, WebSocketCycle
from wherry.proto.events import Headers


class LoopStream(MemoryStream):
    """A ``MemoryStream`` whose futures are ``Waiter``s, which records the headers an
    accept carries, each message taken while reading is paused, and each wait for the writer."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: Headers = []

    def create_future(self) -> FutureLike:
        return Waiter()

    def accept(self, cycle: WebSocketCycle, subprotocol: str | None, headers: Headers) -> int:
        self.headers = headers
        return super().accept(cycle, subprotocol, headers)

    def message_consumed(self, cycle: WebSocketCycle) -> None:
        self.calls.append(("consumed", cycle.queued))

    async def drain(self) -> None:
        self.calls.append(("drain",))


def new_cycle(*messages: Message) -> tuple[WebSocketCycle, LoopStream]:
    """A cycle over a ``LoopStream`` after the app's ``messages``."""
    stream = LoopStream()
    cycle = WebSocketCycle({"type": "websocket"}, stream)
    for message in messages:
        run(cycle.send(message))
    return cycle, stream


ACCEPT: Message = {"type": "websocket.accept"}
DENY: Message = {"type": "websocket.http.response.start", "status": 403, "headers": []}


def test_receive_gives_connect_then_messages_in_order_then_the_disconnect() -> None:
    """receive() gives websocket.connect, each queued message as text or bytes, then the close code
    and reason once the session is over."""
    cycle, _stream = new_cycle()
    cycle.feed_message("one")
    cycle.feed_message(b"two")
    cycle.feed_closed(1001, "going away")

    async def app() -> list[Message]:
        return [await cycle.receive() for _ in range(4)]

    assert Stepped(app()).result == [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "one"},
        {"type": "websocket.receive", "bytes": b"two"},
        {"type": "websocket.disconnect", "code": 1001, "reason": "going away"},
    ]


def test_receive_waits_for_the_next_message_and_for_the_end() -> None:
    """A receive() with nothing queued waits until a message arrives, and again until the close."""
    cycle, _stream = new_cycle()
    assert Stepped(cycle.receive()).result == {"type": "websocket.connect"}
    waiting = Stepped(cycle.receive())
    assert not waiting.done
    cycle.feed_message("late")
    waiting.step()
    assert waiting.result == {"type": "websocket.receive", "text": "late"}
    waiting = Stepped(cycle.receive())
    assert not waiting.done
    cycle.feed_closed(1000)
    waiting.step()
    assert waiting.result == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


def test_the_first_close_code_is_the_one_the_app_sees() -> None:
    """feed_closed() after the session is over keeps the first code and reason; closed says so."""
    cycle, _stream = new_cycle()
    assert not cycle.closed
    cycle.feed_closed(1000, "bye")
    cycle.feed_closed(1006)
    assert cycle.closed

    async def app() -> Message:
        await cycle.receive()
        return await cycle.receive()

    assert Stepped(app()).result == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}


def test_a_message_taken_while_reading_is_paused_is_reported_to_the_stream() -> None:
    """With read_paused set, each message the app takes is reported with message_consumed()."""
    cycle, stream = new_cycle()
    stream.read_paused = True
    cycle.feed_message("a")
    cycle.feed_message("b")

    async def app() -> list[Message]:
        return [await cycle.receive() for _ in range(3)]

    assert [message["type"] for message in Stepped(app()).result] == [
        "websocket.connect",
        *["websocket.receive"] * 2,
    ]
    assert stream.calls == [("consumed", 1), ("consumed", 0)]


def test_send_waits_for_the_writer_while_it_is_paused() -> None:
    """While write_paused is set, each send() awaits the stream's drain() after writing."""
    cycle, stream = new_cycle(ACCEPT)
    stream.write_paused = True
    assert Stepped(cycle.send({"type": "websocket.send", "bytes": b"x"})).done
    assert stream.calls[-2:] == [("message", b"x"), ("drain",)]


def test_accept_passes_the_subprotocol_and_lowercased_headers() -> None:
    """websocket.accept gives the stream its subprotocol and its headers with lowercase names."""
    cycle, stream = new_cycle()
    run(cycle.send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"X-Id", b"7")]}))
    assert (cycle.state, cycle.status) == (CONNECTED, 101)
    assert stream.calls == [("accept", "chat")]
    assert stream.headers == [(b"x-id", b"7")]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "websocket.accept", "subprotocol": b"chat"}, TypeError),
        ({"type": "websocket.accept", "headers": [("x-id", b"7")]}, TypeError),
        ({"type": "websocket.accept", "headers": [(b"x-id", "7")]}, TypeError),
        ({"type": "websocket.accept", "headers": [(b"Sec-WebSocket-Protocol", b"chat")]}, ValueError),
    ],
    ids=["bytes-subprotocol", "str-name", "str-value", "protocol-header"],
)
def test_an_invalid_accept_is_refused_before_the_handshake(message: Message, error: type[Exception]) -> None:
    """An accept with a non-str subprotocol, non-bytes headers or its own Sec-WebSocket-Protocol is
    the app's error: the stream is not asked to accept and the cycle stays CONNECTING."""
    cycle, stream = new_cycle()
    with pytest.raises(error):
        run(cycle.send(message))
    assert (cycle.state, stream.calls) == (CONNECTING, [])


def test_send_takes_text_bytes_bytearray_and_memoryview() -> None:
    """websocket.send writes text as str, and bytes-like data as bytes."""
    cycle, stream = new_cycle(ACCEPT)
    for message in (
        {"type": "websocket.send", "text": "t"},
        {"type": "websocket.send", "bytes": b"b"},
        {"type": "websocket.send", "bytes": bytearray(b"ba")},
        {"type": "websocket.send", "bytes": memoryview(b"mv")},
    ):
        run(cycle.send(message))
    sent = [call[1] for call in stream.calls[1:]]
    assert sent == ["t", b"b", b"ba", b"mv"]
    assert [type(data) for data in sent] == [str, bytes, bytes, bytes]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "websocket.send"}, ValueError),
        ({"type": "websocket.send", "text": "t", "bytes": b"b"}, ValueError),
        ({"type": "websocket.send", "text": b"t"}, TypeError),
        ({"type": "websocket.send", "bytes": "b"}, TypeError),
    ],
    ids=["neither", "both", "bytes-text", "str-bytes"],
)
def test_an_invalid_websocket_send_writes_nothing(message: Message, error: type[Exception]) -> None:
    """websocket.send needs exactly one of text (a str) and bytes (bytes-like); else nothing is sent."""
    cycle, stream = new_cycle(ACCEPT)
    with pytest.raises(error):
        run(cycle.send(message))
    assert (cycle.state, stream.calls) == (CONNECTED, [("accept", None)])


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "websocket.close", "code": "1000"}, TypeError),
        ({"type": "websocket.close", "reason": b"bye"}, TypeError),
    ],
    ids=["str-code", "bytes-reason"],
)
def test_an_invalid_close_is_refused(message: Message, error: type[Exception]) -> None:
    """websocket.close with a non-int code or a non-str reason is the app's error; nothing is closed."""
    cycle, stream = new_cycle(ACCEPT)
    with pytest.raises(error):
        run(cycle.send(message))
    assert (cycle.state, stream.calls) == (CONNECTED, [("accept", None)])


def test_a_close_without_code_or_reason_is_1000_with_no_reason() -> None:
    """websocket.close defaults to code 1000, and a reason of None is sent as no reason."""
    cycle, stream = new_cycle(ACCEPT)
    run(cycle.send({"type": "websocket.close", "reason": None}))
    assert (cycle.state, stream.calls[-1]) == (CLOSED, ("close", 1000, ""))


@pytest.mark.parametrize("status", [199, 600, "403", 101])
def test_a_denial_with_an_invalid_status_is_refused(status: Any) -> None:
    """A denial response's status must be an int from 200 to 599; else the cycle stays CONNECTING."""
    cycle, stream = new_cycle()
    with pytest.raises(ValueError, match="invalid status"):
        run(cycle.send({"type": "websocket.http.response.start", "status": status}))
    assert (cycle.state, cycle.status, stream.calls) == (CONNECTING, 0, [])


def test_a_denial_body_may_be_bytes_like() -> None:
    """A denial body given as bytearray or memoryview is written as bytes."""
    cycle, stream = new_cycle(DENY)
    run(cycle.send({"type": "websocket.http.response.body", "body": bytearray(b"a"), "more_body": True}))
    run(cycle.send({"type": "websocket.http.response.body", "body": memoryview(b"b")}))
    assert stream.calls == [("respond", 403, b"a", True), ("respond_body", b"b", False)]
    assert [type(call[2 if call[0] == "respond" else 1]) for call in stream.calls] == [bytes, bytes]


def test_a_denial_body_of_another_type_is_refused() -> None:
    """A denial body that is not bytes-like is the app's error; nothing is written."""
    cycle, stream = new_cycle(DENY)
    with pytest.raises(TypeError, match="must be bytes"):
        run(cycle.send({"type": "websocket.http.response.body", "body": "no"}))
    assert (cycle.state, stream.calls) == (RESPONDING, [])


def test_a_denial_body_after_the_client_left_raises_client_disconnected() -> None:
    """Once the session is over, the denial body raises ClientDisconnected and writes nothing."""
    cycle, stream = new_cycle(DENY)
    cycle.feed_closed(1006)
    with pytest.raises(ClientDisconnected):
        run(cycle.send({"type": "websocket.http.response.body", "body": b"x"}))
    assert stream.calls == []


# ------------------------------------------------------------------ the end of the app

ERROR_500 = ("respond", 500, b"Internal Server Error\n", False)


@pytest.mark.parametrize(
    ("messages", "exc", "calls", "logged"),
    [
        ([], None, [ERROR_500], ["returned without answering the WebSocket handshake"]),
        ([], ValueError("boom"), [ERROR_500], ["Exception in ASGI application"]),
        ([ACCEPT], None, [("close", 1000, "")], []),
        ([ACCEPT], ValueError("boom"), [("close", 1011, "")], ["Exception in ASGI application"]),
        ([DENY], None, [("respond", 500, b"", False)], ["before the denial response was complete"]),
        ([DENY], ValueError("boom"), [("respond", 500, b"", False)], ["Exception in ASGI application"]),
        (
            [DENY, {"type": "websocket.http.response.body", "body": b"a", "more_body": True}],
            None,
            [("abort",)],
            ["before the denial response was complete"],
        ),
        ([ACCEPT, {"type": "websocket.close"}], None, [], []),
        ([ACCEPT], ClientDisconnected(), [("close", 1011, "")], []),
    ],
    ids=[
        "connecting",
        "connecting-raised",
        "connected",
        "connected-raised",
        "denial-unwritten",
        "denial-unwritten-raised",
        "denial-written",
        "closed",
        "client-disconnected",
    ],
)
def test_how_the_app_ended_decides_the_answer(
    caplog: pytest.LogCaptureFixture,
    messages: list[Message],
    exc: BaseException | None,
    calls: list[tuple[Any, ...]],
    logged: list[str],
) -> None:
    """app_finished answers by state: a 500 before any handshake answer, a Close (1000, or 1011 when
    the app raised) after accept, a 500 or a cut for an unfinished denial; and logs what went wrong."""
    cycle, stream = new_cycle(*messages)
    written = len(stream.calls)
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        cycle.app_finished(exc)
    assert stream.calls[written:] == [*calls, ("finished",)]
    assert cycle.state == CLOSED
    assert len(caplog.records) == len(logged)
    for part, record in zip(logged, caplog.records, strict=True):
        assert part in record.getMessage()


@pytest.mark.parametrize(("gone", "logged"), [(True, 0), (False, 1)])
def test_a_cancelled_app_is_logged_only_while_its_client_is_there(
    caplog: pytest.LogCaptureFixture, gone: bool, logged: int
) -> None:
    """A cancellation after the session is over is how the server stops apps and is not logged;
    one while the client is still there is; a gone client gets no answer."""
    cycle, stream = new_cycle(ACCEPT)
    if gone:
        cycle.feed_closed(1006)
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        cycle.app_finished(asyncio.CancelledError())
    assert len(caplog.records) == logged
    expected = [("finished",)] if gone else [("close", 1011, ""), ("finished",)]
    assert stream.calls[1:] == expected

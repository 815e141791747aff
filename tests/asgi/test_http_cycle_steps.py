"""``HTTPCycle`` beyond the send state table: what the driver reads back from it, a receive() that
waits while the response completes or the app ends, a paused writer, the checks of the extension
messages' fields, and a response cut short. The cycle runs against an in-memory stream, and a test
steps the coroutines that wait (``tests/asgi/stepping.py``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.asgi.stepping import Stepped, Waiter
from tests.asgi.test_response_states import MemoryStream, run
from wherry.asgi.http import (
    BODY,
    COMPLETE,
    STARTED,
    TRAILERS,
    ClientDisconnected,
    FutureLike,
    HTTPCycle,
    Message,
)


class WaitingStream(MemoryStream):
    """A ``MemoryStream`` whose futures are ``Waiter``s, and which records each wait for the writer."""

    def create_future(self) -> FutureLike:
        return Waiter()

    async def drain(self) -> None:
        self.calls.append(("drain",))


def new_cycle(*messages: Message) -> tuple[HTTPCycle, WaitingStream]:
    """A cycle over a ``WaitingStream`` after the app's ``messages``."""
    stream = WaitingStream()
    cycle = HTTPCycle({"type": "http"}, stream, None, False, 0.0)
    for message in messages:
        run(cycle.send(message))
    return cycle, stream


START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}
TRAILERS_START: Message = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
MORE: Message = {"type": "http.response.body", "body": b"a", "more_body": True}


def test_the_response_headers_are_the_apps_own_once_it_started() -> None:
    """response_headers is empty before http.response.start, then the headers the app gave."""
    cycle, _stream = new_cycle()
    assert list(cycle.response_headers) == []
    run(cycle.send(START))
    assert cycle.response_headers == [(b"x-a", b"1")]


def test_the_response_headers_are_gone_once_a_500_replaced_the_response() -> None:
    """When the app ends after its start and before a body, the 500 leaves no app headers."""
    cycle, stream = new_cycle(START)
    cycle.app_finished(None)
    assert (cycle.status, list(cycle.response_headers)) == (500, [])
    assert stream.calls[0][:2] == ("response", 500)


def test_disconnected_says_the_client_left() -> None:
    """disconnected turns true once the driver reports the client gone."""
    cycle, _stream = new_cycle()
    assert not cycle.disconnected
    cycle.feed_disconnect()
    assert cycle.disconnected


def test_a_body_of_another_type_is_refused() -> None:
    """http.response.body with a body that is not bytes-like is the app's error; nothing is written."""
    cycle, stream = new_cycle(START)
    with pytest.raises(TypeError, match="must be bytes"):
        run(cycle.send({"type": "http.response.body", "body": "text"}))
    assert (cycle.state, stream.calls) == (STARTED, [])


def test_a_body_may_be_bytes_like() -> None:
    """A body given as bytearray or memoryview is written as bytes, and counted in sent_bytes."""
    cycle, stream = new_cycle(START)
    run(cycle.send({"type": "http.response.body", "body": bytearray(b"ab"), "more_body": True}))
    run(cycle.send({"type": "http.response.body", "body": memoryview(b"cde")}))
    assert stream.calls == [("response", 200, b"ab", True), ("body", b"cde", False)]
    assert cycle.sent_bytes == 5


def test_a_receive_waiting_for_the_body_sees_the_disconnect_once_the_response_is_complete() -> None:
    """A receive() that waits for request body is woken by the last response body: the exchange is
    over, so it gives http.disconnect."""
    cycle, _stream = new_cycle(START)
    waiting = Stepped(cycle.receive())
    assert not waiting.done
    run(cycle.send({"type": "http.response.body", "body": b"x"}))
    waiting.step()
    assert waiting.result == {"type": "http.disconnect"}


def test_a_receive_waiting_when_the_app_ends_is_woken() -> None:
    """A receive() still waiting when the app ends is woken and given http.disconnect."""
    cycle, stream = new_cycle()
    waiting = Stepped(cycle.receive())
    assert not waiting.done
    cycle.app_finished(None)
    waiting.step()
    assert waiting.result == {"type": "http.disconnect"}
    assert stream.calls[-1] == ("finished",)


def test_body_and_trailers_wait_for_the_writer_while_it_is_paused() -> None:
    """While write_paused is set, a body and the trailers each await drain() once written."""
    cycle, stream = new_cycle(TRAILERS_START)
    stream.write_paused = True
    assert Stepped(cycle.send({"type": "http.response.body", "body": b"x"})).done
    assert cycle.state == TRAILERS
    assert Stepped(cycle.send({"type": "http.response.trailers", "headers": [(b"x-t", b"1")]})).done
    assert cycle.state == COMPLETE
    assert stream.calls == [
        ("response", 200, b"x", True),
        ("drain",),
        ("trailers", [(b"x-t", b"1")]),
        ("drain",),
    ]


class LeavingStream(WaitingStream):
    """A ``WaitingStream`` whose client leaves while the app waits for the writer."""

    async def drain(self) -> None:
        self.calls.append(("drain",))
        self.cycle.feed_disconnect()

    cycle: HTTPCycle


@pytest.mark.parametrize("more_body", [True, False])
def test_a_client_leaving_while_the_writer_is_paused_fails_only_a_body_with_more(more_body: bool) -> None:
    """A client gone while send() waits for the writer raises ClientDisconnected when the app has
    more body to send; its last body was written, and the send returns."""
    stream = LeavingStream()
    cycle = stream.cycle = HTTPCycle({"type": "http"}, stream, None, False, 0.0)
    run(cycle.send(START))
    stream.write_paused = True
    sending = cycle.send({"type": "http.response.body", "body": b"x", "more_body": more_body})
    if more_body:
        with pytest.raises(ClientDisconnected):
            Stepped(sending)
    else:
        assert Stepped(sending).done
    assert stream.calls == [("response", 200, b"x", more_body), ("drain",)]


def test_more_trailers_gather_into_one_section() -> None:
    """Trailers with more_trailers are kept, and written with the last message as one section."""
    cycle, stream = new_cycle(TRAILERS_START, {"type": "http.response.body", "body": b""})
    run(cycle.send({"type": "http.response.trailers", "headers": [(b"x-a", b"1")], "more_trailers": True}))
    assert cycle.state == TRAILERS
    run(cycle.send({"type": "http.response.trailers", "headers": [(b"x-b", b"2")]}))
    assert stream.calls[-1] == ("trailers", [(b"x-a", b"1"), (b"x-b", b"2")])


@pytest.mark.parametrize(
    ("headers", "error", "match"),
    [
        ([("x-a", b"1")], TypeError, "must be bytes"),
        ([(b"x-a", "1")], TypeError, "must be bytes"),
        ([(b":status", b"200")], ValueError, "pseudo-header"),
    ],
    ids=["str-name", "str-value", "pseudo-header"],
)
def test_invalid_trailer_fields_are_refused(headers: Any, error: type[Exception], match: str) -> None:
    """Trailer fields must be pairs of bytes and no pseudo-header; else nothing is written."""
    cycle, stream = new_cycle(TRAILERS_START, {"type": "http.response.body", "body": b""})
    written = list(stream.calls)
    with pytest.raises(error, match=match):
        run(cycle.send({"type": "http.response.trailers", "headers": headers}))
    assert (cycle.state, stream.calls) == (TRAILERS, written)


@pytest.mark.parametrize(
    ("message", "error", "match"),
    [
        ({"type": "http.response.early_hint", "links": b"</a.css>"}, TypeError, "iterable of bytes"),
        ({"type": "http.response.early_hint", "links": "</a.css>"}, TypeError, "iterable of bytes"),
        ({"type": "http.response.early_hint", "links": ["</a.css>"]}, TypeError, "a link must be bytes"),
        ({"type": "http.response.push", "path": "a.css"}, ValueError, "absolute path"),
        ({"type": "http.response.push", "path": b"/a.css"}, ValueError, "absolute path"),
        ({"type": "http.response.push", "path": "/a", "headers": [(b":path", b"/b")]}, ValueError, "pseudo"),
        ({"type": "http.response.pathsend", "path": b"/etc/hosts"}, TypeError, "must be a str"),
        ({"type": "http.response.pathsend", "path": "relative.txt"}, ValueError, "must be absolute"),
    ],
    ids=[
        "hint-bytes",
        "hint-str",
        "hint-str-link",
        "push-relative",
        "push-bytes",
        "push-pseudo",
        "pathsend-bytes",
        "pathsend-relative",
    ],
)
def test_invalid_extension_messages_are_refused(message: Message, error: type[Exception], match: str) -> None:
    """An early hint, push or pathsend whose fields break the extension's rules is the app's error:
    nothing is written and the response can still be answered."""
    cycle, stream = new_cycle(START)
    with pytest.raises(error, match=match):
        run(cycle.send(message))
    assert (cycle.state, stream.calls) == (STARTED, [])


def test_an_early_hint_without_links_writes_nothing() -> None:
    """An early hint with no links sends no 103."""
    cycle, stream = new_cycle(START)
    run(cycle.send({"type": "http.response.early_hint", "links": []}))
    assert (cycle.state, stream.calls) == (STARTED, [])


def test_a_push_gives_the_protocol_its_path_and_fields() -> None:
    """http.response.push hands the stream the path as bytes and its checked fields."""
    cycle, stream = new_cycle(START)
    run(cycle.send({"type": "http.response.push", "path": "/é.css", "headers": [(b"accept", b"text/css")]}))
    assert stream.calls == [("push", "/é.css".encode(), [(b"accept", b"text/css")])]


@pytest.mark.parametrize(
    ("messages", "logged"),
    [
        ([START, MORE], ["returned before the response was complete"]),
        ([TRAILERS_START, {"type": "http.response.body", "body": b""}], ["before the response was complete"]),
    ],
    ids=["body", "trailers"],
)
def test_a_response_left_unfinished_is_cut_and_logged(
    caplog: pytest.LogCaptureFixture, messages: list[Message], logged: list[str]
) -> None:
    """An app that returns mid-body, or before its announced trailers, has its response cut (abort)
    and the error logged."""
    cycle, stream = new_cycle(*messages)
    assert cycle.state in (BODY, TRAILERS)
    written = len(stream.calls)
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        cycle.app_finished(None)
    assert stream.calls[written:] == [("abort",), ("finished",)]
    assert cycle.state == COMPLETE
    assert [logged[0] in record.getMessage() for record in caplog.records] == [True]


def test_a_response_cut_after_the_client_left_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """An app that returns mid-body after its client left has the response cut without an error."""
    cycle, stream = new_cycle(START, MORE)
    cycle.feed_disconnect()
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        cycle.app_finished(None)
    assert stream.calls[-2:] == [("abort",), ("finished",)]
    assert caplog.records == []

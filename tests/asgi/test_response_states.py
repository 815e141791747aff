"""The response state machine of ``HTTPCycle.send``, pair by pair: every response state against
every message type, either the step the ASGI spec and its extensions allow or an app error.

The cycle runs against ``MemoryStream``, an ``HTTPStream`` that records what it is asked to write;
no socket, no event loop (``send`` never waits here: nothing pauses writing).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Any

import pytest

from wherry.asgi.http import (
    BODY,
    COMPLETE,
    INIT,
    STARTED,
    TRAILERS,
    ClientDisconnected,
    FutureLike,
    HTTPCycle,
    Message,
)
from wherry.proto.events import AppHeaders, Headers

NAMES = {INIT: "INIT", STARTED: "STARTED", BODY: "BODY", TRAILERS: "TRAILERS", COMPLETE: "COMPLETE"}


class MemoryStream:
    """An ``HTTPStream`` that keeps a record of every call instead of writing anywhere."""

    def __init__(self) -> None:
        self.write_paused = False
        self.calls: list[tuple[Any, ...]] = []
        self.refuse_head = False  # write_response raises ValueError, as for a field it cannot send

    def create_future(self) -> FutureLike:
        raise AssertionError("receive() is not driven here")

    def write_response(
        self, cycle: HTTPCycle, status: int, headers: AppHeaders, body: bytes, more_body: bool
    ) -> None:
        if self.refuse_head:
            raise ValueError("a field no protocol can carry")
        self.calls.append(("response", status, body, more_body))

    def write_body(self, cycle: HTTPCycle, body: bytes, more_body: bool) -> None:
        self.calls.append(("body", body, more_body))

    def write_continue(self, cycle: HTTPCycle) -> None:
        self.calls.append(("continue",))

    def body_consumed(self, cycle: HTTPCycle, size: int) -> None:
        pass

    async def drain(self) -> None:
        raise AssertionError("writing is never paused here")

    def abort(self, cycle: HTTPCycle) -> None:
        self.calls.append(("abort",))

    def cycle_finished(self, cycle: HTTPCycle) -> None:
        self.calls.append(("finished",))

    def write_trailers(self, cycle: HTTPCycle, headers: Headers) -> None:
        self.calls.append(("trailers", headers))

    def write_informational(self, cycle: HTTPCycle, status: int, headers: Headers) -> None:
        self.calls.append(("informational", status, headers))

    def push(self, cycle: HTTPCycle, path: bytes, headers: Headers) -> None:
        self.calls.append(("push", path, headers))

    async def send_file(self, cycle: HTTPCycle, path: str, more_body: bool) -> None:
        self.calls.append(("file", path, more_body))


def run(step: Awaitable[None]) -> None:
    """Run a ``send`` that must finish without waiting."""
    coro = step.__await__()
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("send() waited")


FILE = os.path.abspath(__file__)

MESSAGES: dict[str, Message] = {
    "start": {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]},
    "body": {"type": "http.response.body", "body": b"x"},
    "trailers": {"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]},
    "early_hint": {"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]},
    "push": {"type": "http.response.push", "path": "/a.css", "headers": []},
    "pathsend": {"type": "http.response.pathsend", "path": FILE},
    "unknown": {"type": "http.response.unknown"},
}

START_WITH_TRAILERS: Message = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
MORE_BODY: Message = {"type": "http.response.body", "body": b"x", "more_body": True}

# The messages that lead a new cycle to each state.
REACH: dict[int, list[Message]] = {
    INIT: [],
    STARTED: [MESSAGES["start"]],
    BODY: [MESSAGES["start"], MORE_BODY],
    TRAILERS: [START_WITH_TRAILERS, MESSAGES["body"]],
    COMPLETE: [MESSAGES["start"], MESSAGES["body"]],
}

# The allowed steps, (state, message) -> next state; every other pair is an app error.
ALLOWED: dict[tuple[int, str], int] = {
    (INIT, "start"): STARTED,
    (STARTED, "body"): COMPLETE,
    (BODY, "body"): COMPLETE,
    (STARTED, "early_hint"): STARTED,
    (BODY, "early_hint"): BODY,
    (STARTED, "push"): STARTED,
    (BODY, "push"): BODY,
    (STARTED, "pathsend"): COMPLETE,
    (BODY, "pathsend"): COMPLETE,
    (TRAILERS, "trailers"): COMPLETE,
}

TRAILERS_OUT_OF_ORDER = (
    "unexpected 'http.response.trailers': it follows the last body of a response "
    "whose http.response.start had trailers: True"
)


def refused(state: int, name: str) -> str:
    """The app error for a pair the machine has no step for, as the app is told it."""
    kind = MESSAGES[name]["type"]
    if state == INIT:
        return f"expected 'http.response.start', got {kind!r}"
    if state == COMPLETE:
        return f"unexpected {kind!r}: the response is already complete"
    if state == TRAILERS:
        return f"expected 'http.response.trailers', got {kind!r}"
    if name == "trailers":
        return TRAILERS_OUT_OF_ORDER
    return f"expected 'http.response.body', got {kind!r}"


def cycle_in(state: int) -> tuple[HTTPCycle, MemoryStream]:
    """A new cycle over a ``MemoryStream``, led to ``state`` by the app's messages."""
    stream = MemoryStream()
    cycle = HTTPCycle({"type": "http"}, stream, None, False, 0.0)
    for message in REACH[state]:
        run(cycle.send(message))
    assert cycle.state == state
    return cycle, stream


PAIRS = [(state, name) for state in NAMES for name in MESSAGES]


@pytest.mark.parametrize(("state", "name"), PAIRS, ids=[f"{NAMES[s]}-{n}" for s, n in PAIRS])
def test_every_state_and_message_type_is_a_step_or_an_app_error(state: int, name: str) -> None:
    """Each (state, message type) pair moves the cycle to its next state, or raises a
    RuntimeError that says what was expected, leaving the state and the stream untouched."""
    cycle, stream = cycle_in(state)
    written = list(stream.calls)
    expected = ALLOWED.get((state, name))
    if expected is None:
        with pytest.raises(RuntimeError) as raised:
            run(cycle.send(MESSAGES[name]))
        assert str(raised.value) == refused(state, name)
        assert (cycle.state, stream.calls) == (state, written)
    else:
        run(cycle.send(MESSAGES[name]))
        assert cycle.state == expected


@pytest.mark.parametrize("state", list(NAMES), ids=list(NAMES.values()))
def test_a_message_after_a_disconnect_raises_client_disconnected(state: int) -> None:
    """Once the peer is gone every message raises ClientDisconnected (www spec 2.4), in any state."""
    cycle, _stream = cycle_in(state)
    cycle.feed_disconnect()
    for message in MESSAGES.values():
        with pytest.raises(ClientDisconnected):
            run(cycle.send(message))
    assert cycle.state == state


def test_more_body_keeps_the_response_in_body() -> None:
    """A body with more_body writes the head and stays in BODY until the last body."""
    cycle, stream = cycle_in(STARTED)
    run(cycle.send(MORE_BODY))
    assert cycle.state == BODY
    run(cycle.send(MORE_BODY))
    run(cycle.send(MESSAGES["body"]))
    assert cycle.state == COMPLETE
    assert stream.calls == [("response", 200, b"x", True), ("body", b"x", True), ("body", b"x", False)]
    assert cycle.sent_bytes == 3


def test_the_last_body_of_a_response_with_trailers_leaves_it_open() -> None:
    """With trailers: True the last body is written as not the end, and the state is TRAILERS."""
    _cycle, stream = cycle_in(TRAILERS)
    assert stream.calls == [("response", 200, b"x", True)]


def test_more_trailers_gather_into_one_section() -> None:
    """more_trailers keeps the state in TRAILERS; the last message writes every field at once."""
    cycle, stream = cycle_in(TRAILERS)
    run(cycle.send({"type": "http.response.trailers", "headers": [(b"x-a", b"1")], "more_trailers": True}))
    assert cycle.state == TRAILERS
    run(cycle.send({"type": "http.response.trailers", "headers": [(b"x-b", b"2")]}))
    assert cycle.state == COMPLETE
    assert stream.calls[-1] == ("trailers", [(b"x-a", b"1"), (b"x-b", b"2")])


def test_pathsend_of_a_response_with_trailers_leads_to_trailers() -> None:
    """A pathsend is the last body: with trailers: True the response waits for its trailers."""
    cycle, stream = cycle_in(INIT)
    run(cycle.send(START_WITH_TRAILERS))
    run(cycle.send(MESSAGES["pathsend"]))
    assert cycle.state == TRAILERS
    assert stream.calls == [("response", 200, b"", True), ("file", FILE, True)]
    assert cycle.sent_bytes == os.stat(FILE).st_size


def test_an_early_hint_is_written_only_before_the_head() -> None:
    """An early hint in STARTED is a 103; in BODY (the head is written) it is checked and dropped."""
    cycle, stream = cycle_in(STARTED)
    run(cycle.send(MESSAGES["early_hint"]))
    assert stream.calls == [("informational", 103, [(b"link", b"</a.css>; rel=preload")])]
    cycle, stream = cycle_in(BODY)
    run(cycle.send(MESSAGES["early_hint"]))
    assert stream.calls == [("response", 200, b"x", True)]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "http.response.start", "status": "200"}, TypeError),
        ({"type": "http.response.start", "status": 103}, ValueError),
    ],
    ids=["status-str", "status-1xx"],
)
def test_a_bad_start_leaves_the_cycle_in_init(message: Message, error: type[Exception]) -> None:
    """A start whose status is not a final status int is an app error; nothing changes."""
    cycle, _stream = cycle_in(INIT)
    with pytest.raises(error):
        run(cycle.send(message))
    assert (cycle.state, cycle.response_started) == (INIT, False)


@pytest.mark.parametrize("name", ["body", "pathsend"])
def test_a_head_the_stream_refuses_leaves_the_cycle_started(name: str) -> None:
    """When the stream refuses the head nothing was written: the state goes back to STARTED, so
    the app's end is still answered with a 500."""
    cycle, stream = cycle_in(STARTED)
    stream.refuse_head = True
    with pytest.raises(ValueError):
        run(cycle.send(MESSAGES[name]))
    assert cycle.state == STARTED
    stream.refuse_head = False
    cycle.app_finished(None)
    assert (cycle.state, cycle.status, stream.calls[0][:2]) == (COMPLETE, 500, ("response", 500))

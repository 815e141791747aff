"""The state machine of ``WebSocketCycle.send``, pair by pair: every cycle state against every
message type, either the step the ASGI spec allows or an app error.

The cycle runs against ``MemoryStream``, a ``WebSocketStream`` that records what it is asked to
write; no socket, no event loop (``send`` never waits here: nothing pauses writing).
"""

from __future__ import annotations

from collections import UserDict
from typing import Any

import pytest

from tests.asgi.test_response_states import run
from wherry.asgi.http import ClientDisconnected, FutureLike, Message
from wherry.asgi.websocket import CLOSED, CONNECTED, CONNECTING, RESPONDING, WebSocketCycle
from wherry.proto.events import Headers

NAMES = {CONNECTING: "CONNECTING", CONNECTED: "CONNECTED", RESPONDING: "RESPONDING", CLOSED: "CLOSED"}


class MemoryStream:
    """A ``WebSocketStream`` that keeps a record of every call instead of writing anywhere."""

    def __init__(self) -> None:
        self.write_paused = False
        self.read_paused = False
        self.calls: list[tuple[Any, ...]] = []

    def create_future(self) -> FutureLike:
        raise AssertionError("receive() is not driven here")

    def accept(self, cycle: WebSocketCycle, subprotocol: str | None, headers: Headers) -> int:
        self.calls.append(("accept", subprotocol))
        return 101

    def send_message(self, cycle: WebSocketCycle, data: bytes | str) -> None:
        self.calls.append(("message", data))

    def close(self, cycle: WebSocketCycle, code: int, reason: str) -> None:
        self.calls.append(("close", code, reason))

    def respond(
        self, cycle: WebSocketCycle, status: int, headers: Headers, body: bytes, more_body: bool
    ) -> None:
        self.calls.append(("respond", status, body, more_body))

    def respond_body(self, cycle: WebSocketCycle, body: bytes, more_body: bool) -> None:
        self.calls.append(("respond_body", body, more_body))

    def message_consumed(self, cycle: WebSocketCycle) -> None:
        pass

    def abort(self, cycle: WebSocketCycle) -> None:
        self.calls.append(("abort",))

    async def drain(self) -> None:
        raise AssertionError("writing is never paused here")

    def cycle_finished(self, cycle: WebSocketCycle) -> None:
        self.calls.append(("finished",))


MESSAGES: dict[str, Message] = {
    "accept": {"type": "websocket.accept"},
    "send": {"type": "websocket.send", "text": "hi"},
    "close": {"type": "websocket.close", "code": 1000},
    "start": {"type": "websocket.http.response.start", "status": 403, "headers": []},
    "body": {"type": "websocket.http.response.body", "body": b"no"},
    "unknown": {"type": "websocket.unknown"},
}

REACH: dict[int, list[Message]] = {
    CONNECTING: [],
    CONNECTED: [MESSAGES["accept"]],
    RESPONDING: [MESSAGES["start"]],
    CLOSED: [MESSAGES["accept"], MESSAGES["close"]],
}

ALLOWED: dict[tuple[int, str], int] = {
    (CONNECTING, "accept"): CONNECTED,
    (CONNECTING, "close"): CLOSED,
    (CONNECTING, "start"): RESPONDING,
    (CONNECTED, "send"): CONNECTED,
    (CONNECTED, "close"): CLOSED,
    (RESPONDING, "body"): CLOSED,
}

REFUSED = {
    CONNECTING: "expected websocket.accept, websocket.close or a denial, not {!r}",
    CONNECTED: "unexpected {!r} after websocket.accept",
    RESPONDING: "expected 'websocket.http.response.body', got {!r}",
}


def cycle_in(state: int) -> tuple[WebSocketCycle, MemoryStream]:
    """A new cycle over a ``MemoryStream``, led to ``state`` by the app's messages."""
    stream = MemoryStream()
    cycle = WebSocketCycle({"type": "websocket"}, stream)
    for message in REACH[state]:
        run(cycle.send(message))
    assert cycle.state == state
    return cycle, stream


PAIRS = [(state, name) for state in NAMES for name in MESSAGES]


@pytest.mark.parametrize(("state", "name"), PAIRS, ids=[f"{NAMES[s]}-{n}" for s, n in PAIRS])
def test_every_state_and_message_type_is_a_step_or_an_app_error(state: int, name: str) -> None:
    """Each (state, message type) pair moves the cycle to its next state, or raises (RuntimeError
    saying what was expected; ClientDisconnected once closed) leaving state and stream untouched."""
    cycle, stream = cycle_in(state)
    written = list(stream.calls)
    expected = ALLOWED.get((state, name))
    if expected is not None:
        run(cycle.send(MESSAGES[name]))
        assert cycle.state == expected
        return
    if state == CLOSED:
        with pytest.raises(ClientDisconnected):
            run(cycle.send(MESSAGES[name]))
    else:
        with pytest.raises(RuntimeError) as raised:
            run(cycle.send(MESSAGES[name]))
        assert str(raised.value) == REFUSED[state].format(MESSAGES[name]["type"])
    assert (cycle.state, stream.calls) == (state, written)


def test_a_close_before_the_handshake_is_a_403() -> None:
    """websocket.close before websocket.accept denies the handshake with a 403."""
    cycle, stream = cycle_in(CONNECTING)
    run(cycle.send(MESSAGES["close"]))
    assert (cycle.status, stream.calls) == (403, [("respond", 403, b"", False)])


def test_a_denial_body_with_more_body_stays_responding() -> None:
    """The denial response's head goes with its first body; more_body keeps the state RESPONDING."""
    cycle, stream = cycle_in(RESPONDING)
    run(cycle.send({"type": "websocket.http.response.body", "body": b"a", "more_body": True}))
    assert cycle.state == RESPONDING
    run(cycle.send({"type": "websocket.http.response.body", "body": b"b"}))
    assert cycle.state == CLOSED
    assert stream.calls == [("respond", 403, b"a", True), ("respond_body", b"b", False)]


@pytest.mark.parametrize("state", list(NAMES), ids=list(NAMES.values()))
def test_once_the_session_is_over_send_raises_client_disconnected(state: int) -> None:
    """After the session is over every message raises ClientDisconnected; in a denial response a
    message other than its body is still the app's error first."""
    for name, message in MESSAGES.items():
        cycle, _stream = cycle_in(state)
        cycle.feed_closed(1006)
        app_error = state == RESPONDING and name != "body"
        with pytest.raises(RuntimeError if app_error else ClientDisconnected):
            run(cycle.send(message))


def test_messages_may_be_any_mapping() -> None:
    """ASGI messages are mappings: a ``UserDict`` (a mapping, not a dict) takes the same steps as a dict."""
    cycle, stream = cycle_in(CONNECTING)
    run(cycle.send(UserDict({"type": "websocket.accept", "subprotocol": "chat"})))
    run(cycle.send(UserDict({"type": "websocket.send", "bytes": b"\x00\x01"})))
    run(cycle.send(UserDict({"type": "websocket.close", "code": 4000, "reason": "bye"})))
    assert cycle.state == CLOSED
    assert stream.calls == [("accept", "chat"), ("message", b"\x00\x01"), ("close", 4000, "bye")]

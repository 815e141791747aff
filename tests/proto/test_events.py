"""The events' reprs (wherry/proto/events.py): what a log line or a failing assertion shows of an
event, short and without the headers or the body beyond what identifies it."""

from __future__ import annotations

from wherry.proto.events import (
    END_OF_MESSAGE,
    ConnectionClosed,
    Data,
    EndOfMessage,
    GoAway,
    Rejected,
    Request,
    StreamReset,
    WindowOpened,
)


def test_a_request_shows_its_method_target_and_version_not_its_headers() -> None:
    request = Request(b"GET", b"/a?b=1", b"/a", b"b=1", "1.1", [(b"cookie", b"secret")], True, False, None)
    assert repr(request) == "Request(b'GET', b'/a?b=1', '1.1')"


def test_the_body_and_end_events_show_what_they_carry() -> None:
    assert repr(Data(b"chunk", stream_id=3)) == "Data(b'chunk')"
    assert repr(EndOfMessage(5)) == "EndOfMessage()"
    assert repr(END_OF_MESSAGE) == "EndOfMessage()"
    assert repr(ConnectionClosed()) == "ConnectionClosed()"


def test_a_rejection_shows_its_status_and_reason() -> None:
    assert repr(Rejected(431, "header section too large")) == "Rejected(431, 'header section too large')"


def test_the_http2_stream_events_show_their_stream() -> None:
    assert repr(StreamReset(7, 8)) == "StreamReset(7, 8)"
    assert repr(WindowOpened(0)) == "WindowOpened(0)"
    assert repr(GoAway()) == "GoAway()"

"""The part of the WebSocket session that stands on the ``websockets`` library's own classes: its
sans-I/O frame protocol, with whole messages and the Close rule ``WebSocketSession`` needs, and
permessage-deflate whose zlib streams are made on first use.

Rules of this module:

1. It holds only subclasses of the library's classes (they rely on properties and generators the
   compiled build cannot subclass), so it stays interpreted (docs/discussion/compiled.md);
   ``proto/websocket.py``, compiled, holds the session and the fast path around it.
2. It knows no events: ``Frames`` leaves each whole message in ``messages`` as ``str`` (text) or
   ``bytes`` (binary) for the session to report.
"""

from __future__ import annotations

import codecs
import zlib
from typing import Any, Final

from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol

TEXT: Final = Opcode.TEXT
BINARY: Final = Opcode.BINARY
CONT: Final = Opcode.CONT
CLOSE: Final = Opcode.CLOSE


def deflate_factory() -> ServerPerMessageDeflateFactory:
    """permessage-deflate with small windows (4 KiB) and memLevel 5: about 1/8 of zlib's default
    memory per connection for most of its ratio on chat-sized messages."""
    return ServerPerMessageDeflateFactory(
        server_max_window_bits=12,
        client_max_window_bits=12,
        compress_settings={"memLevel": 5},
    )


class LazyDeflate(PerMessageDeflate):
    """permessage-deflate whose zlib streams are made when the first message needs them: an
    idle connection holds no compressor (about 30 KiB with the settings above)."""

    def __init__(self, negotiated: PerMessageDeflate) -> None:
        self._building = True
        super().__init__(
            negotiated.remote_no_context_takeover,
            negotiated.local_no_context_takeover,
            negotiated.remote_max_window_bits,
            negotiated.local_max_window_bits,
            negotiated.compress_settings,
        )
        self._building = False

    @property
    def decoder(self) -> Any:
        stream = self.__dict__.get("_inflate")
        if stream is None:
            stream = self.__dict__["_inflate"] = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        return stream

    @decoder.setter
    def decoder(self, stream: Any) -> None:
        self.__dict__["_inflate"] = None if self._building else stream

    @decoder.deleter
    def decoder(self) -> None:
        self.__dict__["_inflate"] = None

    @property
    def encoder(self) -> Any:
        stream = self.__dict__.get("_deflate")
        if stream is None:
            stream = self.__dict__["_deflate"] = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
        return stream

    @encoder.setter
    def encoder(self, stream: Any) -> None:
        self.__dict__["_deflate"] = None if self._building else stream

    @encoder.deleter
    def encoder(self) -> None:
        self.__dict__["_deflate"] = None


class Frames(Protocol):
    """The library's server-side protocol, with what this session adds where frames are read (so
    an error in a message is reported before anything that follows it in the same bytes):

    - data frames become whole messages in ``messages`` (``str`` for text, ``bytes`` for binary):
      fragments joined, text decoded as it arrives (an invalid sequence fails the session with
      1007 at the fragment that holds it);
    - a Close frame between the fragments of a message is a control frame like any other (RFC
      6455 §5.4, §5.5.1): it is answered with a Close and the unfinished message is dropped;
    - Ping and Pong frames are not events (the library answers pings).
    """

    # Set on each instance after the base class's __init__ (which starts the parser).
    messages: list[bytes | str]
    _fragments: list[Any]
    _decoder: Any

    def recv_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is CLOSE and self.current_size is not None:
            self.current_size = None
            self._fragments = []
        super().recv_frame(frame)  # checks fragment order and size; answers pings and closes
        if opcode is TEXT:
            if frame.fin:
                self.messages.append(bytes(frame.data).decode("utf-8"))
            else:
                decoder = self._decoder = _utf8_decoder()
                self._fragments = [decoder.decode(frame.data)]
        elif opcode is BINARY:
            if frame.fin:
                self.messages.append(bytes(frame.data))
            else:
                self._decoder = None
                self._fragments = [bytes(frame.data)]
        elif opcode is CONT:
            decoder = self._decoder
            fragments = self._fragments
            if decoder is not None:
                fragments.append(decoder.decode(frame.data, frame.fin))
                if frame.fin:
                    self.messages.append("".join(fragments))
            else:
                fragments.append(bytes(frame.data))
                if frame.fin:
                    self.messages.append(b"".join(fragments))
            if frame.fin:
                self._fragments = []


_utf8_decoder = codecs.getincrementaldecoder("utf-8")

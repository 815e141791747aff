"""WSGI applications (PEP 3333) served as ASGI: the app runs on a thread pool, the event loop only
moves messages.

Rules of this module:

1. The application and everything it touches (``wsgi.input`` reads, the response iterable, its
   ``close()``) run in a pool thread. The thread asks the event loop for one thing at a time (the
   next request body message, or a response message to send) and waits for the answer. So reading
   is flow-controlled by the server (the next body message is received only when the app asks for
   it, and the server stops reading the socket while it is not) and writing by the transport (the
   loop's ``send()`` waits while the transport is paused, and the thread waits with it).
2. Nothing is buffered beyond one body message each way: the request body is never collected
   before the app runs, and each piece of the response is sent before the next is asked for (PEP
   3333 "Buffering and Streaming"); only the last item of a list goes out with the end of the
   response.
3. ``close()`` of the iterable is called exactly once whenever the app returned one, whatever
   happened (a normal end, an exception, a client gone).
4. Before the response is committed (the first non-empty body chunk, or ``write()``), a failure is
   answered with a 500; after it, the exception ends the ASGI call and the connection is cut, so a
   client never takes a truncated body for a whole one.
5. No event-loop import: the loop is reached through ``create_future`` and
   ``call_soon_threadsafe`` of the object ``current_loop()`` returns (an asyncio loop has both).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes
from wsgiref import util

from .adapters import DEFAULT_THREADS, Adapter
from .http import ERROR_500_BODY, ERROR_500_HEADERS, ClientDisconnected, FutureLike, Message, Receive, Scope
from .http import Send as ASGISend

logger = logging.getLogger("wherry.error")


# What a pool thread asks the loop for.
_RECEIVE = 0  # the next request body message
_SEND = 1  # send these messages, then answer
_FINISH = 2  # send these last messages; the application is done
_FAIL = 3  # the application failed after its response was committed: raise this
_GONE = object()  # the answer to any request once the ASGI call has ended


class FileWrapper(util.FileWrapper):
    """``wsgi.file_wrapper``: a file sent in pieces of at least 64 KiB (each piece is one trip to
    the event loop, so the 8 KiB that frameworks usually ask for would cost eight times as many);
    ``close()`` closes the file."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        super().__init__(filelike, max(blksize, 65536))


class LoopLike(Protocol):
    def create_future(self) -> Any: ...

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Any: ...


class _Exchange:
    """One request's channel between its pool thread and the coroutine serving it on the loop."""

    __slots__ = ("_commands", "_replies", "_waiter", "closed", "loop", "receive", "send")

    def __init__(self, loop: LoopLike, receive: Receive, send: ASGISend) -> None:
        self.loop = loop
        self.receive = receive
        self.send = send
        self.closed = False
        self._commands: deque[tuple[int, Any]] = deque()
        self._replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiter: FutureLike | None = None

    # ---------------------------------------------------------------- the thread's side

    def post(self, kind: int, payload: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._on_command, kind, payload)
        except RuntimeError:  # the loop is closed: the server is gone
            raise ClientDisconnected("the server is shutting down") from None

    def call(self, kind: int, payload: Any) -> Any:
        """Ask the loop to receive or send, wait for the answer (raising what it raised)."""
        if self.closed:
            raise ClientDisconnected("the request is over")
        self.post(kind, payload)
        reply = self._replies.get()
        if reply is _GONE:
            raise ClientDisconnected("the request is over")
        if isinstance(reply, BaseException):
            raise reply
        return reply

    # ---------------------------------------------------------------- the loop's side

    def _on_command(self, kind: int, payload: Any) -> None:
        self._commands.append((kind, payload))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def serve(self) -> None:
        """Carry out the thread's requests until it finishes."""
        commands = self._commands
        send = self.send
        try:
            while True:
                while not commands:
                    waiter = self._waiter = self.loop.create_future()
                    await waiter
                kind, payload = commands.popleft()
                if kind == _FINISH:
                    for message in payload:
                        await send(message)
                    return
                if kind == _FAIL:
                    raise payload
                reply: Any
                try:
                    if kind == _RECEIVE:
                        reply = await self.receive()
                    else:
                        for message in payload:
                            await send(message)
                        reply = None
                except Exception as exc:
                    reply = exc
                self._replies.put(reply)
        finally:
            self.closed = True
            self._replies.put(_GONE)  # a thread still waiting for an answer gets one


class WSGIInput:
    """``wsgi.input``: reads the request body from the server one message at a time."""

    __slots__ = ("_buffer", "_eof", "_exchange")

    def __init__(self, exchange: _Exchange, first: Message | None) -> None:
        self._exchange = exchange
        self._buffer = bytearray()
        self._eof = False
        if first is not None:
            self._take(first)

    def _take(self, message: Message) -> None:
        if message["type"] != "http.request":
            self._eof = True
            raise ClientDisconnected("the client went away before the request body was complete")
        self._buffer += message.get("body", b"")
        if not message.get("more_body", False):
            self._eof = True

    def _fill(self) -> bool:
        """Receive one more body message; False when the body is over."""
        if self._eof:
            return False
        self._take(self._exchange.call(_RECEIVE, None))
        return True

    def read(self, size: int | None = -1) -> bytes:
        buffer = self._buffer
        if size is None or size < 0:
            while self._fill():
                pass
        else:
            while len(buffer) < size and self._fill():
                pass
        if size is None or size < 0 or size >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
            return data
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        buffer = self._buffer
        limit = -1 if size is None else size
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if 0 <= limit <= len(buffer):
                end = limit
                break
            start = len(buffer)
            if not self._fill():
                end = len(buffer)
                break
        if 0 <= limit < end:
            end = limit
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class ErrorStream:
    """``wsgi.errors``: each line written becomes a record of the ``wherry.error`` log."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            logger.error("%s", self._partial)
            self._partial = ""


def _latin1(text: str) -> str:
    """A scope string as WSGI wants it: its UTF-8 bytes read as Latin-1 (PEP 3333, "bytes as str")."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def build_environ(scope: Scope, wsgi_input: Any, errors: Any, multiprocess: bool = False) -> dict[str, Any]:
    """The WSGI environ for an ASGI ``http`` scope (www spec, "WSGI Compatibility")."""
    root_path: str = scope.get("root_path", "")
    raw_path = scope.get("raw_path")
    script_name = _latin1(root_path)
    if raw_path is not None:
        # The path's exact bytes (invalid UTF-8 included), percent-decoded.
        full = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
        root = root_path.encode("utf-8")
        if root and full.startswith(root) and full[len(root) : len(root) + 1] in (b"", b"/"):
            full = full[len(root) :]
        path_info = full.decode("latin-1")
    else:
        path: str = scope["path"]
        end = len(root_path)
        if root_path and path.startswith(root_path) and path[end : end + 1] in ("", "/"):
            path = path[end:]
        path_info = _latin1(path)
    server = scope.get("server")
    client = scope.get("client")
    scheme = scope.get("scheme", "http")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": wsgi_input,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    host_header = None
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            key = "CONTENT_TYPE"
        elif name == b"content-length":
            key = "CONTENT_LENGTH"
        else:
            if b"_" in name:
                # X_Forwarded_For and X-Forwarded-For would both be HTTP_X_FORWARDED_FOR: a header
                # a proxy does not know it must strip could pass for one it does.
                continue
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if name == b"host":
                host_header = value
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        environ[key] = text
    if server is not None and server[1] is not None:
        environ["SERVER_NAME"] = str(server[0])
        environ["SERVER_PORT"] = str(server[1])
    else:
        host = (host_header or b"localhost").decode("latin-1")
        name, sep, port = host.rpartition(":")
        if sep and (port.isascii() and port.isdigit()) and not name.endswith(":"):
            environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
        else:
            environ["SERVER_NAME"] = host
            environ["SERVER_PORT"] = "443" if scheme == "https" else "80"
    if client is not None:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    return environ


class _Response:
    """start_response, write() and the response body of one request, on its pool thread."""

    __slots__ = ("_exchange", "committed", "headers", "sent", "status")

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.committed = False  # a body chunk was given: the status and headers are final
        self.sent = False  # the response head went to the server

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback (PEP 3333)
        elif self.status is not None:
            raise RuntimeError("start_response() called again without exc_info")
        if not isinstance(status, str):
            raise TypeError(f"the status must be a str like '200 OK', not {status!r}")
        code = status[:3]
        if len(status) < 3 or not (code.isascii() and code.isdigit()) or status[3:4] not in ("", " "):
            raise ValueError(f"the status must look like '200 OK', not {status!r}")
        encoded = []
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header names and values must be str, not {(name, value)!r}")
            encoded.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        self.status = int(code)
        self.headers = encoded
        return self.write

    def _start_message(self) -> Message:
        self.sent = True
        return {"type": "http.response.start", "status": self.status, "headers": self.headers}

    def _send(self, body: bytes) -> None:
        messages = [] if self.sent else [self._start_message()]
        messages.append({"type": "http.response.body", "body": body, "more_body": True})
        self._exchange.call(_SEND, messages)

    def body(self, chunk: bytes) -> None:
        """One piece of the iterable's output: sent before the next one is asked for."""
        if not chunk:
            return
        if self.status is None:
            raise RuntimeError("the application produced a body before calling start_response()")
        if type(chunk) is not bytes:
            chunk = _as_bytes(chunk)
        self.committed = True
        self._send(chunk)

    def write(self, data: bytes) -> None:
        """The write() callable start_response returns (so the status is set): sent before it
        returns (PEP 3333)."""
        if type(data) is not bytes:
            data = _as_bytes(data)
        self.committed = True
        if data or not self.sent:
            self._send(data)

    def finish(self, last: bytes = b"") -> list[Message]:
        """The last messages: ``last`` is the final piece of a list (b"" once an iterable is over)."""
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response()")
        if type(last) is not bytes:
            last = _as_bytes(last)
        messages = [] if self.sent else [self._start_message()]
        messages.append({"type": "http.response.body", "body": last, "more_body": False})
        return messages


_ERROR_500: list[Message] = [
    {"type": "http.response.start", "status": 500, "headers": ERROR_500_HEADERS},
    {"type": "http.response.body", "body": ERROR_500_BODY, "more_body": False},
]


class WSGIAdapter(Adapter):
    """Runs the WSGI application ``app`` as an ASGI 3 application, on ``threads`` pool threads."""

    def __init__(
        self,
        app: Any,
        current_loop: Callable[[], LoopLike],
        threads: int = DEFAULT_THREADS,
        multiprocess: bool = False,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.app = app
        self.threads = threads
        self.multiprocess = multiprocess
        self._current_loop = current_loop
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="wherry-wsgi")
        return pool

    def close(self) -> None:
        """Let the pool threads end once their requests are done (a later request starts a new pool)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    async def __call__(self, scope: Scope, receive: Receive, send: ASGISend) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})  # refused: a 403 (www spec)
        else:
            raise RuntimeError(f"a WSGI application cannot serve a {kind!r} connection")

    async def _http(self, scope: Scope, receive: Receive, send: ASGISend) -> None:
        exchange = _Exchange(self._current_loop(), receive, send)
        first = None
        if not _expects_continue(scope):
            # The first body message usually came with the head: take it now and save the thread
            # a round trip. With 'expect: 100-continue' the 100 is sent only if the app reads.
            first = await receive()
        self._executor().submit(self._run, exchange, scope, first)
        await exchange.serve()

    # ---------------------------------------------------------------- on a pool thread

    def _run(self, exchange: _Exchange, scope: Scope, first: Message | None) -> None:
        command: int
        payload: Any
        try:
            command, payload = _FINISH, self._call(exchange, scope, first)
        except BaseException as exc:
            command, payload = _FAIL, exc
        if not exchange.closed:
            with contextlib.suppress(ClientDisconnected):
                exchange.post(command, payload)
        if command == _FAIL and not isinstance(payload, Exception):
            raise payload

    def _call(self, exchange: _Exchange, scope: Scope, first: Message | None) -> list[Message]:
        errors = ErrorStream()
        try:
            try:
                environ = build_environ(scope, WSGIInput(exchange, first), errors, self.multiprocess)
            except ClientDisconnected:
                return []
            response = _Response(exchange)
            try:
                result = self.app(environ, response.start_response)
            except ClientDisconnected:
                return []
            except Exception:
                if response.committed:
                    raise
                logger.exception("Exception in WSGI application")
                return _ERROR_500
            try:
                if type(result) is list or type(result) is tuple:
                    # Its last piece is known: it goes with the end of the response, so a small
                    # response is one message from this thread to the loop.
                    for chunk in result[:-1]:
                        response.body(chunk)
                    return response.finish(result[-1] if result else b"")
                for chunk in result:
                    response.body(chunk)
                return response.finish()
            except ClientDisconnected:
                return []
            except Exception:
                if response.committed:
                    raise
                logger.exception("Exception in WSGI application")
                return _ERROR_500
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        logger.exception("Exception in the close() of a WSGI response")
        finally:
            errors.flush()


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"a WSGI response body must be bytes, not {type(data).__name__}")


def _expects_continue(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"expect" and value.lower() == b"100-continue":
            return True
    return False

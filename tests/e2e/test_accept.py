"""Accepting connections while the loop is busy: on asyncio and trio a burst of new connections is
accepted in a few loop turns, however long each turn is (wherry/backends/serving.py, ACCEPT_BURST);
on uvloop the loop's own server accepts, and every connection of the burst is served."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import sniffio

from ..conftest import RunningServer, read_response

CONNECTIONS = 100
TURN_COST = 0.005  # seconds each loop turn spends while the server is "busy"


def busy_server_app() -> tuple[Any, dict[str, Any]]:
    """An app whose ``/busy`` request starts a background job that makes every loop turn cost
    TURN_COST (as a loaded server's turns do) and counts the turns; ``/`` answers with the turn
    count at the moment it was served; ``/idle`` stops the job."""
    state: dict[str, Any] = {"turns": 0, "busy": False}

    async def yield_once() -> None:
        if sniffio.current_async_library() == "trio":
            import trio

            await trio.sleep(0)
        else:
            import asyncio

            await asyncio.sleep(0)

    async def burn() -> None:
        while state["busy"]:
            time.sleep(TURN_COST)
            state["turns"] += 1
            await yield_once()

    async def lifespan(receive: Any, send: Any) -> None:
        await receive()
        if sniffio.current_async_library() == "trio":
            import trio

            async with trio.open_nursery() as nursery:  # where /busy starts its job
                state["nursery"] = nursery
                await send({"type": "lifespan.startup.complete"})
                await receive()
                state["busy"] = False
        else:
            await send({"type": "lifespan.startup.complete"})
            await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path = scope["path"]
        body = b"ok"
        if path == "/busy":
            state["busy"] = True
            if sniffio.current_async_library() == "trio":
                state["nursery"].start_soon(burn)
            else:
                import asyncio

                state["task"] = asyncio.get_running_loop().create_task(burn())
        elif path == "/idle":
            state["busy"] = False
        else:
            body = str(state["turns"]).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app, state


def test_a_burst_of_connections_is_accepted_in_a_few_busy_loop_turns(
    serve: Callable[..., RunningServer], loop_name: str
) -> None:
    app, _state = busy_server_app()
    server = serve(app)
    control = server.connect()
    control.sendall(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(control)[0] == 200
    clients = [socket.socket() for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect((server.host, server.port))
        for client in clients:
            client.setblocking(True)
            client.settimeout(30)
            client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        served_at = [int(read_response(client, timeout=30)[2]) for client in clients]
    finally:
        for client in clients:
            client.close()
        control.sendall(b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
        read_response(control)
        control.close()
    if loop_name == "uvloop":
        # uvloop's own server accepts (in C, wherry/backends/asyncio/serve.py): while every turn
        # is busy it takes about one connection a turn; none is left behind.
        assert max(served_at) - min(served_at) <= CONNECTIONS + 10, served_at
    else:
        # Accepting one connection per turn would spread them over about CONNECTIONS turns.
        assert max(served_at) - min(served_at) < 10, served_at

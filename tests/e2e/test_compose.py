"""Several applications behind one server (``wherry.compose``, ``--mount``, ``--route``,
``--fallback``), over real sockets: dispatch, the paths each app sees at every depth, fallback with
body replay and its limits, lifespan for every app, the access log."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
import trio

import wherry
from tests.conftest import RunningServer, read_response, run_server
from wherry.asgi.lifespan import LifespanFailure
from wherry.compose import app_name

Serve = Callable[..., RunningServer]
WAIT = 5.0


def labelled(label: str, status: int = 200, read: bool = True) -> Any:
    """An ASGI app answering JSON: its label and what its scope says; ``status`` for every request."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["owner"] = label
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        if read:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        data = json.dumps(
            {
                "app": label,
                "method": scope["method"],
                "root_path": scope["root_path"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "body": body.decode("latin-1") if status == 200 else None,  # a refusal stays small
                "body_size": len(body),
                "owner": scope.get("state", {}).get("owner"),
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    app.__qualname__ = f"labelled_{label}"
    return app


def wsgi_paths(environ: dict[str, Any], start_response: Any) -> Any:
    data = json.dumps(
        {"app": "wsgi", "SCRIPT_NAME": environ["SCRIPT_NAME"], "PATH_INFO": environ["PATH_INFO"]}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def call(server: RunningServer, method: str, target: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, server.url + target, timeout=WAIT, **kwargs)


def who(server: RunningServer, target: str, method: str = "GET") -> str:
    response = call(server, method, target)
    assert response.status_code == 200, (target, response.text)
    return str(response.json()["app"])


# ---------------------------------------------------------------- dispatch


def test_longest_prefix_wins_on_segment_boundaries(serve: Serve) -> None:
    """The longest mount prefix that matches whole segments wins: /api takes /api and /api/x but
    never /apiary; /api/v2 beats /api for its own subtree."""
    app = wherry.compose(
        labelled("default"),
        mount={"/api": labelled("api"), "/api/v2": labelled("v2"), "/static/": labelled("static")},
    )
    server = serve(app, lifespan="off")
    assert who(server, "/api") == "api"
    assert who(server, "/api/") == "api"
    assert who(server, "/api/x/y") == "api"
    assert who(server, "/api/v2") == "v2"
    assert who(server, "/api/v2/x") == "v2"
    assert who(server, "/api/v20") == "api"
    assert who(server, "/apiary") == "default"
    assert who(server, "/ap") == "default"
    assert who(server, "/static/logo.png") == "static"
    assert who(server, "/") == "default"


def test_method_routes_split_one_path_between_apps(serve: Serve) -> None:
    """'GET /orders' and 'POST /orders' go to different apps; GET takes HEAD too; other methods
    go to the default app; a route leaves root_path and path as they were."""
    app = wherry.compose(
        labelled("default"),
        route={"GET /orders": labelled("new"), "POST,PUT /orders": labelled("legacy")},
    )
    server = serve(app, lifespan="off", root_path="/shop")
    assert who(server, "/orders") == "new"
    assert who(server, "/orders/7") == "new"
    assert call(server, "HEAD", "/orders").status_code == 200
    assert who(server, "/orders", "POST") == "legacy"
    assert who(server, "/orders/7", "PUT") == "legacy"
    assert who(server, "/orders", "DELETE") == "default"
    assert who(server, "/ordersx", "POST") == "default"
    seen = call(server, "POST", "/orders/7").json()
    assert (seen["root_path"], seen["path"]) == ("/shop", "/shop/orders/7")


def test_unmatched_request_without_a_default_app_is_404(serve: Serve) -> None:
    """With only mounts, a request none of them takes is answered 404 by the server."""
    server = serve(wherry.compose(mount={"/a": labelled("a")}), lifespan="off")
    assert who(server, "/a/x") == "a"
    response = call(server, "GET", "/b")
    assert (response.status_code, response.text) == (404, "Not Found\n")


# ---------------------------------------------------------------- paths at every depth


def test_mounted_apps_see_root_path_and_full_path_at_every_depth(serve: Serve) -> None:
    """www spec 2.5: root_path is where the app is mounted and path stays the whole request path
    (PATH_INFO = path less root_path), at depths 1, 2 and 3, under a server --root-path too; raw_path
    keeps the bytes as sent."""
    depth3 = wherry.compose(labelled("depth3-default"), mount={"/c": labelled("depth3")})
    depth2 = wherry.compose(labelled("depth2"), mount={"/b": depth3, "/w": wsgi_paths})
    depth1 = wherry.compose(labelled("depth0"), mount={"/a": depth2})
    server = serve(depth1, lifespan="off", root_path="/srv")
    cases = {
        "/x": ("depth0", "/srv", "/srv/x"),
        "/a/x": ("depth2", "/srv/a", "/srv/a/x"),
        "/a/b/x": ("depth3-default", "/srv/a/b", "/srv/a/b/x"),
        "/a/b/c/x%20y": ("depth3", "/srv/a/b/c", "/srv/a/b/c/x y"),
        "/a/b/c": ("depth3", "/srv/a/b/c", "/srv/a/b/c"),
    }
    for target, (label, root_path, path) in cases.items():
        seen = call(server, "GET", target).json()
        assert (seen["app"], seen["root_path"], seen["path"]) == (label, root_path, path), target
        assert seen["raw_path"] == "/srv" + target
    wsgi = call(server, "GET", "/a/w/page%2Fone").json()
    assert (wsgi["SCRIPT_NAME"], wsgi["PATH_INFO"]) == ("/srv/a/w", "/page/one")
    assert call(server, "GET", "/a/w").json()["PATH_INFO"] == ""


def test_starlette_mounted_two_deep_routes_and_builds_urls(serve: Serve) -> None:
    """A Starlette app mounted inside a mounted composite matches its routes on the path below its
    root_path and builds absolute URLs with every prefix (as under Starlette's own Mount)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def item(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "id": request.path_params["id"],
                "url": str(request.url_for("item", id=request.path_params["id"])),
            }
        )

    starlette_app = Starlette(routes=[Route("/items/{id}", item, name="item")])
    app = wherry.compose(labelled("top"), mount={"/a": wherry.compose(mount={"/st": starlette_app})})
    server = serve(app, lifespan="off")
    response = call(server, "GET", "/a/st/items/3")
    assert response.json() == {"id": "3", "url": f"{server.url}/a/st/items/3"}
    assert call(server, "GET", "/a/st/other").status_code == 404


# ---------------------------------------------------------------- fallback


def test_fallback_answers_what_the_default_app_does_not(serve: Serve) -> None:
    """A 404 (or any --fallback-on status) from the default app is not sent: the fallback answers,
    with the request body replayed; any other answer of the default app stands."""
    primary_calls = []

    async def primary(scope: Any, receive: Any, send: Any) -> None:
        primary_calls.append(scope["path"])
        inner = labelled("new", status=200 if scope["path"].startswith("/new") else 404)
        if scope["path"] == "/gone":
            inner = labelled("new", status=405)
        await inner(scope, receive, send)

    app = wherry.compose(primary, fallback=labelled("legacy"), fallback_on=(404, 405))
    server = serve(app, lifespan="off")
    assert who(server, "/new/thing") == "new"
    body = "x" * 100_000
    replayed = call(server, "POST", "/old", content=body).json()
    assert replayed["app"] == "legacy" and replayed["body"] == body
    assert who(server, "/gone", "DELETE") == "legacy"
    assert primary_calls == ["/new/thing", "/old", "/gone"]


def test_fallback_replays_a_chunked_body_read_in_pieces(serve: Serve) -> None:
    """A chunked body the default app read in several messages is replayed whole, in order."""
    app = wherry.compose(labelled("new", status=404), fallback=labelled("legacy"))
    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        sock.sendall(b"4\r\ndefg\r\n0\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body)["body"] == "abcdefg"


def test_fallback_reads_the_body_the_default_app_left_unread(serve: Serve) -> None:
    """A default app that answers 404 without reading the body: nothing needs keeping, whatever its
    size; the fallback reads the body from the connection."""
    app = wherry.compose(
        labelled("new", status=404, read=False), fallback=labelled("legacy"), fallback_body_limit=1024
    )
    server = serve(app, lifespan="off")
    body = "y" * (3 * 1024 * 1024)
    seen = call(server, "POST", "/x", content=body).json()
    assert seen["app"] == "legacy" and len(seen["body"]) == len(body)


def test_body_over_the_limit_leaves_the_default_apps_answer(serve: Serve) -> None:
    """--fallback-body-limit: once the default app has read more than the limit, the body cannot be
    replayed, so its 404 is the answer; at the limit, the replay still happens."""
    app = wherry.compose(labelled("new", status=404), fallback=labelled("legacy"), fallback_body_limit=1000)
    server = serve(app, lifespan="off")
    over = call(server, "POST", "/x", content="z" * 1001)
    assert over.status_code == 404 and over.json()["app"] == "new"
    assert over.json()["body_size"] == 1001
    at = call(server, "POST", "/x", content="z" * 1000)
    assert at.status_code == 200 and at.json()["app"] == "legacy"


def test_refused_response_over_the_limit_is_sent(serve: Serve) -> None:
    """A 404 whose body passes 64 KiB is not held any longer: it is sent as the answer."""
    from wherry.compose import HELD_RESPONSE_LIMIT

    piece = b"n" * (HELD_RESPONSE_LIMIT // 2)

    async def primary(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        for _ in range(3):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    server = serve(wherry.compose(primary, fallback=labelled("legacy")), lifespan="off")
    response = call(server, "GET", "/x")
    assert (response.status_code, response.content) == (404, piece * 3)


def test_default_app_failing_after_refusing_still_falls_back(serve: Serve, caplog: Any) -> None:
    """The default app answered 404, then raised: the fallback answers and the error is logged."""
    caplog.set_level(logging.ERROR, logger="wherry.error")

    async def primary(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})
        raise RuntimeError("after the answer")

    server = serve(wherry.compose(primary, fallback=labelled("legacy")), lifespan="off")
    assert who(server, "/x") == "legacy"
    assert any("after the answer" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_a_websocket_the_default_app_lacks_is_replayed_to_the_fallback(serve: Serve) -> None:
    """www spec 2.5 (WebSocket): over a real WebSocket connection, a handshake the default app
    (Starlette, without that route) closes before accepting is replayed to the fallback; one it
    has a route for stays its own."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket
    from websockets.sync.client import connect

    async def upper(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text((await websocket.receive_text()).upper())
        await websocket.close()

    async def legacy(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        text = (await receive())["text"]
        await send({"type": "websocket.send", "text": f"legacy {scope['path']}: {text}"})
        await send({"type": "websocket.close", "code": 1000})

    app = wherry.compose(Starlette(routes=[WebSocketRoute("/new", upper)]), fallback=legacy)
    server = serve(app, lifespan="off")
    base = f"ws://{server.host}:{server.port}"
    with connect(base + "/new", open_timeout=WAIT) as ws:
        ws.send("x")
        assert ws.recv(timeout=WAIT) == "X"
    with connect(base + "/old", open_timeout=WAIT) as ws:
        ws.send("x")
        assert ws.recv(timeout=WAIT) == "legacy /old: x"


# ---------------------------------------------------------------- lifespan, state, access log


def recording(label: str, events: list[str], fail: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            if fail:
                await send({"type": "lifespan.startup.failed", "message": f"{label} cannot start"})
                return
            scope["state"]["owner"] = label
            events.append(f"start {label}")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            events.append(f"stop {label}")
            await send({"type": "lifespan.shutdown.complete"})
            return
        await labelled(label)(scope, receive, send)

    return app


def test_every_app_has_its_lifespan_in_order_and_its_own_state(loop_name: str) -> None:
    """Lifespan spec 2.0 for each app: startups in declaration order, shutdowns in reverse, and
    each app's requests carry its own state."""
    events: list[str] = []
    legacy = recording("legacy", events)
    app = wherry.compose(
        recording("new", events),
        mount={"/admin": recording("admin", events)},
        route={"POST /orders": legacy},
        fallback=legacy,  # the same app twice: one lifespan
    )
    with run_server(app, loop_name, lifespan="on") as server:
        assert call(server, "GET", "/x").json()["owner"] == "new"
        assert call(server, "GET", "/admin/x").json()["owner"] == "admin"
        assert call(server, "POST", "/orders").json()["owner"] == "legacy"
        assert events == ["start new", "start admin", "start legacy"]
    assert events[3:] == ["stop legacy", "stop admin", "stop new"]


def test_one_app_failing_startup_stops_the_server_with_its_message(loop_name: str) -> None:
    """A failed startup of any app fails the server's startup with that app's message; the apps
    already started are shut down."""
    events: list[str] = []
    app = wherry.compose(recording("new", events), mount={"/old": recording("old", events, fail=True)})
    with pytest.raises(LifespanFailure, match="old cannot start"), run_server(app, loop_name, lifespan="on"):
        pass
    assert events == ["start new", "stop new"]


def hangs_in_lifespan(entered: threading.Event, ended: threading.Event, fail: bool = False) -> Any:
    """An app whose lifespan call reads ``lifespan.startup`` (and with ``fail`` answers that it
    failed), then waits for ever; ``ended`` is set when that call ends, cancelled."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return
        await receive()
        try:
            if fail:
                await send({"type": "lifespan.startup.failed", "message": "hangs cannot start"})
            entered.set()
            await anyio.sleep_forever()
        finally:
            ended.set()

    return app


def test_a_lifespan_call_left_running_after_a_failed_startup_is_cancelled(loop_name: str) -> None:
    """Lifespan spec 2.0, startup.failed: the composite's startup fails with the app's message and
    ends only once the lifespan call of that app (still running) is cancelled, on every loop."""
    entered, ended = threading.Event(), threading.Event()
    app = wherry.compose(labelled("new"), mount={"/old": hangs_in_lifespan(entered, ended, fail=True)})
    with pytest.raises(LifespanFailure, match="hangs cannot start"), run_server(app, loop_name):
        pass
    assert entered.is_set() and ended.is_set()


def test_stopping_during_a_hanging_startup_cancels_every_apps_lifespan(loop_name: str) -> None:
    """A server asked to stop while a mounted app's startup hangs cancels the composite's lifespan
    call, and with it each app's own (their finally blocks run before serve() returns)."""
    entered, ended = threading.Event(), threading.Event()
    app = wherry.compose(labelled("new"), mount={"/slow": hangs_in_lifespan(entered, ended)})
    server = wherry.Server(app, host="127.0.0.1", port=0, lifespan="on", access_log=False)
    failures: list[BaseException] = []
    ended_when_serve_returned: list[bool] = []

    async def main() -> None:
        await server.serve()
        ended_when_serve_returned.append(ended.is_set())  # not left to the loop's own clean-up

    def target() -> None:
        try:
            if loop_name == "trio":
                trio.run(main)
                return
            factory = asyncio.new_event_loop
            if loop_name == "uvloop":
                import uvloop

                factory = uvloop.new_event_loop
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(main())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert entered.wait(WAIT)
    assert not ended.is_set()
    server.shutdown()
    thread.join(WAIT)
    assert not thread.is_alive() and not failures, failures
    assert ended_when_serve_returned == [True] and not server.started


async def trio_lifespan(scope: Any, receive: Any, send: Any) -> None:
    """An app written for trio: its lifespan opens a nursery before reading anything."""
    if scope["type"] == "lifespan":
        async with trio.open_nursery():
            await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})


async def asyncio_lifespan(scope: Any, receive: Any, send: Any) -> None:
    """An app written for asyncio: it sleeps the asyncio way once it has read the startup."""
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(0)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})


def test_an_app_for_the_other_loop_fails_the_startup_with_a_clear_message(loop_name: str) -> None:
    """A trio app mounted under asyncio (an asyncio app under trio) fails the composite's startup,
    naming the app and the loop it needs, also where its lifespan failed before reading the
    startup (which ``auto`` would otherwise take for "no lifespan")."""
    running, needed, foreign = ("trio", "asyncio", asyncio_lifespan)
    if loop_name != "trio":
        running, needed, foreign = ("asyncio", "trio", trio_lifespan)
    app = wherry.compose(labelled("new"), mount={"/other": foreign})
    name = app_name(foreign)
    expected = f"{name}: the application runs on {needed}, not {running}"
    with pytest.raises(LifespanFailure, match=re.escape(expected)), run_server(app, loop_name):
        pass


def test_access_log_names_the_app_that_answered(serve: Serve, caplog: Any) -> None:
    """Each access line of a composite ends with app=NAME: the app that answered, the fallback
    when it did; a server without composition writes no such field."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    app = wherry.compose(
        labelled("new", status=404),
        mount={"/w": wsgi_paths},
        fallback=labelled("legacy"),
    )
    server = serve(app, lifespan="off", access_log=True)
    assert who(server, "/anything") == "legacy"
    assert who(server, "/w/x") == "wsgi"
    plain = serve(labelled("plain"), lifespan="off", access_log=True)
    call(plain, "GET", "/")
    server.stop()  # an access line is written when its app ends, maybe after the client has read
    plain.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    by_target = {line.split('"')[1].split()[1]: line for line in lines}
    assert by_target["/anything"].endswith("app=tests.e2e.test_compose:labelled_legacy"), lines
    assert by_target["/w/x"].endswith("app=tests.e2e.test_compose:wsgi_paths"), lines
    assert "app=" not in by_target["/"]


def test_composite_runs_under_uvicorn() -> None:
    """wherry.compose() is a plain ASGI app: uvicorn serves its mounts, WSGI app and fallback."""
    import uvicorn

    app = wherry.compose(labelled("new", status=404), mount={"/w": wsgi_paths}, fallback=labelled("legacy"))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.01)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        replayed = httpx.post(base + "/x", content=b"body", timeout=WAIT).json()
        assert (replayed["app"], replayed["body"], replayed["owner"]) == ("legacy", "body", "legacy")
        assert httpx.get(base + "/w/p", timeout=WAIT).json()["SCRIPT_NAME"] == "/w"
    finally:
        server.should_exit = True
        thread.join(WAIT)


def test_cli_exits_3_when_a_mounted_app_fails_startup() -> None:
    """`wherry APP --mount PATH=failing` with a startup failure in the mounted app: the process
    exits with status 3 and the error log names the app and carries its message."""
    from tests.e2e.test_cli import run_cli

    done = run_cli("tests.apps:hello", "--mount", "/db=tests.apps:failing_startup", "--port", "0")
    assert done.returncode == 3, done.stderr
    assert "tests.apps:failing_startup: the database is unreachable" in done.stderr


def test_cli_rejects_two_apps_for_the_same_requests() -> None:
    """Two mounts of one prefix are a usage error before any request is served, not a silent choice
    (on a free port: the check comes after the sockets are bound)."""
    from tests.e2e.test_cli import run_cli

    done = run_cli(
        "tests.apps:hello", "--port", "0", "--mount", "/a=tests.apps:echo", "--mount", "/a/=tests.apps:hello"
    )
    assert done.returncode == 1
    assert "two applications for the same requests" in done.stderr

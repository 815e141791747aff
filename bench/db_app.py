"""The app of the database scenarios: a plain ASGI app on an asyncpg pool and a jinja2 template.

- ``GET /db`` (``dbquery``): the ``world`` row of a random id, as JSON
  ``{"id": 4174, "randomNumber": 331}``.
- ``GET /fortunes`` (``dbpage``): the 12 rows of ``fortune`` plus one added at request time,
  sorted by message, as an HTML table rendered by jinja2 with autoescaping (two of the messages
  hold markup and quotes that must come out escaped).
- anything else: 404, without touching the database (the harness's readiness probe asks ``/``).

The pool (16 connections) opens at lifespan startup and closes at lifespan shutdown; a server
that sends no lifespan events (daphne) gets it opened by the first request instead. The
database's address is in the ``WHERRY_BENCH_DATABASE_URL`` environment variable, which the
harness sets for every server it starts (see ``bench/postgres.py``, which makes the tables).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

import asyncpg
import jinja2

from bench.apps import Receive, Scope, Send, read_body
from bench.postgres import DATABASE_ENV, WORLD_ROWS

POOL_SIZE = 16
WORLD_QUERY = "SELECT id, randomnumber FROM world WHERE id = $1"
FORTUNE_QUERY = "SELECT id, message FROM fortune"
ADDED_FORTUNE = "Added at request time: this row is in no table."

PAGE = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html>\n<html>\n<head><title>Fortunes</title></head>\n<body>\n<table>\n"
    "<tr><th>id</th><th>message</th></tr>\n"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>\n{% endfor %}"
    "</table>\n</body>\n</html>\n"
)

JSON_HEADERS = [(b"content-type", b"application/json")]
HTML_HEADERS = [(b"content-type", b"text/html; charset=utf-8")]
NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"9")]

_pool: Any = None
_opening = asyncio.Lock()


async def open_pool() -> Any:
    """The pool, opened on first need (lifespan startup, or the first request without one)."""
    global _pool
    async with _opening:
        if _pool is None:
            _pool = await asyncpg.create_pool(
                os.environ[DATABASE_ENV], min_size=POOL_SIZE, max_size=POOL_SIZE
            )
    return _pool


async def close_pool() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        await pool.close()


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await open_pool()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"database: {exc!r}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close_pool()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def query() -> bytes:
    pool = _pool or await open_pool()
    row = await pool.fetchrow(WORLD_QUERY, random.randint(1, WORLD_ROWS))
    return json.dumps({"id": row["id"], "randomNumber": row["randomnumber"]}).encode()


async def page() -> bytes:
    pool = _pool or await open_pool()
    fortunes = [(row["id"], row["message"]) for row in await pool.fetch(FORTUNE_QUERY)]
    fortunes.append((0, ADDED_FORTUNE))
    fortunes.sort(key=lambda fortune: fortune[1])
    return PAGE.render(fortunes=fortunes).encode()


ROUTES = {"/db": (query, JSON_HEADERS), "/fortunes": (page, HTML_HEADERS)}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await read_body(receive)
    route = ROUTES.get(scope["path"])
    if route is None:
        await send({"type": "http.response.start", "status": 404, "headers": NOT_FOUND_HEADERS})
        await send({"type": "http.response.body", "body": b"Not Found"})
        return
    handler, headers = route
    body = await handler()
    length = (b"content-length", str(len(body)).encode("ascii"))
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})

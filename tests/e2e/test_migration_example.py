"""examples/migration end to end: the one ``wherry`` command of its README (on asyncio and on
trio, and the same setup from its TOML file) serves a Flask app and the FastAPI app replacing it;
every route is answered by the right app, bodies survive the fallback replay, and mounted apps see
the right paths."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cli import WherryProcess, graceful_exit

README = Path(__file__).resolve().parents[2] / "examples" / "migration" / "README.md"
WAIT = 10.0


def readme_command() -> list[str]:
    """The ``wherry ...`` line of the README, as arguments for ``python -m wherry``."""
    (line,) = [ln for ln in README.read_text().splitlines() if ln.startswith("wherry examples.migration")]
    return shlex.split(line)[1:]


def readme_toml() -> str:
    match = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert match
    return match.group(1)


@pytest.fixture(
    params=[("command", "auto"), ("config", "auto"), ("command", "trio")], ids=lambda p: "-".join(p)
)
def migration(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The README's command (on asyncio and on trio) or its TOML file, served by a ``wherry``
    process."""
    how, loop = request.param
    if how == "command":
        args = readme_command()
    else:
        path = tmp_path / "migration.toml"
        path.write_text(readme_toml())
        args = ["--config", str(path)]
    process = WherryProcess([*args, "--port", "0", "--lifespan", "on", "--loop", loop])
    try:
        url = process.url()
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            yield client
        graceful_exit(process)
    finally:
        process.stop()


def served_by(response: httpx.Response) -> str:
    assert response.status_code < 500, response.text
    return response.headers["x-served-by"]


def test_every_route_is_answered_by_the_right_app(migration: httpx.Client) -> None:
    """The taken-over routes by FastAPI, POST /orders by Flask through the method route, the rest
    by Flask through the fallback, the legacy mount by Flask."""
    client = migration
    assert served_by(client.get("/orders")) == "new-fastapi"
    assert served_by(client.get("/orders/1")) == "new-fastapi"
    customer = client.get("/customers/1")
    assert served_by(customer) == "new-fastapi"
    assert customer.json()["generation"] == "new"  # the new app's own lifespan state
    created = client.post("/orders", json={"customer": 2, "item": "teapot"})
    assert (served_by(created), created.status_code) == ("legacy-flask", 201)
    assert created.headers["location"] == f"/orders/{created.json()['id']}"
    assert served_by(client.get("/reports/daily")) == "legacy-flask"
    assert served_by(client.get("/legacy/orders")) == "legacy-flask"
    assert served_by(client.get("/legacy/customers/2")) == "legacy-flask"
    # Written by one app, read by the other.
    listed = client.get("/orders")
    assert served_by(listed) == "new-fastapi"
    assert created.json() in listed.json()


def test_bodies_survive_the_fallback_replay(migration: httpx.Client) -> None:
    """POST /orders/1/cancel is unknown to FastAPI (a 404 after it looked at the request); Flask gets
    the same JSON body."""
    reason = "changed my mind " * 500
    cancelled = migration.post("/orders/1/cancel", json={"reason": reason})
    assert served_by(cancelled) == "legacy-flask"
    assert cancelled.json()["reason"] == reason
    assert cancelled.json()["status"] == "cancelled"
    missing = migration.post("/orders/999/cancel", json={"reason": "x"})
    assert (served_by(missing), missing.status_code) == ("legacy-flask", 404)


def test_nested_mounts_see_the_right_paths(migration: httpx.Client) -> None:
    """Flask mounted at /legacy sees SCRIPT_NAME=/legacy and builds URLs with it; FastAPI's own
    /v2 mount inside the default app sees root_path=/v2 and the full path."""
    legacy = migration.get("/legacy/whoami").json()
    assert legacy == {
        "app": "legacy-flask",
        "script_name": "/legacy",
        "path_info": "/whoami",
        "url": "/legacy/whoami",
    }
    fallback = migration.get("/whoami").json()  # unknown to FastAPI: Flask at the root
    assert (fallback["script_name"], fallback["url"]) == ("", "/whoami")
    v2 = migration.get("/v2/whoami").json()
    assert (v2["app"], v2["root_path"], v2["path"]) == ("new-fastapi-v2", "/v2", "/v2/whoami")
    assert v2["url"] == str(migration.base_url.join("/v2/whoami"))

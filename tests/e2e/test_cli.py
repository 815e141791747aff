"""The ``wherry`` command line, run as a real process (``python -m wherry`` and the console script).

Each test starts the CLI, learns the address from its "Wherry running on ..." log line, talks to it
with real clients and stops it with a real signal.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import wherry

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0  # a fresh interpreter imports the server and the app within this
RUNNING = re.compile(r"Wherry running on (\S+)")

# An application module written to a temporary --app-dir. It reads GREETING at import (for
# --env-file), writes SHUTDOWN_MARKER on lifespan shutdown, and /slow streams a first chunk, waits
# ?delay= seconds, then finishes (for graceful shutdown).
CLI_APP = """
import json
import os

import anyio

GREETING = os.environ.get("GREETING", "unset")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                marker = os.environ.get("SHUTDOWN_MARKER")
                if marker:
                    with open(marker, "w") as f:
                        f.write("shutdown complete")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"].endswith("/slow"):
        delay = float(scope["query_string"].decode().partition("=")[2] or "0.5")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await anyio.sleep(delay)
        await send({"type": "http.response.body", "body": b"last"})
        return
    body = json.dumps({
        "greeting": GREETING,
        "path": scope["path"],
        "root_path": scope["root_path"],
        "client": scope["client"],
    }).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    })
    await send({"type": "http.response.body", "body": body})


def create_app():
    return app
"""


def clean_environ(**extra: str) -> dict[str, str]:
    """The test's environment without any Wherry setting, plus ``extra``."""
    names = {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHERRY_") and k not in names}
    env.update(extra)
    return env


class WherryProcess:
    """A ``wherry`` process whose stderr is read line by line in a thread."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        command: list[str] | None = None,
    ) -> None:
        argv = [*(command or [sys.executable, "-m", "wherry"]), *args]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=clean_environ() if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails if the process ends or stays silent."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern.pattern!r}: {self.text}") from None
            if line is None:
                raise AssertionError(f"wherry exited ({self.proc.wait()}): {self.text}")
            match = pattern.search(line)
            if match:
                return match

    def addresses(self, count: int = 1) -> list[str]:
        return [self.wait_for(RUNNING).group(1) for _ in range(count)]

    def url(self) -> str:
        return self.addresses()[0]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        self._reader.join(WAIT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def wherry_cli() -> Iterator[Any]:
    """``wherry_cli(*args, env=..., pass_fds=..., command=...)`` starts the CLI; all are killed at
    teardown if still running."""
    started: list[WherryProcess] = []

    def start(*args: str, **kwargs: Any) -> WherryProcess:
        process = WherryProcess(list(args), **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``cliapp.py`` (not importable from the repository root)."""
    directory = tmp_path / "apps"
    directory.mkdir()
    (directory / "cliapp.py").write_text(CLI_APP)
    return directory


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for commands that exit by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "wherry", *args],
        cwd=ROOT,
        env=clean_environ() if env is None else env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def graceful_exit(process: WherryProcess) -> None:
    process.signal(signal.SIGTERM)
    assert process.wait() == 0, process.text


# ---------------------------------------------------------------- starting and serving


def test_python_m_wherry_serves_on_port_zero(wherry_cli: Any) -> None:
    """``python -m wherry APP --port 0`` binds a free port and logs the address it serves on."""
    process = wherry_cli("tests.apps:hello", "--port", "0")
    url = process.url()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    response = httpx.get(url)
    assert (response.status_code, response.text) == (200, "Hello, world!")
    graceful_exit(process)


def test_console_script_serves(wherry_cli: Any) -> None:
    """The ``wherry`` console script installed with the package runs the same command."""
    script = shutil.which("wherry") or str(Path(sys.executable).parent / "wherry")
    if not Path(script).exists():
        pytest.skip("the wherry console script is not installed")
    process = wherry_cli("tests.apps:hello", "--port", "0", command=[script])
    assert httpx.get(process.url()).text == "Hello, world!"
    graceful_exit(process)


def test_version_flag_prints_the_version() -> None:
    """``--version`` prints the package version and exits 0."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert wherry.__version__ in result.stdout


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("not_an_app_string", "APP must look like 'module:attribute'"),
        ("no_such_module_anywhere:app", "could not import module 'no_such_module_anywhere'"),
        ("tests.apps:no_such_attribute", "attribute 'no_such_attribute' not found"),
        ("tests.apps:", "APP must look like 'module:attribute'"),
    ],
)
def test_bad_app_string_exits_1_with_a_clear_message(app: str, message: str) -> None:
    """An APP that cannot be loaded ends the process with status 1 and says why, no traceback."""
    result = run_cli(app, "--port", "0")
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_app_is_a_usage_error() -> None:
    """No APP at all is a usage error (status 2), not a crash."""
    result = run_cli("--port", "0")
    assert result.returncode == 2
    assert "missing APP" in result.stderr


def test_invalid_option_value_is_a_usage_error() -> None:
    """An option value of the wrong type is rejected before anything starts."""
    result = run_cli("tests.apps:hello", "--port", "eighty")
    assert result.returncode == 2
    assert "--port" in result.stderr


def test_factory_and_app_dir(wherry_cli: Any, app_dir: Path) -> None:
    """--app-dir puts a directory first on sys.path; --factory calls APP to get the application."""
    process = wherry_cli("cliapp:create_app", "--factory", "--app-dir", str(app_dir), "--port", "0")
    assert httpx.get(process.url() + "/x").json()["path"] == "/x"
    graceful_exit(process)


def test_without_factory_a_factory_is_not_called(wherry_cli: Any, app_dir: Path) -> None:
    """Without --factory, APP is the application itself (a factory would be served as an app)."""
    process = wherry_cli("cliapp:app", "--app-dir", str(app_dir), "--port", "0")
    assert httpx.get(process.url()).json()["greeting"] == "unset"
    graceful_exit(process)


def test_interface_asgi2(wherry_cli: Any) -> None:
    """--interface asgi2 serves a double-callable application."""
    process = wherry_cli("tests.apps:asgi2_app", "--interface", "asgi2", "--port", "0")
    assert httpx.get(process.url()).text == "asgi2"
    graceful_exit(process)


def test_env_file_is_loaded_before_the_app_is_imported(
    wherry_cli: Any, app_dir: Path, tmp_path: Path
) -> None:
    """--env-file sets variables the application reads at import time."""
    env_file = tmp_path / "app.env"
    env_file.write_text('# settings\nexport GREETING="hello from the env file"\n')
    process = wherry_cli("cliapp:app", "--app-dir", str(app_dir), "--env-file", str(env_file), "--port", "0")
    assert httpx.get(process.url()).json()["greeting"] == "hello from the env file"
    graceful_exit(process)


def test_missing_env_file_exits_1(app_dir: Path, tmp_path: Path) -> None:
    """An --env-file that cannot be read stops the start with status 1 and a message."""
    missing = tmp_path / "missing.env"
    result = run_cli("cliapp:app", "--app-dir", str(app_dir), "--env-file", str(missing))
    assert result.returncode == 1
    assert "missing.env" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- binding


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "trio"])


@LOOPS
def test_unix_domain_socket(wherry_cli: Any, tmp_path: Path, loop: str) -> None:
    """--uds PATH serves on a Unix socket; the client address is absent from the scope."""
    path = tmp_path / "wherry.sock"
    process = wherry_cli("tests.apps:hello", "--uds", str(path), "--loop", loop)
    assert process.url() == f"unix:{path}"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        assert client.get("http://localhost/").text == "Hello, world!"
    graceful_exit(process)


@LOOPS
def test_inherited_file_descriptor(wherry_cli: Any, loop: str) -> None:
    """--fd N serves on a listening socket the parent bound and passed down."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        fd = listener.fileno()
        process = wherry_cli("tests.apps:hello", "--fd", str(fd), "--loop", loop, pass_fds=(fd,))
        assert process.url() == f"http://127.0.0.1:{port}"
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"
        graceful_exit(process)
    finally:
        listener.close()


def test_bind_several_addresses(wherry_cli: Any, tmp_path: Path) -> None:
    """-b HOST:PORT and -b unix:PATH together: one server listens on both."""
    path = tmp_path / "bound.sock"
    process = wherry_cli("tests.apps:hello", "-b", "127.0.0.1:0", "--bind", f"unix:{path}")
    addresses = sorted(process.addresses(2))
    assert addresses[1] == f"unix:{path}"
    assert httpx.get(addresses[0]).text == "Hello, world!"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        assert client.get("http://localhost/").text == "Hello, world!"
    graceful_exit(process)


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_host(wherry_cli: Any, app_dir: Path) -> None:
    """--host ::1 serves over IPv6; the address is logged in brackets."""
    process = wherry_cli("cliapp:app", "--app-dir", str(app_dir), "--host", "::1", "--port", "0")
    url = process.url()
    assert url.startswith("http://[::1]:")
    assert httpx.get(url).json()["client"][0] == "::1"
    graceful_exit(process)


def test_port_in_use_exits_1() -> None:
    """Binding a port that is taken fails with status 1 and the address in the message."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("tests.apps:hello", "--port", str(port))
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- HTTP options


def test_root_path_option(wherry_cli: Any, app_dir: Path) -> None:
    """--root-path sets scope['root_path'] and prefixes the path."""
    process = wherry_cli("cliapp:app", "--app-dir", str(app_dir), "--root-path", "/api", "--port", "0")
    info = httpx.get(process.url() + "/items").json()
    assert (info["root_path"], info["path"]) == ("/api", "/api/items")
    graceful_exit(process)


def test_header_and_no_server_header(wherry_cli: Any) -> None:
    """--header adds a default header (repeatable); --no-server-header drops 'server'."""
    process = wherry_cli(
        "tests.apps:hello",
        "--header",
        "x-one:1",
        "--header",
        "x-two: 2",
        "--no-server-header",
        "--port",
        "0",
    )
    response = httpx.get(process.url())
    assert (response.headers["x-one"], response.headers["x-two"]) == ("1", "2")
    assert "server" not in response.headers
    graceful_exit(process)


def test_config_file(wherry_cli: Any, app_dir: Path, tmp_path: Path) -> None:
    """--config FILE.toml supplies options, APP included, under a [wherry] table."""
    config = tmp_path / "wherry.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [wherry]
            app = "cliapp:app"
            app-dir = "{app_dir}"
            port = 0
            root_path = "/from-toml"
            header = ["x-config: yes"]
            """
        )
    )
    process = wherry_cli("--config", str(config))
    response = httpx.get(process.url())
    assert response.json()["root_path"] == "/from-toml"
    assert response.headers["x-config"] == "yes"
    graceful_exit(process)


def test_environment_variables(wherry_cli: Any, app_dir: Path) -> None:
    """WHERRY_<OPTION> environment variables set options, APP included."""
    env = clean_environ(
        WHERRY_APP="cliapp:app",
        WHERRY_APP_DIR=str(app_dir),
        WHERRY_PORT="0",
        WHERRY_ROOT_PATH="/from-env",
        WHERRY_SERVER_HEADER="false",
    )
    process = wherry_cli(env=env)
    response = httpx.get(process.url())
    assert response.json()["root_path"] == "/from-env"
    assert "server" not in response.headers
    graceful_exit(process)


@pytest.mark.parametrize(
    ("toml", "env", "cli", "expected"),
    [
        (None, None, None, ""),
        ("/toml", None, None, "/toml"),
        ("/toml", "/env", None, "/env"),
        ("/toml", "/env", "/cli", "/cli"),
    ],
)
def test_precedence_command_line_then_environment_then_file_then_default(
    wherry_cli: Any,
    app_dir: Path,
    tmp_path: Path,
    toml: str | None,
    env: str | None,
    cli: str | None,
    expected: str,
) -> None:
    """An option given on the command line beats the environment, which beats the TOML file, which
    beats the default."""
    config = tmp_path / "wherry.toml"
    config.write_text(f'root_path = "{toml}"\n' if toml else "")
    args = ["cliapp:app", "--app-dir", str(app_dir), "--port", "0", "--config", str(config)]
    if cli:
        args += ["--root-path", cli]
    environ = clean_environ(**({"WHERRY_ROOT_PATH": env} if env else {}))
    process = wherry_cli(*args, env=environ)
    assert httpx.get(process.url()).json()["root_path"] == expected
    graceful_exit(process)


# ---------------------------------------------------------------- shutdown


def start_slow_request(url: str, delay: float) -> socket.socket:
    """Open a connection, ask for /slow and read until its first chunk: the request is in flight."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.sendall(b"GET /slow?delay=%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(delay).encode())
    data = b""
    while b"first;" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return sock


def read_rest(sock: socket.socket) -> bytes:
    sock.settimeout(WAIT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@LOOPS
def test_sigterm_lets_the_request_in_flight_finish(wherry_cli: Any, app_dir: Path, loop: str) -> None:
    """SIGTERM: the server stops accepting, finishes the request in flight, then exits 0."""
    process = wherry_cli("cliapp:app", "--app-dir", str(app_dir), "--port", "0", "--loop", loop)
    with start_slow_request(process.url(), 0.5) as sock:
        process.signal(signal.SIGTERM)
        rest = read_rest(sock)
    assert rest.endswith(b"4\r\nlast\r\n0\r\n\r\n"), rest
    assert process.wait() == 0, process.text


@LOOPS
def test_graceful_shutdown_timeout_cuts_a_slow_request(wherry_cli: Any, app_dir: Path, loop: str) -> None:
    """--timeout-graceful-shutdown bounds the wait: a request still running is cut, and the process
    exits 0 soon after."""
    process = wherry_cli(
        "cliapp:app",
        "--app-dir",
        str(app_dir),
        "--port",
        "0",
        "--timeout-graceful-shutdown",
        "0.3",
        "--loop",
        loop,
    )
    with start_slow_request(process.url(), 30) as sock:
        process.signal(signal.SIGTERM)
        rest = read_rest(sock)
        assert b"last" not in rest
    assert process.wait(timeout=3) == 0, process.text
    assert "Graceful shutdown timed out" in process.text
    assert "Traceback" not in process.text, "a request cut at shutdown is not an app error"

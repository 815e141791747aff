"""A uvicorn user switches by changing one word: every flag of the installed uvicorn's ``--help``,
its environment variables and its Python idioms, and the messages for the usual mistakes."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest

import wherry
import wherry.cli
import wherry.main
from wherry.config import OPTIONS_BY_NAME, Config, ConfigError
from wherry.importer import load_env_file

from ..procs import ROOT, Wherry, free_port, unix_accepts, wait_until

# ---------------------------------------------------------------- uvicorn --help, flag by flag


def uvicorn_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# "  --flag[ / --no-flag] [METAVAR]   help" at the start of an option's line.
OPTION_LINE = re.compile(
    r"^  (-{1,2}[a-z0-9-]+)(?: / (--[a-z0-9-]+))?(?: (\[[^\]]+\]|[A-Z]+(?: RANGE)?))?(?:\s|$)"
)


def uvicorn_flags() -> list[tuple[str, str | None, str]]:
    """(flag, negative flag or None, metavar or '') for every option of ``uvicorn --help``."""
    found = []
    for line in uvicorn_help().splitlines():
        match = OPTION_LINE.match(line)
        if match:
            flag, negative, metavar = match.groups()
            found.append((flag, negative, (metavar or "").strip()))
    return found


FLAGS = uvicorn_flags()


def uvicorn_param_name(flag: str) -> str:
    """The name uvicorn gives the option of ``flag`` (its keyword in ``uvicorn.run``)."""
    # The package's "main" is the command.
    command: click.Command = importlib.import_module("uvicorn.main").main

    for param in command.params:
        if flag in (*param.opts, *param.secondary_opts):
            assert param.name is not None
            return param.name
    raise AssertionError(f"{flag} is not an option of uvicorn")


# A value of the right form for the flags whose generic sample would not be meaningful.
SAMPLES = {
    "--host": "0.0.0.0",
    "--uds": "/tmp/wherry-parity.sock",
    "--header": "x-served-by:wherry",
    "--forwarded-allow-ips": "10.0.0.1,127.0.0.1",
    "--root-path": "/api",
    "--app-dir": ".",
    "--reload-dir": ".",
    "--reload-include": "*.toml",
    "--reload-exclude": "*.tmp",
    "--ssl-version": "17",
    "--ssl-cert-reqs": "2",
    "--ssl-ciphers": "ECDHE+AESGCM",
    "--ssl-keyfile": "key.pem",
    "--ssl-certfile": "cert.pem",
    "--ssl-ca-certs": "ca.pem",
    "--ssl-keyfile-password": "secret",
}
GENERIC = {"INTEGER": "3", "INTEGER RANGE": "3", "FLOAT": "2.5", "TEXT": "text", "PATH": "some/path"}


def cases() -> Iterator[Any]:
    for flag, negative, metavar in FLAGS:
        if flag in ("--help", "--version"):
            continue
        if metavar.startswith("["):
            for choice in metavar.strip("[]").split("|"):
                yield pytest.param(flag, [choice], id=f"{flag} {choice}")
        elif metavar == "BOOLEAN":
            for value in ("true", "false"):
                yield pytest.param(flag, [value], id=f"{flag} {value}")
        elif metavar:
            yield pytest.param(flag, [SAMPLES.get(flag, GENERIC[metavar])], id=flag)
        else:
            yield pytest.param(flag, [], id=flag)
        if negative:
            yield pytest.param(negative, [], id=negative)


def test_the_help_lists_uvicorns_options() -> None:
    """The table below is read from the installed uvicorn, not written by hand."""
    flags = {flag for flag, _negative, _metavar in FLAGS}
    assert len(flags) > 50
    assert {"--ws-per-message-deflate", "--log-config", "--h11-max-incomplete-event-size"} <= flags


@pytest.mark.parametrize(("flag", "values"), list(cases()))
def test_every_uvicorn_flag_is_accepted_with_the_same_meaning(
    flag: str, values: list[str], parse: Any, tmp_path: Path
) -> None:
    """Each flag of ``uvicorn --help``, with a value of the form uvicorn takes, sets the Wherry
    option of the same name to that value; a choice Wherry serves another way sets what Wherry
    runs instead and leaves a note to log at startup."""
    if flag == "--env-file":
        values = [str(tmp_path / "app.env")]
        Path(values[0]).write_text("PARITY=1\n")
    if flag == "--log-config":
        values = [str(tmp_path / "logging.json")]
        Path(values[0]).write_text(json.dumps({"version": 1}))
    config = parse([flag, *values, "tests.apps:hello"])
    negative = flag.startswith("--no-")
    name = uvicorn_param_name(flag)
    option = OPTIONS_BY_NAME[name]
    got = getattr(config, name)
    if option.kind == "bool":
        expected: Any = (values[0] == "true") if values else not negative
    elif option.kind == "list":
        expected = values
    elif option.kind == "choice" and values[0] in option.substitute_names:
        runs = {value: runs for value, runs, _why in option.substitutes}[values[0]]
        assert got == runs
        assert any(values[0] in note for note in config.notes)
        return
    elif name in ("app_dir", "reload_dirs", "env_file", "log_config", "uds") or option.kind in (
        "str",
        "choice",
        "path",
    ):
        expected = values[0]
    else:
        expected = option.parse(values[0])
    assert got == expected


def test_version_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wherry", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert wherry.__version__ in result.stdout


def test_a_uvicorn_command_line_serves(tmp_path: Path) -> None:
    """A command line written for uvicorn, with the choices Wherry serves its own way, serves;
    each of those choices is said once at startup."""
    log_config = tmp_path / "log.json"
    log_config.write_text(json.dumps({"version": 1, "disable_existing_loggers": False}))
    args = [
        "tests.apps:hello",
        "--http",
        "h11",
        "--ws",
        "wsproto",
        "--loop",
        "asyncio",
        "--ws-per-message-deflate",
        "false",
        "--use-colors",
        "--reset-contextvars",
        "--h11-max-incomplete-event-size",
        "32768",
        "--ssl-version",
        "17",
        "--log-config",
        str(log_config),
        "--timeout-keep-alive",
        "5",
        "--no-server-header",
    ]
    server = Wherry(args, tmp_path)
    try:
        server.wait_serving()
        response = httpx.get(server.url)
        assert response.status_code == 200
        assert "server" not in response.headers
        assert server.stop() == 0
    finally:
        server.close()
    log = server.log()
    for said in ("--http h11", "--ws wsproto", "--use-colors", "--reset-contextvars", "--h11-max"):
        assert log.count(said) == 1, log
    for line in ("Started server process", "Application startup complete.", "Shutting down"):
        assert line in log


# ---------------------------------------------------------------- UVICORN_* environment variables


def serve_env(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WHERRY_", "UVICORN_"))}
    log = open(tmp_path / "env.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "wherry", *args],
        cwd=ROOT,
        env={**clean, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_uvicorn_port_from_the_environment(tmp_path: Path) -> None:
    """UVICORN_PORT (and UVICORN_APP) are honoured as uvicorn honours them."""
    port = free_port()
    proc = serve_env(tmp_path, {"UVICORN_PORT": str(port), "UVICORN_APP": "tests.apps:hello"})
    try:
        wait_until(lambda: proc.poll() is not None or answers(port), 20, "the server on UVICORN_PORT")
        assert proc.poll() is None, (tmp_path / "env.log").read_text()
    finally:
        assert stop(proc) == 0


def test_wherry_variables_win_over_uvicorns(tmp_path: Path) -> None:
    ours, theirs = free_port(), free_port()
    proc = serve_env(tmp_path, {"UVICORN_PORT": str(theirs), "WHERRY_PORT": str(ours)}, "tests.apps:hello")
    try:
        wait_until(lambda: proc.poll() is not None or answers(ours), 20, "the server on WHERRY_PORT")
        assert not answers(theirs)
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize(
    ("environ", "name", "value"),
    [
        ({"UVICORN_WS_PER_MESSAGE_DEFLATE": "false"}, "ws_per_message_deflate", False),
        ({"UVICORN_RELOAD_DIRS": "src tests"}, "reload_dirs", ["src", "tests"]),
        ({"UVICORN_WORKERS": "4", "WEB_CONCURRENCY": "2"}, "workers", 4),
        ({"UVICORN_LOG_LEVEL": "debug", "WHERRY_LOG_LEVEL": "trace"}, "log_level", "trace"),
        ({"UVICORN_HTTP": "h11"}, "http", "httptools"),
    ],
)
def test_uvicorn_variables(environ: dict[str, str], name: str, value: Any) -> None:
    """Lists are split on spaces as click splits them; WHERRY_ wins, then UVICORN_, then the
    shared names (WEB_CONCURRENCY)."""
    assert getattr(Config.from_sources({}, environ=environ), name) == value


def test_a_bad_variable_names_itself() -> None:
    with pytest.raises(ConfigError, match="environment variable UVICORN_PORT"):
        Config.from_sources({}, environ={"UVICORN_PORT": "eighty"})


# ---------------------------------------------------------------- the Python idioms


def test_config_and_server_as_in_uvicorn() -> None:
    """``Config(app, ...)`` + ``Server(config)``, ``await server.serve()``, ``server.started``
    and ``server.should_exit = True`` stopping it."""
    from tests.apps import hello

    async def main() -> tuple[bool, int]:
        config = wherry.Config(hello, port=0, log_level="warning")
        server = wherry.Server(config)
        task = asyncio.create_task(server.serve())
        await server.wait_started()
        host, port = server.addresses[0]
        async with httpx.AsyncClient() as client:
            status = (await client.get(f"http://{host}:{port}/")).status_code
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        return server.started, status

    started, status = asyncio.run(main())
    assert started and status == 200


def test_server_run_blocks_until_should_exit() -> None:
    """``server.run()`` serves in its own event loop; ``should_exit`` set from another thread
    stops it."""
    run_in_a_thread_and_stop(wherry.Config("tests.apps:hello", port=0, log_level="warning"))


def run_in_a_thread_and_stop(config: Config) -> None:
    """``server.run()`` in a thread: one request answered, then ``should_exit`` stops it."""
    server = wherry.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        wait_until(lambda: server.started, 15, "the server to start")
        host, port = server.addresses[0]
        assert httpx.get(f"http://{host}:{port}/").status_code == 200
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()


LOOPS_MADE: list[asyncio.AbstractEventLoop] = []


def recorded_loop() -> asyncio.AbstractEventLoop:
    """A loop factory named by import string, as uvicorn's Config(loop="module:attr") takes it."""
    loop = asyncio.new_event_loop()
    LOOPS_MADE.append(loop)
    return loop


def test_loop_as_an_import_string_names_the_loop_factory() -> None:
    LOOPS_MADE.clear()
    run_in_a_thread_and_stop(
        wherry.Config("tests.apps:hello", port=0, log_level="warning", loop=f"{__name__}:recorded_loop")
    )
    assert len(LOOPS_MADE) == 1
    with pytest.raises(ConfigError, match="cannot import the loop factory"):
        wherry.main.loop_factory("tests.no_such_module:loop")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_factory_without_factory_is_called_with_a_warning() -> None:
    """As uvicorn does: an APP that takes no argument is a factory; it is called, and a warning
    says to pass --factory."""
    from tests.apps import hello
    from wherry.importer import load_app

    def create_app() -> Any:
        return hello

    records = Records()
    logger = logging.getLogger("wherry.error")
    logger.addHandler(records)
    try:
        assert load_app(create_app) is hello
        assert load_app(hello) is hello  # an application is not called
    finally:
        logger.removeHandler(records)
    assert len(records.lines) == 1
    assert "--factory" in records.lines[0]


def test_public_surface() -> None:
    assert sorted(wherry.__all__) == [
        "COMPILED",
        "Config",
        "Server",
        "__version__",
        "compose",
        "run",
        "serve",
    ]


# ---------------------------------------------------------------- --env-file, logs, processes


def test_env_file_is_read_as_python_dotenv_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("P_BASE", "P_EXPORTED", "P_QUOTED", "P_INLINE", "P_EXPANDED", "P_DEFAULT", "P_KEPT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("P_KEPT", "from the environment")
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "P_BASE=base\n"
        "export P_EXPORTED=yes\n"
        'P_QUOTED="two words # not a comment"\n'
        "P_INLINE=value # a comment after the value\n"
        "P_EXPANDED=${P_BASE}/more\n"
        "P_DEFAULT=${P_MISSING:-fallback}\n"
        "P_KEPT=from the file\n"
    )
    load_env_file(str(path))
    assert os.environ["P_BASE"] == "base"
    assert os.environ["P_EXPORTED"] == "yes"
    assert os.environ["P_QUOTED"] == "two words # not a comment"
    assert os.environ["P_INLINE"] == "value"
    assert os.environ["P_EXPANDED"] == "base/more"
    assert os.environ["P_DEFAULT"] == "fallback"
    assert os.environ["P_KEPT"] == "from the environment"


@pytest.fixture
def servers() -> Iterator[list[Wherry]]:
    started: list[Wherry] = []
    yield started
    for server in started:
        server.close()


def test_log_levels_debug_and_trace_log_more_than_info(servers: list[Wherry], tmp_path: Path) -> None:
    quiet = Wherry(["tests.apps:hello"], tmp_path)
    debug = Wherry(["tests.apps:hello", "--log-level", "debug", "--ssl-keyfile-password", "hush"], tmp_path)
    loud = Wherry(["tests.apps:hello", "--log-level", "trace"], tmp_path)
    servers += [quiet, debug, loud]
    for server in (quiet, debug, loud):
        server.wait_serving()
        httpx.get(server.url)
        assert server.stop() == 0
    assert "DEBUG" not in quiet.log() and "Connection made" not in quiet.log()
    assert "DEBUG wherry.error: Serving on asyncio with" in debug.log()
    assert "hush" not in debug.log()
    assert "Connection made" in loud.log() and "Connection lost" in loud.log()
    assert len(quiet.log().splitlines()) < len(debug.log().splitlines()) < len(loud.log().splitlines())


def test_limit_max_requests_stops_a_single_server(servers: list[Wherry], tmp_path: Path) -> None:
    """As uvicorn's: one process with --limit-max-requests exits (status 0) once it has served
    that many requests, and says why."""
    server = Wherry(["tests.apps:hello", "--limit-max-requests", "3"], tmp_path)
    servers.append(server)
    server.wait_serving()  # one request
    with httpx.Client() as client:
        for _ in range(2):
            assert client.get(server.url).status_code == 200
    assert server.proc.wait(20) == 0
    assert "Maximum request limit of 3 exceeded. Terminating process." in server.log()


def test_unix_socket_file_is_removed_on_shutdown(servers: list[Wherry], tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = Wherry(["tests.apps:hello", "--uds", str(path)], tmp_path)
    servers.append(server)
    wait_until(lambda: unix_accepts(str(path)), 20, "the Unix socket")
    server.wait_log("running on")
    assert server.stop() == 0
    assert not path.exists()


def blocked_module(tmp_path: Path, name: str) -> dict[str, str]:
    """An environment in which ``import NAME`` fails as when it is not installed."""
    shadow = tmp_path / "shadow"
    (shadow / name).mkdir(parents=True)
    (shadow / name / "__init__.py").write_text(f"raise ImportError('no module named {name}')\n")
    return {"PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT)])}


def test_reload_without_watchfiles_polls(servers: list[Wherry], tmp_path: Path) -> None:
    """Without watchfiles, --reload warns once and compares file times instead."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "polled.py").write_text("from tests.apps import hello as app\n")
    server = Wherry(
        ["polled:app", "--reload", "--reload-dir", str(app_dir), "--app-dir", str(app_dir)],
        tmp_path,
        env=blocked_module(tmp_path, "watchfiles"),
    )
    servers.append(server)
    server.wait_serving()
    server.wait_log("watchfiles is not installed")
    (app_dir / "polled.py").write_text("from tests.apps import hello as app  # changed\n")
    server.wait_log("Changes detected in")
    assert server.stop() == 0


def test_reload_options_without_reload_warn(parse: Any) -> None:
    config = parse(["--reload-dir", ".", "tests.apps:hello"])
    assert any("without --reload" in note for note in config.notes)


# ---------------------------------------------------------------- gunicorn's and hypercorn's options


def test_gunicorn_log_files_chdir_and_pid(servers: list[Wherry], tmp_path: Path) -> None:
    """--access-logfile -, --error-logfile PATH, --chdir DIR and -p PATH as gunicorn means them."""
    app_dir = tmp_path / "elsewhere"
    app_dir.mkdir()
    (app_dir / "chdir_app.py").write_text("from tests.apps import hello as app\n")
    error_log = tmp_path / "error.log"
    pid_file = tmp_path / "wherry.pid"
    args = ["chdir_app:app", "--chdir", str(app_dir), "--access-logfile", "-"]
    args += ["--error-logfile", str(error_log), "-p", str(pid_file), "-k", "asyncio"]
    server = Wherry(args, tmp_path, env={"PYTHONPATH": str(ROOT)})
    servers.append(server)
    server.wait_serving()
    assert pid_file.read_text().strip() == str(server.pid)
    httpx.get(server.url + "/seen")
    assert server.stop() == 0
    assert '"GET /seen HTTP/1.1" 200' in server.log()  # the access log, on standard output
    assert "Application startup" in error_log.read_text()
    assert "Started server process" not in server.log()


def test_hypercorn_toml_keys(servers: list[Wherry], tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    config = tmp_path / "hypercorn.toml"
    config.write_text(f'accesslog = "{access}"\nloglevel = "INFO"\nworker_class = "asyncio"\n')
    server = Wherry(["tests.apps:hello", "-c", str(config)], tmp_path)
    servers.append(server)
    server.wait_serving()
    httpx.get(server.url + "/logged")
    assert server.stop() == 0
    assert '"GET /logged HTTP/1.1" 200' in access.read_text()


# ---------------------------------------------------------------- one-line errors that say what to do


def wherry_error(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run ``wherry ARGS`` expecting it to fail at once; its output, which holds no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "wherry", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, **(env or {})),
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return output


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Error" in line or "ERROR" in line]


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('port = 8000\nhost = "unterminated\n')
    [line] = error_lines(wherry_error("tests.apps:hello", "--config", str(path)))
    assert str(path) in line and "line 2" in line


def test_a_toml_value_of_the_wrong_type_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "typed.toml"
    path.write_text('workers = "many"\n')
    [line] = error_lines(wherry_error("tests.apps:hello", "--config", str(path)))
    assert f"{path}: key 'workers'" in line


def test_factory_on_a_plain_app() -> None:
    [line] = error_lines(wherry_error("tests.apps:hello", "--factory", "--port", "0"))
    assert "drop --factory" in line


def test_loop_trio_without_trio_names_the_extra(tmp_path: Path) -> None:
    env = blocked_module(tmp_path, "trio")
    [line] = error_lines(wherry_error("tests.apps:hello", "--loop", "trio", "--port", "0", env=env))
    assert "wherry[trio]" in line


def test_run_with_an_app_object_and_workers() -> None:
    code = "import wherry\nfrom tests.apps import hello\nwherry.run(hello, workers=2, port=0)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "import string" in line and "wherry.run('module:app'" in line


def test_tls_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("this is not PEM\n")
    [line] = error_lines(wherry_error("tests.apps:hello", "--ssl-certfile", str(bad), "--port", "0"))
    assert str(bad) in line
    missing = tmp_path / "missing-key.pem"
    args = ["--ssl-certfile", str(bad), "--ssl-keyfile", str(missing)]
    [line] = error_lines(wherry_error("tests.apps:hello", *args, "--port", "0"))
    assert f"--ssl-keyfile {missing}: cannot read it" in line


def test_log_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "logging.json"
    path.write_text("{not json")
    [line] = error_lines(wherry_error("tests.apps:hello", "--log-config", str(path), "--port", "0"))
    assert f"--log-config {path}" in line


FAILING_LIFESPAN = """
import contextlib
from starlette.applications import Starlette

@contextlib.asynccontextmanager
async def lifespan(app):
    raise ConnectionError("the database is down")
    yield

app = Starlette(lifespan=lifespan)
"""


def test_a_failed_startup_prints_its_traceback_on_several_lines(tmp_path: Path) -> None:
    """The application's traceback is readable (its own line breaks), not one escaped line."""
    (tmp_path / "db_app.py").write_text(FAILING_LIFESPAN)
    result = subprocess.run(
        [sys.executable, "-m", "wherry", "db_app:app", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 3
    assert "\\x0a" not in result.stderr
    assert "\nConnectionError: the database is down" in result.stderr
    assert "Application startup failed. Exiting." in result.stderr


def test_request_text_stays_escaped_while_app_text_keeps_its_lines() -> None:
    from wherry.logs import APP_TEXT, SafeFormatter

    formatter = SafeFormatter("%(message)s")
    peer = logging.LogRecord("wherry.error", logging.INFO, "", 0, "path %s", ("/a\nb\x1b[31m",), None)
    app = logging.LogRecord("wherry.error", logging.ERROR, "", 0, "failed: %s", ("one\ntwo\x1b",), None)
    app.__dict__.update(APP_TEXT)
    assert formatter.format(peer) == "path /a\\x0ab\\x1b[31m"
    assert formatter.format(app) == "failed: one\ntwo\\x1b"


def test_click_rejects_what_uvicorn_rejects(parse: Any) -> None:
    """A value out of uvicorn's choices is still an error that lists the choices."""
    with pytest.raises(click.BadParameter, match="h11"):
        parse(["--http", "h3", "tests.apps:hello"])


# ---------------------------------------------------------------- --log-config as uvicorn reads it

UVICORN_STYLE_YAML = """
version: 1
disable_existing_loggers: false
formatters:
  plain:
    format: "%(levelname)s %(message)s"
handlers:
  errors:
    class: logging.FileHandler
    filename: {errors}
    formatter: plain
  access:
    class: logging.FileHandler
    filename: {access}
    formatter: plain
loggers:
  uvicorn:
    handlers: [errors]
    level: INFO
  uvicorn.access:
    handlers: [access]
    level: INFO
    propagate: false
"""


def test_a_log_config_written_for_uvicorn_logs_wherrys_lines(servers: list[Wherry], tmp_path: Path) -> None:
    """A YAML dictConfig that configures uvicorn's loggers gets Wherry's lines through the same
    handlers."""
    errors, access = tmp_path / "errors.log", tmp_path / "access.log"
    path = tmp_path / "logging.yaml"
    path.write_text(UVICORN_STYLE_YAML.format(errors=errors, access=access))
    server = Wherry(["tests.apps:hello", "--log-config", str(path)], tmp_path)
    servers.append(server)
    server.wait_serving()
    httpx.get(server.url + "/through-yaml")
    assert server.stop() == 0
    assert "INFO Application startup complete." in errors.read_text()
    assert '"GET /through-yaml HTTP/1.1" 200' in access.read_text()


@pytest.mark.parametrize("form", ["ini", "dict"])
def test_log_config_as_ini_file_or_dict_in_run(form: str, tmp_path: Path) -> None:
    """``--log-config file.ini`` (fileConfig) and ``wherry.run(app, log_config={...})``."""
    errors = tmp_path / "errors.log"
    if form == "ini":
        ini = tmp_path / "logging.ini"
        ini.write_text(
            "[loggers]\nkeys=root,wherry\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n"
            "[logger_root]\nhandlers=\n[logger_wherry]\nqualname=wherry.error\nhandlers=file\n"
            "level=INFO\npropagate=0\n"
            f"[handler_file]\nclass=FileHandler\nformatter=plain\nargs=({str(errors)!r},)\n"
            "[formatter_plain]\nformat=%(levelname)s %(message)s\n"
        )
        setting = repr(str(ini))
    else:
        setting = repr(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"file": {"class": "logging.FileHandler", "filename": str(errors)}},
                "loggers": {"uvicorn.error": {"handlers": ["file"], "level": "INFO"}},
            }
        )
    port = free_port()
    code = f"import wherry\nwherry.run('tests.apps:hello', port={port}, log_config={setting})\n"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        wait_until(lambda: proc.poll() is not None or answers(port), 20, "the server")
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    assert "Application startup complete." in errors.read_text()


def test_python_values_uvicorn_config_takes() -> None:
    """What ``uvicorn.Config`` takes from Python: a log level number, (name, value) header pairs,
    a list of trusted addresses, an ssl module constant, None for "not set"."""
    import ssl

    config = wherry.Config(
        "tests.apps:hello",
        log_level=logging.DEBUG,
        headers=[("x-frame-options", "DENY")],
        forwarded_allow_ips=["10.0.0.1", "127.0.0.1"],
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        timeout_graceful_shutdown=None,
        limit_concurrency=None,
    )
    assert config.log_level == "debug"
    assert config.header_pairs() == [(b"x-frame-options", b"DENY")]
    assert config.forwarded_allow_ips == "10.0.0.1,127.0.0.1"
    assert config.ssl_version == 17
    assert config.ssl_cert_reqs == "2"
    assert config.timeout_graceful_shutdown == OPTIONS_BY_NAME["timeout_graceful_shutdown"].default
    assert config.limit_concurrency is None


UVICORN_IDIOM = """
import asyncio
import wherry
from tests.apps import hello

async def main():
    server = wherry.Server(wherry.Config(hello, port=0))
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    server.should_exit = True
    await task

asyncio.run(main())
"""


def test_the_idiom_logs_uvicorns_lines_without_logging_set_up() -> None:
    """``asyncio.run(server.serve())`` in a script that set no logging up logs the familiar lines,
    as uvicorn's Config does."""
    result = subprocess.run(
        [sys.executable, "-c", UVICORN_IDIOM], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    for line in ("Started server process", "Application startup complete.", "Finished server process"):
        assert line in result.stderr


def test_every_uvicorn_option_reads_its_uvicorn_variable() -> None:
    """Each option of the installed uvicorn is a Wherry option of the same name that reads
    UVICORN_<NAME> after WHERRY_<NAME>."""
    command = importlib.import_module("uvicorn.main").main
    names = {p.name for p in command.params if p.name not in ("version", "help")}
    for name in names:
        assert name in OPTIONS_BY_NAME, name
        assert OPTIONS_BY_NAME[name].all_envs[:2] == (f"WHERRY_{name.upper()}", f"UVICORN_{name.upper()}")

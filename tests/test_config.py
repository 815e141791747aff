"""Every option is declared once (ARCHITECTURE.md property 6): the CLI, the environment and the TOML
file all derive from ``wherry.config.OPTIONS``, with uvicorn's flag names where the two share an
option."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

import wherry.cli
from wherry.config import OPTIONS, OPTIONS_BY_NAME, Config, ConfigError, Option, file_mode, read_toml

# Flags uvicorn has for options Wherry shares with it, and the option each one sets.
UVICORN_FLAGS = {
    "--host": "host",
    "--port": "port",
    "--uds": "uds",
    "--fd": "fd",
    "--backlog": "backlog",
    "--workers": "workers",
    "--loop": "loop",
    "--http": "http",
    "--lifespan": "lifespan",
    "--interface": "interface",
    "--factory": "factory",
    "--app-dir": "app_dir",
    "--env-file": "env_file",
    "--root-path": "root_path",
    "--proxy-headers": "proxy_headers",
    "--no-proxy-headers": "proxy_headers",
    "--forwarded-allow-ips": "forwarded_allow_ips",
    "--server-header": "server_header",
    "--no-server-header": "server_header",
    "--date-header": "date_header",
    "--no-date-header": "date_header",
    "--header": "headers",
    "--limit-concurrency": "limit_concurrency",
    "--timeout-keep-alive": "timeout_keep_alive",
    "--timeout-graceful-shutdown": "timeout_graceful_shutdown",
    "--log-level": "log_level",
    "--access-log": "access_log",
    "--no-access-log": "access_log",
    "--ws": "ws",
    "--ws-max-size": "ws_max_size",
    "--ws-max-queue": "ws_max_queue",
    "--ws-ping-interval": "ws_ping_interval",
    "--ws-ping-timeout": "ws_ping_timeout",
    "--ws-per-message-deflate": "ws_per_message_deflate",
    "--no-ws-per-message-deflate": "ws_per_message_deflate",
    "--timeout-worker-healthcheck": "timeout_worker_healthcheck",
    "--limit-max-requests": "limit_max_requests",
    "--limit-max-requests-jitter": "limit_max_requests_jitter",
    "--reload": "reload",
    "--reload-dir": "reload_dirs",
    "--reload-include": "reload_includes",
    "--reload-exclude": "reload_excludes",
    "--reload-delay": "reload_delay",
}

# Aliases from gunicorn and hypercorn.
ALIASES = {
    "-b": "bind",
    "-w": "workers",
    "--keep-alive": "timeout_keep_alive",
    "--graceful-timeout": "timeout_graceful_shutdown",
    "--websocket-ping-interval": "ws_ping_interval",
    "--max-requests": "limit_max_requests",
    "--max-requests-jitter": "limit_max_requests_jitter",
    "--access-logformat": "access_log_format",
    "--pid": "pid_file",
    "-u": "user",
    "-g": "group",
    "-k": "loop",
    "--worker-class": "loop",
    "--timeout": "timeout_worker_healthcheck",
    "-t": "timeout_worker_healthcheck",
    "-p": "pid_file",
    "--log-file": "error_logfile",
    "--access-logfile": "access_logfile",
    "--error-logfile": "error_logfile",
}

# Parameters the command has that are not options of a server (click's own).
NOT_OPTIONS = {"version", "help"}


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


@pytest.fixture(autouse=True)
def no_wherry_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' own environment must not leak into the options they check."""
    import os

    for name in list(os.environ):
        if name.startswith("WHERRY_") or name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
            monkeypatch.delenv(name)


def sample(option: Option, toml_file: Path) -> Any:
    """A valid value for ``option`` that is not its default."""
    if option.name == "app":
        return "tests.apps:hello"
    if option.name == "config":
        return str(toml_file)
    if option.name == "fallback":
        return "tests.apps:echo"
    if option.name == "uds_permissions":
        return "660"
    if option.name == "metrics_bind":
        return "127.0.0.1:9100"
    if option.name == "access_log_format":
        return "%(h)s %(r)s %(s)s %(D)s"
    if option.name == "chdir":
        return str(toml_file.parent)  # kept as an absolute path
    if option.name == "ssl_version":
        return 5  # ssl.PROTOCOL_TLSv1_2
    kind = option.kind
    if kind == "bool":
        return not option.default
    if kind == "choice":
        return [c for c in option.choices if c != option.default][-1]
    if kind == "int":
        return (option.default or 0) + 7
    if kind == "float":
        return (option.default or 0.0) + 1.5
    if kind == "path":
        return "some/dir/file"
    if kind == "list":
        if option.name == "bind":
            return ["127.0.0.1:8001", "unix:/tmp/wherry-sample.sock"]
        if option.name == "mount":
            return ["/legacy=tests.apps:echo", "/v2=tests.apps:hello"]
        if option.name == "route":
            return ["GET,POST /orders=tests.apps:echo", "/any=tests.apps:hello"]
        if option.name == "fallback_on":
            return [404, 405]
        if option.name == "forwarded_trust":
            return ["host", "prefix"]
        return ["x-one:1", "x-two: 2"]
    return "sample-text"


def cli_args(option: Option, value: Any) -> list[str]:
    flag = option.primary_flag
    if option.name == "app":
        return [value]
    if option.kind == "bool":
        return [flag] if value else ["--no-" + flag[2:]]
    if option.kind == "list":
        return [part for item in value for part in (flag, str(item))]
    return [flag, str(value)]


def env_text(option: Option, value: Any) -> str:
    if option.kind == "bool":
        return "true" if value else "false"
    if option.kind == "list":
        return ("\n" if option.name in ("headers", "route") else ",").join(map(str, value))
    return str(value)


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for plain text
    return repr(value)


@pytest.fixture
def command() -> click.Command:
    return wherry.cli._build()


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, command: click.Command) -> Iterator[Any]:
    """``run_cli(args)`` parses a command line into the Config the server would run with."""
    captured: list[Config] = []
    monkeypatch.setattr(wherry.cli, "run", lambda config: captured.append(config))

    def parse(args: list[str]) -> Config:
        command.main(args=args, prog_name="wherry", standalone_mode=False)
        return captured.pop()

    yield parse


def params_by_flag(command: click.Command) -> dict[str, click.Parameter]:
    found: dict[str, click.Parameter] = {}
    for param in command.params:
        for flag in [*param.opts, *param.secondary_opts]:
            found[flag] = param
    for negation, flag in getattr(command, "negations", {}).items():
        found[negation] = found[flag]  # "--no-NAME", read as "--NAME false"
    return found


# ---------------------------------------------------------------- one declaration, three sources


def test_every_option_has_a_command_line_parameter(command: click.Command) -> None:
    """Each Option is a parameter of the generated command, reachable by its primary flag."""
    by_name = {p.name: p for p in command.params}
    for option in OPTIONS:
        param = by_name.get(option.name)
        assert param is not None, f"{option.name} has no command-line parameter"
        if option.name != "app":
            assert option.primary_flag in param.opts, option.name


def test_every_command_line_parameter_is_an_option(command: click.Command) -> None:
    """No flag is written by hand: every parameter of the command maps to an Option."""
    names = {p.name for p in command.params} - NOT_OPTIONS
    assert names == set(OPTIONS_BY_NAME)


def test_every_option_has_an_environment_variable_and_a_toml_key() -> None:
    """Each Option's environment variable is WHERRY_<NAME>; its TOML key is its name."""
    for option in OPTIONS:
        assert option.env == "WHERRY_" + option.name.upper()
        assert option.all_envs[0] == option.env


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_command_line_sets_each_option(option: Option, run_cli: Any, toml_file: Path) -> None:
    """The option's flag, on the command line, gives the Config that value."""
    value = sample(option, toml_file)
    args = cli_args(option, value)
    if option.name != "app":
        args.append("tests.apps:hello")
    config = run_cli(args)
    assert getattr(config, option.name) == value
    assert config.source[option.name] == "command line"


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_environment_sets_each_option(option: Option, toml_file: Path) -> None:
    """WHERRY_<NAME>=text gives the Config the same value as the flag does."""
    value = sample(option, toml_file)
    config = Config.from_sources({}, environ={option.env: env_text(option, value)})
    assert getattr(config, option.name) == value
    assert config.source[option.name] == "environment"


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_toml_key_round_trips(option: Option, tmp_path: Path, toml_file: Path) -> None:
    """``name = value`` in the --config file gives the Config that value, with dashes or
    underscores in the key, at the top level or under a [wherry] table."""
    value = sample(option, toml_file)
    for key, text in [
        (option.name, f"{option.name} = {toml_literal(value)}\n"),
        (
            option.name.replace("_", "-"),
            f"[wherry]\n{option.name.replace('_', '-')} = {toml_literal(value)}\n",
        ),
    ]:
        path = tmp_path / f"{key}.toml"
        path.write_text(text)
        values = read_toml(str(path))
        assert values == {option.name: value}
        assert getattr(Config(**values), option.name) == value


def test_help_lists_every_option(command: click.Command, capsys: pytest.CaptureFixture[str]) -> None:
    """--help documents every option by its primary flag."""
    with pytest.raises(SystemExit) as exit_info:
        command.main(args=["--help"], prog_name="wherry")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in OPTIONS:
        if option.name != "app":
            assert option.primary_flag in text, option.name


# ---------------------------------------------------------------- flag names


@pytest.mark.parametrize(("flag", "name"), sorted(UVICORN_FLAGS.items()))
def test_uvicorn_flag_names_are_accepted(command: click.Command, flag: str, name: str) -> None:
    """Each flag uvicorn has for a shared option sets the same option here (drop-in migration)."""
    param = params_by_flag(command).get(flag)
    assert param is not None, f"{flag} is not accepted"
    assert param.name == name


@pytest.mark.parametrize(("flag", "name"), sorted(ALIASES.items()))
def test_gunicorn_and_hypercorn_aliases(flag: str, name: str, run_cli: Any, toml_file: Path) -> None:
    """-b, -w, --keep-alive and --graceful-timeout set bind, workers and the two timeouts."""
    option = OPTIONS_BY_NAME[name]
    value = sample(option, toml_file)
    items = value if option.kind == "list" else [value]
    args = [part for item in items for part in (flag, str(item))]
    config = run_cli([*args, "tests.apps:hello"])
    assert getattr(config, name) == value


def test_repeated_list_flags_accumulate(run_cli: Any) -> None:
    """--header and --bind can be given several times; the values keep their order."""
    config = run_cli(["--header", "a:1", "--header", "b:2", "-b", "127.0.0.1:1", "-b", "unix:/s", "x:app"])
    assert config.headers == ["a:1", "b:2"]
    assert config.bind == ["127.0.0.1:1", "unix:/s"]
    assert config.header_pairs() == [(b"a", b"1"), (b"b", b"2")]


# ---------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("cli", "env", "toml", "expected", "source"),
    [
        (None, None, None, "", None),
        (None, None, "/toml", "/toml", "config file"),
        (None, "/env", "/toml", "/env", "environment"),
        ("/cli", "/env", "/toml", "/cli", "command line"),
        ("/cli", None, "/toml", "/cli", "command line"),
        ("/cli", "/env", None, "/cli", "command line"),
    ],
)
def test_precedence_command_line_environment_file_default(
    tmp_path: Path,
    cli: str | None,
    env: str | None,
    toml: str | None,
    expected: str,
    source: str | None,
) -> None:
    """The command line beats the environment, which beats the --config file, which beats the
    default (config.py's module docstring)."""
    path = tmp_path / "wherry.toml"
    path.write_text(f'root-path = "{toml}"\n' if toml else "")
    given: dict[str, Any] = {"config": str(path)}
    if cli is not None:
        given["root_path"] = cli
    environ = {"WHERRY_ROOT_PATH": env} if env is not None else {}
    config = Config.from_sources(given, environ=environ)
    assert config.root_path == expected
    assert config.source.get("root_path") == source


def test_config_file_named_in_the_environment() -> None:
    """WHERRY_CONFIG names the TOML file when --config is not given."""
    with pytest.raises(ConfigError, match="cannot read the config file"):
        Config.from_sources({}, environ={"WHERRY_CONFIG": "/no/such/file.toml"})


@pytest.mark.parametrize(
    ("environ", "workers"),
    [
        ({"WEB_CONCURRENCY": "3"}, 3),
        ({"WEB_CONCURRENCY": "3", "WHERRY_WORKERS": "5"}, 5),
    ],
)
def test_extra_environment_names_rank_after_wherrys_own(environ: dict[str, str], workers: int) -> None:
    """An option's extra environment names (WEB_CONCURRENCY) are read; WHERRY_<NAME> wins."""
    assert Config.from_sources({}, environ=environ).workers == workers


def test_command_line_defaults_do_not_mask_the_environment(run_cli: Any, monkeypatch: Any) -> None:
    """Flags not given on the command line leave the environment's values in place."""
    monkeypatch.setenv("WHERRY_PORT", "9100")
    monkeypatch.setenv("WHERRY_ACCESS_LOG", "false")
    monkeypatch.setenv("WHERRY_HEADERS", "x-a:1\nx-b:2")
    config = run_cli(["tests.apps:hello"])
    assert (config.port, config.access_log, config.headers) == (9100, False, ["x-a:1", "x-b:2"])


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "options",
    [
        {"port": "eighty"},
        {"port": 70000},
        {"port": -1},
        {"fd": -3},
        {"backlog": 0},
        {"workers": 0},
        {"limit_concurrency": 0},
        {"timeout_keep_alive": -1},
        {"lifespan": "maybe"},
        {"loop": "trio-ish"},
        {"log_level": "loud"},
        {"access_log": "perhaps"},
        {"headers": ["no-colon"]},
        {"interface": "cgi"},
        {"wsgi_threads": 0},
        {"mount": ["api=x:app"]},
        {"mount": ["/api"]},
        {"mount": ["/api=module-only"]},
        {"mount": ["/a b=x:app"]},
        {"route": ["GET POST /x=a:b"]},
        {"route": ["G3T /x=a:b"]},
        {"route": ["GET x=a:b"]},
        {"fallback": "no-colon"},
        {"fallback_on": ["200"]},
        {"fallback_on": ["4o4"]},
        {"fallback_body_limit": -1},
        {"headers": [":empty-name"]},
        {"headers": ["x-a: 1\r\nx-b: 2"]},
        {"headers": ["x-a: \x00"]},
        {"uds_permissions": "rw-rw----"},
        {"uds_permissions": "99"},
        {"limit_worker_rss": "lots"},
        {"limit_worker_rss": 0},
        {"limit_max_requests": 0},
        {"limit_max_requests_jitter": -1},
        {"timeout_worker_healthcheck": -1},
        {"metrics_bind": "unix:/tmp/m.sock"},
        {"access_log_format": "%(h"},
        {"log_format": "xml"},
        {"proxy_headers_style": "both"},
        {"no_such_option": 1},
    ],
)
def test_invalid_values_are_rejected(options: dict[str, Any]) -> None:
    """A value an option cannot take is a ConfigError naming the option, before anything starts."""
    with pytest.raises(ConfigError) as error:
        Config(**options)
    (name,) = options
    option = OPTIONS_BY_NAME.get(name)
    assert (option.primary_flag if option else name) in str(error.value)


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    """A key in the --config file that is no option is an error, not silently ignored."""
    path = tmp_path / "typo.toml"
    path.write_text("prot = 8000\n")
    with pytest.raises(ConfigError, match="prot"):
        read_toml(str(path))


def test_defaults() -> None:
    """Config() holds each option's declared default, lists copied per instance."""
    config = Config()
    for option in OPTIONS:
        assert getattr(config, option.name) == option.default
    config.headers.append("x:1")
    assert Config().headers == []


@pytest.mark.parametrize(
    ("text", "mib"), [("512", 512), ("512M", 512), ("2G", 2048), ("2GiB", 2048), ("4096K", 4), (64, 64)]
)
def test_worker_rss_limit_takes_sizes(text: object, mib: int) -> None:
    """--limit-worker-rss is in MiB, or with a K/M/G suffix."""
    assert Config(limit_worker_rss=text).limit_worker_rss == mib


@pytest.mark.parametrize(("text", "mode"), [("660", 0o660), ("0o600", 0o600), ("0777", 0o777)])
def test_uds_permissions_are_octal(text: str, mode: int) -> None:
    """--uds-permissions takes an octal mode, as chmod does."""
    assert file_mode(Config(uds_permissions=text).uds_permissions or "") == mode


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:8001", ("tcp", ("127.0.0.1", 8001))),
        ("0.0.0.0", ("tcp", ("0.0.0.0", 8000))),
        ("[::1]:9000", ("tcp", ("::1", 9000))),
        ("::1", ("tcp", ("::1", 8000))),
        (":8080", ("tcp", ("0.0.0.0", 8080))),
        ("unix:/run/app.sock", ("unix", "/run/app.sock")),
        ("fd://3", ("fd", 3)),
    ],
)
def test_bind_addresses_parse(address: str, parsed: object) -> None:
    """-b takes HOST:PORT, [V6]:PORT, a bare host, unix:PATH and fd://N (hypercorn/gunicorn forms)."""
    from wherry.config import parse_bind

    assert parse_bind(address) == parsed


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:http", "unix:", "fd://-1", "[::1]x"])
def test_bad_bind_addresses_are_config_errors(address: str) -> None:
    """A malformed -b value is a clear configuration error, never a traceback."""
    with pytest.raises(ConfigError):
        Config(bind=[address])


def test_composition_in_the_config_file_as_tables(tmp_path: Path) -> None:
    """--mount and --route can be TOML tables (PATH or 'METHODS PATH' -> app), and --fallback-on a
    list of integers; they mean what the repeated flags mean."""
    path = tmp_path / "compose.toml"
    path.write_text(
        'app = "new:app"\n'
        'fallback = "legacy:app"\n'
        "fallback_on = [404, 405]\n"
        "[mount]\n"
        '"/admin" = "legacy:app"\n'
        "[route]\n"
        '"POST /orders" = "legacy:app"\n'
    )
    config = Config(**read_toml(str(path)))
    assert config.mount == ["/admin=legacy:app"]
    assert config.route == ["POST /orders=legacy:app"]
    assert config.fallback == "legacy:app" and config.fallback_on == [404, 405]


def test_fallback_on_takes_a_comma_separated_list(run_cli: Any) -> None:
    """--fallback-on 404,405 (one flag) and --fallback-on 404 --fallback-on 405 are the same."""
    assert run_cli(["--fallback-on", "404,405", "x:app"]).fallback_on == [404, 405]
    assert run_cli(["--fallback-on", "404", "--fallback-on", "405", "x:app"]).fallback_on == [404, 405]


def test_routes_in_the_environment_are_one_per_line() -> None:
    """WHERRY_ROUTE holds one route a line, since a route's methods are comma-separated."""
    config = Config.from_sources({}, environ={"WHERRY_ROUTE": "GET,HEAD /a=x:a\nPOST /b=x:b\n"})
    assert config.route == ["GET,HEAD /a=x:a", "POST /b=x:b"]


def test_proxy_protocol_with_tls_is_refused_at_configuration() -> None:
    """The PROXY header comes before the TLS handshake on the wire; until the two are chained, asking
    for both is a configuration error, not a silently ignored option."""
    with pytest.raises(ConfigError, match="proxy-protocol"):
        Config(proxy_protocol=True, ssl_certfile="cert.pem", ssl_keyfile="key.pem")


@pytest.mark.parametrize("count", ["²", "1²", "", "-1"])
def test_systemd_variables_that_are_not_ascii_numbers_are_ignored(count: str) -> None:
    """LISTEN_FDS must be ASCII digits (sd_listen_fds(3)); "²" is a digit to str.isdigit but not to
    int(), and must not stop the server from starting."""
    from wherry.sockets import systemd_sockets

    environ = {"LISTEN_FDS": count, "LISTEN_PID": str(os.getpid())}
    assert systemd_sockets(environ) == []

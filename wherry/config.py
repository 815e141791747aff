"""Every option Wherry has, declared once.

Each ``Option`` below is the single source for its type, default, help text, command-line flags
(uvicorn's name first, then hypercorn/gunicorn aliases), environment variables (``WHERRY_<NAME>``
plus any extra) and TOML key (the option name). ``cli.py`` generates the command line from this
table; ``Config`` takes keyword arguments named after it; a test checks that each option has a flag,
an environment variable and a key.

Precedence: command line, then environment, then the ``--config`` TOML file, then the default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def _port(value: Any) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"must be a TCP port between 0 and 65535, got {number}")
    return number


def _non_negative_int(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def _non_negative_float(value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def _header(value: Any) -> str:
    text = str(value)
    name, sep, val = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"expected 'name:value', got {text!r}")
    for part in (name, val):
        if any(c in part for c in "\r\n\x00"):
            raise ValueError(f"control characters in header {text!r}")
    return text


def parse_bind(address: str) -> tuple[str, str | int | tuple[str, int]]:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST``, ``unix:PATH`` or ``fd://N`` -> (kind, target).

    Raises ValueError for anything else (a port outside 0-65535, a negative fd, an empty path).
    """
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError(f"no path in {address!r}")
        return "unix", path
    if address.startswith("fd://"):
        text = address[5:]
        if not text.isdigit():
            raise ValueError(f"not a file descriptor number: {address!r}")
        return "fd", int(text)
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"malformed address {address!r}")
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, ""  # a bare host name, IPv4 or IPv6 address
    if not port_text:
        port = 8000
    elif port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"invalid port in {address!r}")
    return "tcp", (host or "0.0.0.0", port)


def _bind(value: Any) -> str:
    text = str(value).strip()
    parse_bind(text)
    return text


@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # "str", "int", "float", "bool", "list", "choice", "path"
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    convert: Callable[[Any], Any] | None = None
    group: str = "Server"
    metavar: str | None = None

    @property
    def env(self) -> str:
        return "WHERRY_" + self.name.upper()

    @property
    def all_envs(self) -> tuple[str, ...]:
        return (self.env, *self.envs)

    @property
    def primary_flag(self) -> str:
        return self.flags[0] if self.flags else "--" + self.name.replace("_", "-")

    def parse(self, value: Any) -> Any:
        """Turn a value from any source (flag text, env text, TOML value) into the option's type."""
        if value is None:
            return None
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"{self.name}: expected a boolean, got {value!r}")
        if kind == "list":
            items: Iterable[Any]
            if isinstance(value, str):
                items = (
                    [v for v in value.split(",") if v.strip()]
                    if self.name != "headers"
                    else [v for v in value.splitlines() if v.strip()]
                )
            else:
                items = value
            converted = [str(v).strip() if self.name != "headers" else str(v) for v in items]
            if self.convert is not None:
                converted = [self.convert(v) for v in converted]
            return converted
        if kind == "choice":
            text = str(value)
            if text not in self.choices:
                expected = ", ".join(self.choices)
                raise ValueError(f"{self.name}: expected one of {expected}, got {text!r}")
            return text
        if self.convert is not None:
            return self.convert(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)


OPTIONS: tuple[Option, ...] = (
    # Application
    Option("app", "str", None, "The application: 'module:attribute'.", group="Application"),
    Option(
        "factory",
        "bool",
        False,
        "Treat APP as a factory: call it with no arguments to get the app.",
        group="Application",
    ),
    Option(
        "app_dir", "path", ".", "Look for APP in this directory (put first on sys.path).", group="Application"
    ),
    Option(
        "interface",
        "choice",
        "auto",
        "Application interface; ASGI 2 apps are adapted.",
        choices=("auto", "asgi3", "asgi2"),
        group="Application",
    ),
    Option(
        "env_file",
        "path",
        None,
        "Load environment variables from this file before importing APP.",
        group="Application",
    ),
    Option(
        "lifespan",
        "choice",
        "auto",
        "Run the ASGI lifespan protocol: auto, on or off.",
        choices=("auto", "on", "off"),
        group="Application",
    ),
    Option(
        "root_path",
        "str",
        "",
        "The ASGI root_path: the prefix the app is mounted under.",
        group="Application",
    ),
    # Binding
    Option("host", "str", "127.0.0.1", "Bind to this address (IPv4 or IPv6).", group="Binding"),
    Option(
        "port", "int", 8000, "Bind to this TCP port (0 picks a free one).", convert=_port, group="Binding"
    ),
    Option("uds", "path", None, "Bind to this Unix domain socket.", group="Binding"),
    Option(
        "fd",
        "int",
        None,
        "Serve on this already-open listening file descriptor.",
        convert=_non_negative_int,
        group="Binding",
    ),
    Option(
        "bind",
        "list",
        [],
        "Bind to HOST:PORT, unix:PATH or fd://N (repeatable); replaces --host/--port/--uds/--fd.",
        flags=("--bind", "-b"),
        convert=_bind,
        group="Binding",
        metavar="ADDRESS",
    ),
    Option(
        "backlog",
        "int",
        2048,
        "Maximum number of connections waiting to be accepted.",
        convert=_positive_int,
        group="Binding",
    ),
    Option(
        "workers",
        "int",
        1,
        "Number of worker processes.",
        flags=("--workers", "-w"),
        envs=("WEB_CONCURRENCY",),
        convert=_positive_int,
        group="Processes",
    ),
    # Implementation
    Option(
        "loop",
        "choice",
        "auto",
        "Event loop: auto (uvloop when installed), asyncio or uvloop.",
        choices=("auto", "asyncio", "uvloop"),
        group="Implementation",
    ),
    Option(
        "http",
        "choice",
        "auto",
        "HTTP/1.1 implementation (httptools, llhttp in strict mode).",
        choices=("auto", "httptools"),
        group="Implementation",
    ),
    # HTTP
    Option(
        "proxy_headers",
        "bool",
        True,
        "Trust X-Forwarded-For/-Proto from --forwarded-allow-ips.",
        group="HTTP",
    ),
    Option(
        "forwarded_allow_ips",
        "str",
        "127.0.0.1",
        "Comma-separated addresses, CIDR networks or '*' trusted to send proxy headers.",
        envs=("FORWARDED_ALLOW_IPS",),
        group="HTTP",
    ),
    Option("server_header", "bool", True, "Add a 'server: wherry' header.", group="HTTP"),
    Option("date_header", "bool", True, "Add a 'date' header.", group="HTTP"),
    Option(
        "headers",
        "list",
        [],
        "Add a default response header 'name:value' (repeatable).",
        flags=("--header",),
        convert=_header,
        group="HTTP",
        metavar="NAME:VALUE",
    ),
    # WebSocket
    Option(
        "ws",
        "choice",
        "auto",
        "WebSocket implementation: auto or websockets (the websockets library's sans-I/O framing), "
        "or none to answer upgrade requests as plain HTTP requests.",
        choices=("auto", "none", "websockets", "websockets-sansio"),
        group="WebSocket",
    ),
    Option(
        "ws_max_size",
        "int",
        16 * 1024 * 1024,
        "Largest WebSocket message in bytes, after decompression (close 1009 beyond).",
        convert=_positive_int,
        group="WebSocket",
    ),
    Option(
        "ws_max_queue",
        "int",
        32,
        "WebSocket messages held for an app that has not received them; reading pauses beyond.",
        convert=_positive_int,
        group="WebSocket",
    ),
    Option(
        "ws_ping_interval",
        "float",
        20.0,
        "Send a WebSocket ping after this many seconds without hearing from the peer (0: never).",
        flags=("--ws-ping-interval", "--websocket-ping-interval"),
        convert=_non_negative_float,
        group="WebSocket",
    ),
    Option(
        "ws_ping_timeout",
        "float",
        20.0,
        "Close a WebSocket (1011) whose peer sends nothing for this many seconds after a ping, and "
        "cut one that does not answer a Close within it (0: wait for ever; a Close then waits 10 s).",
        convert=_non_negative_float,
        group="WebSocket",
    ),
    Option(
        "ws_per_message_deflate",
        "bool",
        True,
        "Negotiate WebSocket compression (permessage-deflate) when the client offers it.",
        group="WebSocket",
    ),
    # Limits
    Option(
        "limit_concurrency",
        "int",
        None,
        "Answer 503 once this many connections or requests are in flight.",
        convert=_positive_int,
        group="Limits",
    ),
    Option(
        "limit_request_head",
        "int",
        65536,
        "Largest request head in bytes (431 beyond).",
        convert=_positive_int,
        group="Limits",
    ),
    Option(
        "limit_request_headers",
        "int",
        100,
        "Most header fields in a request (431 beyond).",
        convert=_positive_int,
        group="Limits",
    ),
    Option(
        "limit_request_body",
        "int",
        None,
        "Largest request body in bytes (413 beyond).",
        convert=_positive_int,
        group="Limits",
    ),
    # Timeouts
    Option(
        "timeout_keep_alive",
        "float",
        5.0,
        "Close idle keep-alive connections after this many seconds.",
        flags=("--timeout-keep-alive", "--keep-alive"),
        convert=_non_negative_float,
        group="Timeouts",
    ),
    Option(
        "timeout_request_head",
        "float",
        10.0,
        "Seconds to receive a whole request head from its first byte (408 beyond).",
        convert=_non_negative_float,
        group="Timeouts",
    ),
    Option(
        "timeout_request_body",
        "float",
        30.0,
        "Seconds allowed between two pieces of a request body (408 beyond).",
        convert=_non_negative_float,
        group="Timeouts",
    ),
    Option(
        "timeout_graceful_shutdown",
        "float",
        30.0,
        "On shutdown, seconds to let requests in flight finish before cutting them.",
        flags=("--timeout-graceful-shutdown", "--graceful-timeout"),
        convert=_non_negative_float,
        group="Timeouts",
    ),
    # Logging
    Option("log_level", "choice", "info", "Log level.", choices=LOG_LEVELS, group="Logging"),
    Option("access_log", "bool", True, "Write an access log line per request.", group="Logging"),
    Option(
        "config",
        "path",
        None,
        "Read options from this TOML file (keys are option names).",
        flags=("--config", "-c"),
        group="Configuration",
    ),
)

OPTIONS_BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}


class ConfigError(ValueError):
    """An option has a value it cannot take."""


class Config:
    """A complete, validated set of options. Keyword arguments are option names."""

    app: Any
    factory: bool
    app_dir: str
    interface: str
    env_file: str | None
    lifespan: str
    root_path: str
    host: str
    port: int
    uds: str | None
    fd: int | None
    bind: list[str]
    backlog: int
    workers: int
    loop: str
    http: str
    proxy_headers: bool
    forwarded_allow_ips: str
    server_header: bool
    date_header: bool
    headers: list[str]
    ws: str
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    limit_concurrency: int | None
    limit_request_head: int
    limit_request_headers: int
    limit_request_body: int | None
    timeout_keep_alive: float
    timeout_request_head: float
    timeout_request_body: float
    timeout_graceful_shutdown: float
    log_level: str
    access_log: bool
    config: str | None

    def __init__(self, **options: Any) -> None:
        for name in options:
            if name not in OPTIONS_BY_NAME:
                raise ConfigError(f"unknown option {name!r}")
        for option in OPTIONS:
            if option.name in options:
                value = options[option.name]
                if option.name == "app" and not isinstance(value, str | None):
                    self.app = value  # an application object, for wherry.run(app)
                    continue
                try:
                    value = option.parse(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{option.primary_flag}: {exc}") from None
            else:
                value = option.default
                if isinstance(value, list):
                    value = list(value)
            setattr(self, option.name, value)
        self.source: dict[str, str] = {}

    @classmethod
    def from_sources(
        cls,
        given: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Merge command-line values (only those given), environment variables and the TOML file."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        from_env: dict[str, Any] = {}
        for option in OPTIONS:
            for env in option.all_envs:
                if env in environ:
                    from_env[option.name] = environ[env]
                    break
        config_path = given.get("config") or from_env.get("config")
        if config_path:
            for name, value in read_toml(str(config_path)).items():
                values[name] = value
                source[name] = "config file"
        for name, value in from_env.items():
            values[name] = value
            source[name] = "environment"
        for name, value in given.items():
            values[name] = value
            source[name] = "command line"
        config = cls(**values)
        config.source = source
        return config

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        pairs = []
        for item in self.headers:
            name, _, value = item.partition(":")
            pairs.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
        return pairs

    def __repr__(self) -> str:
        shown = ", ".join(f"{o.name}={getattr(self, o.name)!r}" for o in OPTIONS)
        return f"Config({shown})"


def read_toml(path: str) -> dict[str, Any]:
    """Options from a TOML file: top-level keys, or a [wherry] table; dashes or underscores."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    if isinstance(data.get("wherry"), dict):
        data = data["wherry"]
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == "header":
            name = "headers"
        if name not in OPTIONS_BY_NAME:
            raise ConfigError(f"{path}: unknown option {key!r}")
        values[name] = value
    return values

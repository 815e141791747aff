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


def decimal(text: str) -> bool:
    """``text`` is a non-empty run of ASCII digits (str.isdigit also takes "²" and other digits,
    which int() then refuses)."""
    return text.isascii() and text.isdigit()


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


def _positive_float(value: Any) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be more than 0, got {number}")
    return number


def _window_size(value: Any) -> int:
    number = int(value)
    if not 1 <= number <= 2**31 - 1:
        raise ValueError(f"must be between 1 and 2147483647, got {number}")
    return number


def _frame_size(value: Any) -> int:
    number = int(value)
    if not 16384 <= number <= 16777215:
        raise ValueError(f"must be between 16384 and 16777215 (RFC 9113 §6.5.2), got {number}")
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


def _status_codes(value: Any) -> list[int]:
    """``404`` or ``404,405``: statuses, each 400-599 (an answer that is not an error never falls
    back)."""
    codes = []
    for part in str(value).split(","):
        code = int(part.strip())
        if not 400 <= code <= 599:
            raise ValueError(f"must be statuses from 400 to 599, got {code}")
        codes.append(code)
    return codes


def _app_spec(text: str) -> str:
    module, sep, attr = text.partition(":")
    if not sep or not module.strip() or not attr.strip():
        raise ValueError(f"expected 'module:attribute', got {text!r}")
    return text.strip()


def _mount_path(path: str, text: str) -> str:
    if not path.startswith("/") or any(c in path for c in "?# \t\r\n"):
        raise ValueError(f"the path must start with '/' and hold no '?', '#' or spaces, in {text!r}")
    return path


def parse_mount(text: str) -> tuple[str, str]:
    """``PATH=module:app`` -> (path, app)."""
    path, sep, app = str(text).partition("=")
    if not sep:
        raise ValueError(f"expected 'PATH=module:app', got {text!r}")
    return _mount_path(path.strip(), text), _app_spec(app)


def parse_route(text: str) -> tuple[tuple[str, ...], str, str]:
    """``[METHOD[,METHOD...] ]PATH=module:app`` -> (methods, path, app); no methods: any."""
    target, sep, app = str(text).partition("=")
    if not sep:
        raise ValueError(f"expected '[METHODS ]PATH=module:app', got {text!r}")
    words = target.split()
    if len(words) == 2:
        methods = tuple(m for m in words[0].upper().split(",") if m)
        path = words[1]
    elif len(words) == 1:
        methods, path = (), words[0]
    else:
        raise ValueError(f"expected '[METHODS ]PATH=module:app', got {text!r}")
    for method in methods:
        if not method.isascii() or not method.isalpha():
            raise ValueError(f"not an HTTP method: {method!r} in {text!r}")
    return methods, _mount_path(path, text), _app_spec(app)


def _mount(value: Any) -> str:
    parse_mount(str(value))
    return str(value).strip()


def _route(value: Any) -> str:
    parse_route(str(value))
    return str(value).strip()


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
        if not decimal(text):
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
    elif decimal(port_text) and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"invalid port in {address!r}")
    return "tcp", (host or "0.0.0.0", port)


def _bind(value: Any) -> str:
    text = str(value).strip()
    parse_bind(text)
    return text


def file_mode(text: str) -> int:
    """An octal file mode (``660``, ``0660``, ``0o660``) as a number."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        raise ValueError(f"expected an octal file mode such as 660, got {text!r}")
    return int(digits, 8)


def _octal_mode(value: Any) -> str:
    text = str(value).strip()
    file_mode(text)
    return text


def _size_mib(value: Any) -> int:
    """A size in MiB: a whole number, or with a suffix K, M or G (``512M``, ``2G``)."""
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        factors = {"K": 1 / 1024, "M": 1, "G": 1024}
        factor = factors.get(text[-1:])
        digits = text[:-1] if factor is not None else text
        if not decimal(digits):
            raise ValueError(f"expected a size in MiB (or with K, M, G), got {value!r}")
        number = int(int(digits) * (factor or 1))
    if number < 1:
        raise ValueError(f"must be at least 1 MiB, got {value!r}")
    return number


class _AnyAtom(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


def _access_format(value: Any) -> str:
    """A gunicorn-style access log format; it must format (unknown atoms print as ``-``)."""
    text = str(value)
    try:
        text % _AnyAtom()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed access log format {text!r}: {exc}") from None
    return text


def _metrics_bind(value: Any) -> str:
    text = str(value).strip()
    kind, _target = parse_bind(text)
    if kind != "tcp":
        raise ValueError(f"the metrics address must be HOST:PORT, got {text!r}")
    return text


FORWARDED_TRUST = ("host", "prefix")


def _forwarded_trust(value: Any) -> list[str]:
    """``host``, ``prefix`` or ``host,prefix``: the proxy fields trusted beyond address and scheme."""
    names = [part.strip().lower() for part in str(value).split(",") if part.strip()]
    for name in names:
        if name not in FORWARDED_TRUST:
            raise ValueError(f"expected 'host' and/or 'prefix', got {name!r}")
    return names


# ---------------------------------------------------------------- compatibility with other servers
# (uvicorn's environment variables, the choices Wherry serves another way, hypercorn's TOML keys)

# Options uvicorn also has, under the same name: each reads UVICORN_<NAME> too (uvicorn's click
# reads every option from its UVICORN_ variable).
UVICORN_NAMES = frozenset(
    (
        "app", "host", "port", "uds", "fd", "reload", "reload_dirs", "reload_includes",
        "reload_excludes", "reload_delay", "workers", "loop", "http", "http2", "ws", "ws_max_size",
        "ws_max_queue", "ws_ping_interval", "ws_ping_timeout", "ws_per_message_deflate", "lifespan",
        "interface", "env_file", "log_config", "log_level", "access_log", "use_colors",
        "proxy_headers", "server_header", "date_header", "forwarded_allow_ips", "root_path",
        "limit_concurrency", "backlog", "limit_max_requests", "limit_max_requests_jitter",
        "timeout_keep_alive", "timeout_graceful_shutdown", "timeout_worker_healthcheck",
        "ssl_keyfile", "ssl_certfile", "ssl_keyfile_password", "ssl_version", "ssl_cert_reqs",
        "ssl_ca_certs", "ssl_ciphers", "headers", "app_dir", "h11_max_incomplete_event_size",
        "reset_contextvars", "factory",
    )
)  # fmt: skip

_GUNICORN_WORKER = "the event loop Wherry picks (uvloop when installed): Wherry is the worker"
LOOP_SUBSTITUTES = (
    ("zuvloop", "auto", "Wherry does not run zuvloop; it runs uvloop when installed, else asyncio"),
    ("none", "asyncio", "Wherry runs asyncio's own loop"),
    ("uvicorn.workers.UvicornWorker", "auto", _GUNICORN_WORKER),
    ("uvicorn_worker.UvicornWorker", "auto", _GUNICORN_WORKER),
    ("uvicorn.workers.UvicornH11Worker", "auto", _GUNICORN_WORKER),
)
HTTP_SUBSTITUTES = (
    ("h11", "httptools", "Wherry parses HTTP/1.1 with llhttp (httptools) in strict mode, not h11"),
    ("zttp", "httptools", "Wherry parses HTTP/1.1 with llhttp (httptools) and serves HTTP/2 itself"),
)
WS_SUBSTITUTES = (
    ("wsproto", "websockets-sansio", "Wherry frames WebSockets with the websockets library's sans-I/O core"),
)

# hypercorn's TOML keys that name a Wherry option differently.
TOML_ALIASES = {
    "accesslog": "access_logfile",
    "errorlog": "error_logfile",
    "loglevel": "log_level",
    "worker_class": "loop",
    "keep_alive_timeout": "timeout_keep_alive",
    "graceful_timeout": "timeout_graceful_shutdown",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "keyfile_password": "ssl_keyfile_password",
    "ca_certs": "ssl_ca_certs",
    "ciphers": "ssl_ciphers",
    "include_server_header": "server_header",
    "include_date_header": "date_header",
    "max_requests": "limit_max_requests",
    "max_requests_jitter": "limit_max_requests_jitter",
    "pid_path": "pid_file",
    "use_reloader": "reload",
    "websocket_ping_interval": "ws_ping_interval",
    "websocket_max_message_size": "ws_max_size",
    "h11_max_incomplete_size": "h11_max_incomplete_event_size",
    "h2_max_inbound_frame_size": "h2_max_frame_size",
}

# The ssl module's protocol numbers uvicorn's --ssl-version takes (PROTOCOL_TLS_SERVER is its
# default); Wherry serves TLS 1.2 and 1.3 whatever the number says.
SSL_VERSIONS = {
    2: "PROTOCOL_TLS",
    3: "PROTOCOL_TLSv1",
    4: "PROTOCOL_TLSv1_1",
    5: "PROTOCOL_TLSv1_2",
    17: "PROTOCOL_TLS_SERVER",
}


def _ssl_version(value: Any) -> int:
    number = int(value)
    if number not in SSL_VERSIONS:
        known = ", ".join(f"{n} ({name})" for n, name in SSL_VERSIONS.items())
        raise ValueError(f"expected an ssl module server protocol number: {known}; got {number}")
    return number


def _absolute_dir(value: Any) -> str:
    return os.path.abspath(str(value))


def _log_file(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("expected a file path, or '-' for the standard stream")
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
    # Choices other servers name that Wherry serves another way: (value, what runs, why).
    substitutes: tuple[tuple[str, str, str], ...] = ()
    # A bool whose flag also takes a value, as uvicorn's BOOLEAN options do ("--flag false").
    takes_value: bool = False
    # A choice that also takes an import string ("module:attr"), as uvicorn's Config does for loop.
    import_form: bool = False

    @property
    def env(self) -> str:
        return "WHERRY_" + self.name.upper()

    @property
    def all_envs(self) -> tuple[str, ...]:
        """WHERRY_<NAME> first, then uvicorn's UVICORN_<NAME> for the options it shares, then
        the extra names (uvicorn's order: its own variable beats WEB_CONCURRENCY)."""
        uvicorn = ("UVICORN_" + self.name.upper(),) if self.name in UVICORN_NAMES else ()
        return (self.env, *uvicorn, *self.envs)

    @property
    def substitute_names(self) -> tuple[str, ...]:
        return tuple(value for value, _runs, _why in self.substitutes)

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
            if text in ("1", "true", "t", "yes", "y", "on"):
                return True
            if text in ("0", "false", "f", "no", "n", "off", ""):
                return False
            raise ValueError(f"{self.name}: expected a boolean, got {value!r}")
        if kind == "list":
            items: Iterable[Any]
            if isinstance(value, str):
                items = (
                    [v for v in value.split(",") if v.strip()]
                    if self.name not in _ONE_PER_LINE
                    else [v for v in value.splitlines() if v.strip()]
                )
            elif isinstance(value, Mapping):  # a TOML table: {"/api" = "svc:app"}
                items = [f"{key}={item}" for key, item in value.items()]
            else:
                items = value
            converted = [str(v).strip() if self.name != "headers" else str(v) for v in items]
            if self.convert is not None:
                parsed = []
                for v in converted:
                    result = self.convert(v)  # one item may stand for several ("404,405")
                    parsed.extend(result) if isinstance(result, list) else parsed.append(result)
                converted = parsed
            return converted
        if kind == "choice":
            text = str(value)
            if self.import_form and ":" in text:
                return text
            if text not in self.choices and text not in self.substitute_names:
                expected = ", ".join((*self.choices, *self.substitute_names))
                raise ValueError(f"{self.name}: expected one of {expected}, got {text!r}")
            return text
        if self.convert is not None:
            return self.convert(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)


# List options whose environment variable holds one item per line (their items may hold commas).
_ONE_PER_LINE = ("headers", "route")

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
        "Application interface; auto tells ASGI 3, ASGI 2 and WSGI apart (WSGI runs on a thread pool).",
        choices=("auto", "asgi3", "asgi2", "wsgi"),
        group="Application",
    ),
    Option(
        "wsgi_threads",
        "int",
        10,
        "Threads that run a WSGI application's requests (per worker process).",
        flags=("--wsgi-threads", "--threads"),
        convert=_positive_int,
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
    # Composition: several applications behind one server
    Option(
        "mount",
        "list",
        [],
        "Serve the ASGI or WSGI app under PATH (repeatable; the longest matching prefix wins).",
        convert=_mount,
        group="Composition",
        metavar="PATH=MODULE:APP",
    ),
    Option(
        "route",
        "list",
        [],
        "Send requests for PATH (and below it) with one of METHODS to the app, path unchanged "
        "(repeatable), e.g. 'POST /orders=legacy:app'.",
        convert=_route,
        group="Composition",
        metavar="'[METHODS ]PATH=MODULE:APP'",
    ),
    Option(
        "fallback",
        "str",
        None,
        "Replay to this app the requests APP answers with a --fallback-on status.",
        convert=_app_spec,
        group="Composition",
        metavar="MODULE:APP",
    ),
    Option(
        "fallback_on",
        "list",
        [404],
        "Statuses of APP that send the request to --fallback (comma-separated or repeated).",
        convert=_status_codes,
        group="Composition",
        metavar="STATUS[,STATUS]",
    ),
    Option(
        "fallback_body_limit",
        "int",
        1048576,
        "Request body bytes kept for a replay to --fallback; above it APP's answer stands.",
        convert=_non_negative_int,
        group="Composition",
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
        "Event loop: auto (uvloop when installed), asyncio, uvloop or trio (with wherry[trio]); "
        "or module:attr, a callable that returns a new asyncio event loop.",
        choices=("auto", "asyncio", "uvloop", "trio"),
        flags=("--loop", "-k", "--worker-class"),
        substitutes=LOOP_SUBSTITUTES,
        import_form=True,
        group="Implementation",
    ),
    Option(
        "http",
        "choice",
        "auto",
        "HTTP/1.1 implementation (httptools, llhttp in strict mode).",
        choices=("auto", "httptools"),
        substitutes=HTTP_SUBSTITUTES,
        group="Implementation",
    ),
    # HTTP
    Option(
        "proxy_headers",
        "bool",
        True,
        "Trust the client address and scheme (X-Forwarded-For/-Proto, or Forwarded for=/proto=) "
        "from --forwarded-allow-ips; host and prefix only with --forwarded-trust.",
        group="HTTP",
    ),
    Option(
        "forwarded_allow_ips",
        "str",
        "127.0.0.1,::1",
        "Comma-separated addresses, CIDR networks, 'unix' or '*' trusted to send proxy headers.",
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
        substitutes=WS_SUBSTITUTES,
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
        "Negotiate WebSocket compression (permessage-deflate) when the client offers it "
        "(--ws-per-message-deflate true|false, or --no-ws-per-message-deflate).",
        takes_value=True,
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
    Option(
        "min_body_rate",
        "float",
        None,
        "Bytes per second a request body must keep up over each 5-second window (408 below it).",
        convert=_positive_float,
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
    # TLS
    Option(
        "ssl_certfile",
        "path",
        None,
        "Serve TLS with this certificate (PEM; the chain may follow it).",
        flags=("--ssl-certfile", "--certfile"),
        group="TLS",
    ),
    Option(
        "ssl_keyfile",
        "path",
        None,
        "The private key of --ssl-certfile (PEM), when not in the same file.",
        flags=("--ssl-keyfile", "--keyfile"),
        group="TLS",
    ),
    Option(
        "ssl_keyfile_password",
        "str",
        None,
        "Password of an encrypted --ssl-keyfile.",
        flags=("--ssl-keyfile-password", "--keyfile-password"),
        group="TLS",
    ),
    Option(
        "ssl_ca_certs",
        "path",
        None,
        "CA certificates (PEM) that client certificates are verified against (mTLS).",
        flags=("--ssl-ca-certs", "--ca-certs"),
        group="TLS",
    ),
    Option(
        "ssl_cert_reqs",
        "choice",
        "none",
        "Client certificates: none, optional or required (or 0, 1, 2 as in the ssl module).",
        flags=("--ssl-cert-reqs", "--cert-reqs"),
        choices=("none", "optional", "required", "0", "1", "2"),
        group="TLS",
    ),
    Option(
        "ssl_ciphers",
        "str",
        None,
        "OpenSSL cipher list for TLS 1.2 (default: ECDHE with AES-GCM or ChaCha20-Poly1305).",
        flags=("--ssl-ciphers", "--ciphers"),
        group="TLS",
    ),
    Option(
        "ssl_min_version",
        "choice",
        "1.2",
        "Lowest TLS version accepted.",
        choices=("1.2", "1.3"),
        group="TLS",
    ),
    Option(
        "ssl_handshake_timeout",
        "float",
        10.0,
        "Seconds a client has to complete the TLS handshake.",
        convert=_positive_float,
        group="TLS",
    ),
    # HTTP/2
    Option(
        "http2",
        "bool",
        True,
        "Serve HTTP/2: ALPN h2 over TLS; h2c by prior knowledge and by Upgrade on plain TCP.",
        group="HTTP/2",
    ),
    Option(
        "h2_max_concurrent_streams",
        "int",
        100,
        "Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).",
        convert=_positive_int,
        group="HTTP/2",
    ),
    Option(
        "h2_initial_window_size",
        "int",
        65535,
        "Request body bytes a client may send on a stream before the app reads them.",
        convert=_window_size,
        group="HTTP/2",
    ),
    Option(
        "h2_max_frame_size",
        "int",
        16384,
        "Largest frame payload a client may send (16384 to 16777215).",
        convert=_frame_size,
        group="HTTP/2",
    ),
    Option(
        "h2_max_header_list_size",
        "int",
        65536,
        "Largest decoded request header list, in bytes (SETTINGS_MAX_HEADER_LIST_SIZE).",
        convert=_positive_int,
        group="HTTP/2",
    ),
    Option(
        "timeout_send",
        "float",
        30.0,
        "Seconds output may wait for a client that reads nothing (or keeps its HTTP/2 window shut); "
        "then the connection is cut.",
        convert=_positive_float,
        group="HTTP",
    ),
    # Logging
    Option("log_level", "choice", "info", "Log level.", choices=LOG_LEVELS, group="Logging"),
    Option("access_log", "bool", True, "Write an access log line per request.", group="Logging"),
    # Processes and operations
    Option(
        "timeout_worker_healthcheck",
        "float",
        5.0,
        "Seconds a worker has to answer the supervisor's ping before it is killed and replaced.",
        flags=("--timeout-worker-healthcheck", "--timeout", "-t"),
        convert=_non_negative_float,
        group="Processes",
    ),
    Option(
        "limit_max_requests",
        "int",
        None,
        "Replace a worker (without dropping a request) after it has served this many requests.",
        flags=("--limit-max-requests", "--max-requests"),
        convert=_positive_int,
        group="Processes",
    ),
    Option(
        "limit_max_requests_jitter",
        "int",
        0,
        "Add a random 0..N to --limit-max-requests per worker, so workers are not replaced together.",
        flags=("--limit-max-requests-jitter", "--max-requests-jitter"),
        convert=_non_negative_int,
        group="Processes",
    ),
    Option(
        "limit_worker_rss",
        "int",
        None,
        "Replace a worker (without dropping a request) once its resident memory passes this many MiB.",
        convert=_size_mib,
        group="Processes",
        metavar="MIB",
    ),
    Option(
        "reload",
        "bool",
        False,
        "Restart the workers when a watched file changes (development; needs watchfiles).",
        group="Processes",
    ),
    Option(
        "reload_dirs",
        "list",
        [],
        "Directory to watch with --reload (repeatable; default: the current directory).",
        flags=("--reload-dir",),
        group="Processes",
        metavar="PATH",
    ),
    Option(
        "reload_includes",
        "list",
        [],
        "Glob pattern of files to watch with --reload (repeatable; default: *.py).",
        flags=("--reload-include",),
        group="Processes",
        metavar="GLOB",
    ),
    Option(
        "reload_excludes",
        "list",
        [],
        "Glob pattern of files not to watch with --reload (repeatable; default: .*, .py[cod], .sw.*, ~*).",
        flags=("--reload-exclude",),
        group="Processes",
        metavar="GLOB",
    ),
    Option(
        "reload_delay",
        "float",
        0.25,
        "Seconds to wait for more changes before restarting with --reload.",
        convert=_non_negative_float,
        group="Processes",
    ),
    Option(
        "pid_file",
        "path",
        None,
        "Write the server's process id to this file (removed on exit).",
        flags=("--pid-file", "--pid", "-p"),
        group="Processes",
    ),
    Option(
        "uds_permissions",
        "str",
        None,
        "File mode of the Unix socket, in octal (e.g. 660).",
        convert=_octal_mode,
        group="Binding",
        metavar="MODE",
    ),
    Option(
        "user",
        "str",
        None,
        "When started as root, run the workers as this user (name or uid) once the sockets are bound.",
        flags=("--user", "-u"),
        group="Processes",
    ),
    Option(
        "group",
        "str",
        None,
        "When started as root, run the workers with this group (name or gid).",
        flags=("--group", "-g"),
        group="Processes",
    ),
    # Behind load balancers
    Option(
        "proxy_protocol",
        "bool",
        False,
        "Expect a PROXY protocol header (v1 or v2) from peers in --forwarded-allow-ips.",
        group="HTTP",
    ),
    Option(
        "proxy_headers_style",
        "choice",
        "x-forwarded",
        "Which proxy headers to read: X-Forwarded-For/-Proto/-Host/-Prefix, or RFC 7239 Forwarded.",
        choices=("x-forwarded", "forwarded"),
        group="HTTP",
    ),
    Option(
        "forwarded_trust",
        "list",
        [],
        "Also take from trusted proxies: 'host' (X-Forwarded-Host, or Forwarded host=, replaces Host) "
        "and 'prefix' (X-Forwarded-Prefix, put before root_path). Only if the proxy sets or strips them.",
        convert=_forwarded_trust,
        group="HTTP",
        metavar="host,prefix",
    ),
    # Observability
    Option(
        "access_log_format",
        "str",
        None,
        "Access log line with gunicorn-style atoms: %(h)s %(r)s %(s)s %(b)s %(D)s %({name}i)s ...",
        flags=("--access-log-format", "--access-logformat"),
        convert=_access_format,
        group="Logging",
    ),
    Option(
        "log_format",
        "choice",
        "text",
        "Log lines as text or as one JSON object per line.",
        choices=("text", "json"),
        group="Logging",
    ),
    Option(
        "metrics_bind",
        "str",
        None,
        "Serve Prometheus metrics (/metrics) and health probes (/healthz, /readyz) on HOST:PORT.",
        convert=_metrics_bind,
        group="Logging",
        metavar="HOST:PORT",
    ),
    Option(
        "config",
        "path",
        None,
        "Read options from this TOML file (keys are option names).",
        flags=("--config", "-c"),
        group="Configuration",
    ),
    # Compatibility: uvicorn's, gunicorn's and hypercorn's options that Wherry takes as they are
    Option(
        "log_config",
        "path",
        None,
        "Configure logging from this file, as uvicorn does: a dictConfig in .json or .yaml/.yml, "
        "else a fileConfig .ini (loggers named uvicorn.error/uvicorn.access also log Wherry's lines).",
        group="Logging",
    ),
    Option(
        "use_colors",
        "bool",
        None,
        "Accepted for uvicorn compatibility: Wherry's log lines are never coloured.",
        group="Logging",
    ),
    Option(
        "access_logfile",
        "path",
        None,
        "Write the access log to this file ('-': standard output).",
        flags=("--access-logfile",),
        convert=_log_file,
        group="Logging",
    ),
    Option(
        "error_logfile",
        "path",
        None,
        "Write the error log to this file ('-': standard error).",
        flags=("--error-logfile", "--log-file"),
        convert=_log_file,
        group="Logging",
    ),
    Option(
        "chdir",
        "path",
        None,
        "Change to this directory before loading the application.",
        convert=_absolute_dir,
        group="Application",
    ),
    Option(
        "reset_contextvars",
        "bool",
        False,
        "Run each request without the context variables set around the server (each application "
        "call already starts from a copy of the server's context, never the lifespan's).",
        group="Application",
    ),
    Option(
        "ssl_version",
        "int",
        None,
        "uvicorn's ssl module protocol number (2, 5 or 17): Wherry serves TLS 1.2 and 1.3 "
        "(see --ssl-min-version).",
        convert=_ssl_version,
        group="TLS",
    ),
    Option(
        "h11_max_incomplete_event_size",
        "int",
        None,
        "uvicorn's h11 buffer limit; Wherry takes it as the request head limit (--limit-request-head).",
        convert=_positive_int,
        group="Limits",
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
    wsgi_threads: int
    mount: list[str]
    route: list[str]
    fallback: str | None
    fallback_on: list[int]
    fallback_body_limit: int
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
    min_body_rate: float | None
    timeout_keep_alive: float
    timeout_request_head: float
    timeout_request_body: float
    timeout_graceful_shutdown: float
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_keyfile_password: str | None
    ssl_ca_certs: str | None
    ssl_cert_reqs: str
    ssl_ciphers: str | None
    ssl_min_version: str
    ssl_handshake_timeout: float
    http2: bool
    h2_max_concurrent_streams: int
    h2_initial_window_size: int
    h2_max_frame_size: int
    h2_max_header_list_size: int
    timeout_send: float
    log_level: str
    access_log: bool
    timeout_worker_healthcheck: float
    limit_max_requests: int | None
    limit_max_requests_jitter: int
    limit_worker_rss: int | None
    reload: bool
    reload_dirs: list[str]
    reload_includes: list[str]
    reload_excludes: list[str]
    reload_delay: float
    pid_file: str | None
    uds_permissions: str | None
    user: str | None
    group: str | None
    proxy_protocol: bool
    proxy_headers_style: str
    forwarded_trust: list[str]
    access_log_format: str | None
    log_format: str
    metrics_bind: str | None
    config: str | None

    log_config: str | dict[str, Any] | None
    use_colors: bool | None
    access_logfile: str | None
    error_logfile: str | None
    chdir: str | None
    reset_contextvars: bool
    ssl_version: int | None
    h11_max_incomplete_event_size: int | None

    def __init__(self, app: Any = None, /, **options: Any) -> None:
        if app is not None:
            options["app"] = app
        for name in options:
            if name not in OPTIONS_BY_NAME:
                raise ConfigError(f"unknown option {name!r}")
        for option in OPTIONS:
            if option.name in options:
                value = options[option.name]
                if option.name == "app" and not isinstance(value, str | None):
                    self.app = value  # an application object, for wherry.run(app)
                    continue
                if option.name == "log_config" and isinstance(value, Mapping):
                    self.log_config = dict(value)  # a dictConfig, as uvicorn.run(log_config=...) takes
                    continue
                value = _python_form(option, value)
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
        # What Wherry does differently from what an option asked for, said once at startup.
        self.notes: list[str] = self._compatibility(options)
        if self.proxy_protocol and self.ssl_certfile:
            raise ConfigError(
                "--proxy-protocol cannot be combined with TLS (--ssl-certfile) yet: "
                "terminate TLS at the proxy, or serve TLS without the PROXY protocol"
            )

    def _compatibility(self, given: Mapping[str, Any]) -> list[str]:
        """Turn the other servers' choices into Wherry's and say what changed."""
        notes = []
        for option in OPTIONS:
            value = getattr(self, option.name)
            for name, runs, why in option.substitutes:
                if value == name:
                    setattr(self, option.name, runs)
                    notes.append(f"{option.primary_flag} {name}: {why} ({option.primary_flag} {runs})")
        if self.h11_max_incomplete_event_size is not None and "limit_request_head" not in given:
            self.limit_request_head = self.h11_max_incomplete_event_size
            notes.append(
                f"--h11-max-incomplete-event-size {self.h11_max_incomplete_event_size}: Wherry does not "
                "use h11; the request head limit is set to it (--limit-request-head)"
            )
        if self.ssl_version in (3, 4):
            notes.append(
                f"--ssl-version {self.ssl_version}: Wherry serves TLS 1.2 and 1.3 only "
                f"(--ssl-min-version {self.ssl_min_version})"
            )
        if self.use_colors:
            notes.append("--use-colors: Wherry's log lines are not coloured")
        if self.reset_contextvars:
            notes.append(
                "--reset-contextvars: each application call already starts from a copy of the "
                "server's context, in which the lifespan's context variables are not set"
            )
        if (self.reload_dirs or self.reload_includes or self.reload_excludes) and not self.reload:
            notes.append("--reload-dir, --reload-include and --reload-exclude do nothing without --reload")
        return notes

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
        env_names: dict[str, str] = {}
        for option in OPTIONS:
            for env in option.all_envs:
                if env in environ:
                    text = environ[env]
                    if env.startswith("UVICORN_") and option.kind == "list":
                        from_env[option.name] = text.split()  # click splits a list on spaces
                    else:
                        from_env[option.name] = text
                    env_names[option.name] = env
                    break
        config_path = given.get("config") or from_env.get("config")
        if config_path:
            for name, (key, value) in read_toml_keys(str(config_path)).items():
                _check(name, value, f"{config_path}: key {key!r}")
                values[name] = value
                source[name] = "config file"
        for name, value in from_env.items():
            _check(name, value, f"environment variable {env_names[name]}")
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


_LEVEL_NAMES = {50: "critical", 40: "error", 30: "warning", 20: "info", 10: "debug", 5: "trace"}


def _python_form(option: Option, value: Any) -> Any:
    """The values uvicorn's ``Config`` takes from Python that are not text: a log level number,
    headers as (name, value) pairs, a list of trusted addresses; None for "not set"."""
    if value is None:
        return option.default
    if option.name == "log_level" and isinstance(value, int) and not isinstance(value, bool):
        return _LEVEL_NAMES.get(value, value)
    if option.name == "headers" and isinstance(value, list | tuple):
        return [f"{v[0]}:{v[1]}" if isinstance(v, list | tuple) and len(v) == 2 else v for v in value]
    if option.name == "forwarded_allow_ips" and isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


def _check(name: str, value: Any, where: str) -> None:
    """Parse one value from a file or the environment, naming where it came from on error."""
    try:
        OPTIONS_BY_NAME[name].parse(value)
    except (TypeError, ValueError) as exc:
        text = str(exc).removeprefix(f"{name}: ")
        raise ConfigError(f"{where}: {text}") from None


def read_toml(path: str) -> dict[str, Any]:
    """Options from a TOML file: top-level keys, or a [wherry] table; dashes or underscores;
    hypercorn's key names too."""
    return {name: value for name, (_key, value) in read_toml_keys(path).items()}


def read_toml_keys(path: str) -> dict[str, tuple[str, Any]]:
    """Option name -> (the key as written, its value), from a TOML file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if isinstance(data.get("wherry"), dict):
        data = data["wherry"]
    values: dict[str, tuple[str, Any]] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == "header":
            name = "headers"
        if name not in OPTIONS_BY_NAME and name in TOML_ALIASES:
            name = TOML_ALIASES[name]
            if name == "log_level" and isinstance(value, str):
                value = value.lower()  # hypercorn writes INFO
        if name not in OPTIONS_BY_NAME:
            raise ConfigError(f"{path}: unknown option {key!r}")
        values[name] = (key, value)
    return values

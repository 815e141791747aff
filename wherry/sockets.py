"""Listening sockets from the binding options: TCP (IPv4/IPv6), Unix sockets, inherited fds and
systemd socket activation (``LISTEN_FDS``/``LISTEN_PID``); and the signals held from the moment
they listen until a server or the supervisor handles them (``held_signals``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from .config import Config, decimal, file_mode, parse_bind

SD_LISTEN_FDS_START = 3  # systemd passes its sockets from this descriptor on (sd_listen_fds(3))


class BindError(OSError):
    """A listening socket could not be created."""


def _tcp(host: str, port: int, backlog: int) -> socket.socket:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"cannot bind to {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _unix(path: str, backlog: int, mode: str | None = None) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, file_mode(mode))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"cannot bind to unix:{path}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _fd(fd: int, backlog: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(exc.errno, f"fd {fd} is not a usable socket: {exc.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def systemd_activated(environ: MutableMapping[str, str] = os.environ) -> bool:
    """systemd passed this process its listening sockets (see ``systemd_sockets``)."""
    count = environ.get("LISTEN_FDS", "")
    pid = environ.get("LISTEN_PID", "")
    return decimal(count) and decimal(pid) and int(pid) == os.getpid()


def systemd_sockets(environ: MutableMapping[str, str] = os.environ) -> list[socket.socket]:
    """The sockets systemd passed (socket activation), or none.

    Taken only when ``LISTEN_PID`` is this process (the variables may have been inherited by a
    process they were not meant for); the variables are then removed so that no child takes the
    sockets for its own.
    """
    if not systemd_activated(environ):
        return []
    count = environ["LISTEN_FDS"]
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    sockets: list[socket.socket] = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            for done in sockets:
                done.close()
            raise BindError(
                exc.errno, f"LISTEN_FDS: fd {fd} is not a usable socket: {exc.strerror}"
            ) from None
        sock.set_inheritable(False)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def create_sockets(config: Config) -> list[socket.socket]:
    """Bind every listening socket the options ask for; with systemd socket activation, take
    the sockets systemd passed instead (its unit decides the addresses)."""
    activated = systemd_sockets()
    if activated:
        return activated
    sockets: list[socket.socket] = []
    try:
        if config.bind:
            for address in config.bind:
                kind, target = parse_bind(address)
                if kind == "unix":
                    sockets.append(_unix(str(target), config.backlog, config.uds_permissions))
                elif kind == "fd":
                    assert isinstance(target, int)
                    sockets.append(_fd(target, config.backlog))
                else:
                    assert isinstance(target, tuple)
                    sockets.append(_tcp(target[0], target[1], config.backlog))
        elif config.fd is not None:
            sockets.append(_fd(config.fd, config.backlog))
        elif config.uds:
            sockets.append(_unix(config.uds, config.backlog, config.uds_permissions))
        else:
            sockets.append(_tcp(config.host, config.port, config.backlog))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def describe(sock: socket.socket) -> str:
    """The URL-ish address a socket listens on, for logs."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"http://[{name[0]}]:{name[1]}"
    return f"http://{name[0]}:{name[1]}"


# ---------------------------------------------------------------- signals while listening

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_held: list[int] = []  # signals received while held_signals() is in force and nobody else handles them


def _hold(signum: int, _frame: Any) -> None:
    _held.append(signum)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM instead of raising KeyboardInterrupt or dying (main thread only).

    A server installs its own handlers over these and acts on what was recorded in the meantime
    (``take_held_signals``); outside a server they stay recorded until the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _hold) for sig in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def take_held_signals() -> list[int]:
    """The signals recorded by ``held_signals`` and not yet taken, oldest first."""
    taken = _held[:]
    del _held[:]
    return taken

"""Listening sockets from the binding options: TCP (IPv4/IPv6), Unix sockets and inherited fds."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from .config import Config, parse_bind


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


def _unix(path: str, backlog: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
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


def create_sockets(config: Config) -> list[socket.socket]:
    """Bind every listening socket the options ask for."""
    sockets: list[socket.socket] = []
    try:
        if config.bind:
            for address in config.bind:
                kind, target = parse_bind(address)
                if kind == "unix":
                    sockets.append(_unix(str(target), config.backlog))
                elif kind == "fd":
                    assert isinstance(target, int)
                    sockets.append(_fd(target, config.backlog))
                else:
                    assert isinstance(target, tuple)
                    sockets.append(_tcp(target[0], target[1], config.backlog))
        elif config.fd is not None:
            sockets.append(_fd(config.fd, config.backlog))
        elif config.uds:
            sockets.append(_unix(config.uds, config.backlog))
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

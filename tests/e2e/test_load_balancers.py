"""Wherry behind a real nginx and a real HAProxy, each started by the test on loopback with the
configuration of docs/deploy.md (only addresses, ports and paths changed): the client's address
and scheme reach the scope, a path prefix becomes root_path, WebSocket passes through, HAProxy
speaks PROXY protocol v2, and a rolling restart behind HAProxy under load fails no request.

Clients connect from 127.0.0.2 so that the address the app sees can only have come through the
proxy's headers or PROXY header (the proxies themselves connect from 127.0.0.1).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy_docs import config_block, replace_all
from tests.h2util import h2c_upgrade
from tests.load import Load
from tests.procs import Wherry, free_port, wait_until

CLIENT = "127.0.0.2"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Proxy:
    """A proxy process started in the foreground, stopped with the test."""

    def __init__(self, command: list[str], tmp: Path, port: int) -> None:
        self.log = tmp / "proxy.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp)
        self.port = port

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            return listening(port)

        wait_until(up, 15, "the proxy to listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    for item in reversed(items):
        item.stop() if isinstance(item, Proxy) else item.close()


def client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT, **kwargs), **kwargs)


def scope_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    info: dict[str, Any] = json.loads(response.headers["x-scope"])
    return info


# ----------------------------------------------------------------------------------------- nginx


def start_nginx(tmp: Path, upstream: int) -> tuple[Proxy, int, int]:
    http_port, https_port = free_port(), free_port()
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    site = replace_all(
        config_block("nginx"),
        {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream};",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
            "/etc/ssl/certs/example.pem": str(cert),
            "/etc/ssl/private/example.key": str(key),
        },
    )
    temp = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log info;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temp}\n{site}\n}}\n"
    )
    assert NGINX is not None
    proxy = Proxy([NGINX, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")], tmp, http_port)
    wait_until(lambda: listening(https_port), what="nginx on its TLS port")
    return proxy, http_port, https_port


needs_nginx = pytest.mark.skipif(
    NGINX is None or shutil.which("openssl") is None, reason="nginx not installed"
)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Wherry, int, int]]:
    """One Wherry and one nginx for the nginx tests (none of them changes either)."""
    if NGINX is None or shutil.which("openssl") is None:
        pytest.skip("nginx not installed")
    tmp_path = tmp_path_factory.mktemp("nginx")
    # docs/deploy.md: this nginx configuration sets X-Forwarded-Host and -Prefix on every request.
    server = Wherry(["tests.apps:ws_echo", "--no-access-log", "--forwarded-trust", "host,prefix"], tmp_path)
    try:
        server.wait_serving()
        proxy, http_port, https_port = start_nginx(tmp_path, server.port)
        try:
            yield server, http_port, https_port
        finally:
            proxy.stop()
    finally:
        server.close()


@needs_nginx
def test_nginx_client_address_and_scheme_reach_the_scope(behind_nginx: tuple[Wherry, int, int]) -> None:
    """Through nginx (X-Forwarded-For/-Proto/-Host from a trusted peer) the scope has the real
    client, http or https as the client used, and the Host the client asked for; a client's own
    forged headers do not get through."""
    _server, http_port, https_port = behind_nginx
    forged = {"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Prefix": "/evil", "X-Forwarded-Proto": "https"}
    with client() as plain:
        info = scope_of(plain.get(f"http://localhost:{http_port}/path?q=1", headers=forged))
    assert info["client"][0] == CLIENT
    assert info["scheme"] == "http"
    assert info["root_path"] == "" and info["path"] == "/path" and info["query_string"] == "q=1"
    assert ["host", "localhost"] in info["headers"]
    with client(verify=False) as tls:
        info = scope_of(tls.get(f"https://localhost:{https_port}/secure"))
    assert info["client"][0] == CLIENT
    assert info["scheme"] == "https"


@needs_nginx
def test_nginx_prefix_becomes_root_path(behind_nginx: tuple[Wherry, int, int]) -> None:
    """nginx strips /api and says so in X-Forwarded-Prefix: the app sees root_path /api and a
    path that includes it (ASGI www spec: path includes root_path)."""
    _server, http_port, _ = behind_nginx
    with client() as plain:
        info = scope_of(plain.get(f"http://localhost:{http_port}/api/items/7"))
    assert info["root_path"] == "/api"
    assert info["path"] == "/api/items/7"
    assert info["raw_path"] == "/api/items/7"
    assert info["client"][0] == CLIENT


@needs_nginx
def test_nginx_websocket_passes_through(behind_nginx: tuple[Wherry, int, int]) -> None:
    """A WebSocket through nginx's Upgrade handling reaches the app with the client's address."""
    if importlib.util.find_spec("wherry.proto.websocket") is None:
        pytest.skip("this build of Wherry has no WebSocket support")
    websockets = pytest.importorskip("websockets.sync.client")
    _server, http_port, _ = behind_nginx
    with websockets.connect(f"ws://localhost:{http_port}/ws", source_address=(CLIENT, 0)) as ws:
        ws.send("hello")
        # A websocket scope's scheme is ws or wss (www spec, WebSocket connection scope).
        assert ws.recv(timeout=5) == f"{CLIENT} ws hello"


# --------------------------------------------------------------------------------------- HAProxy

needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")


def start_haproxy(tmp: Path, upstream: int, metrics: int) -> Proxy:
    port = free_port()
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        replace_all(
            config_block("haproxy"),
            {
                "bind :80": f"bind 127.0.0.1:{port}",
                "127.0.0.1:8000": f"127.0.0.1:{upstream}",
                "check port 9100": f"check port {metrics}",
            },
        )
    )
    assert HAPROXY is not None
    return Proxy([HAPROXY, "-f", str(conf), "-db"], tmp, port)


def ready(metrics: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{metrics}/readyz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def behind_haproxy(tmp_path: Path, cleanup: list[Any]) -> tuple[Wherry, Proxy]:
    metrics = free_port()
    server = Wherry(
        [
            "tests.apps:ws_echo",
            "--workers",
            "2",
            "--proxy-protocol",
            "--metrics-bind",
            f"127.0.0.1:{metrics}",
            "--no-access-log",
        ],
        tmp_path,
    )
    cleanup.append(server)
    wait_until(lambda: ready(metrics), 20, "wherry to be ready")  # so HAProxy's first check passes
    proxy = start_haproxy(tmp_path, server.port, metrics)
    cleanup.append(proxy)
    return server, proxy


@needs_haproxy
def test_haproxy_proxy_protocol_v2_gives_the_client_address_and_port(
    behind_haproxy: tuple[Wherry, Proxy],
) -> None:
    """HAProxy's send-proxy-v2 header names the client's address and source port; the scope's
    client is exactly that connection's far end."""
    _server, proxy = behind_haproxy
    with socket.socket() as sock:
        sock.bind((CLIENT, 0))
        sock.connect(("127.0.0.1", proxy.port))
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
        source_port = sock.getsockname()[1]
    assert head.startswith("HTTP/1.1 200"), head
    scope_line = next(line for line in head.split("\r\n") if line.lower().startswith("x-scope:"))
    info = json.loads(scope_line.partition(":")[2])
    assert info["client"] == [CLIENT, source_port]
    assert info["path"] == "/who"


@needs_haproxy
def test_haproxy_rolling_restart_under_load_fails_no_request(behind_haproxy: tuple[Wherry, Proxy]) -> None:
    """SIGHUP to Wherry while load runs through HAProxy: every request succeeds."""
    server, proxy = behind_haproxy
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    before = server.workers()
    with Load("127.0.0.1", proxy.port, concurrency=8, source=CLIENT) as load:
        load.wait_for(300)
        server.signal(signal.SIGHUP)
        wait_until(lambda: len(server.workers()) == 2 and not server.workers() & before, what="new workers")
        load.wait_for(300)
    assert load.failures == []
    assert load.ok >= 600


@needs_haproxy
def test_haproxy_websocket_session_keeps_the_client_address(behind_haproxy: tuple[Wherry, Proxy]) -> None:
    """A WebSocket session through the documented HAProxy (send-proxy-v2): the upgrade is
    answered, messages go both ways, and the app sees the client's address."""
    if importlib.util.find_spec("wherry.proto.websocket") is None:
        pytest.skip("this build of Wherry has no WebSocket support")
    websockets = pytest.importorskip("websockets.sync.client")
    server, proxy = behind_haproxy
    with websockets.connect(f"ws://localhost:{proxy.port}/ws", source_address=(CLIENT, 0)) as ws:
        for text in ("hello", "again"):
            ws.send(text)
            assert ws.recv(timeout=5) == f"{CLIENT} ws {text}"
    assert "Traceback" not in server.log_path.read_text(errors="replace")


def start_haproxy_tcp(tmp: Path, upstream: int, send_proxy: str) -> Proxy:
    """HAProxy in TCP mode (the bytes of the client's protocol pass untouched), prefixing each
    connection with a PROXY header (``send-proxy`` or ``send-proxy-v2``)."""
    port = free_port()
    conf = tmp / "haproxy-tcp.cfg"
    conf.write_text(
        "global\n    maxconn 256\n\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n"
        f"frontend www\n    bind 127.0.0.1:{port}\n    default_backend wherry\n\n"
        f"backend wherry\n    server app1 127.0.0.1:{upstream} {send_proxy}\n"
    )
    assert HAPROXY is not None
    return Proxy([HAPROXY, "-f", str(conf), "-db"], tmp, port)


@needs_haproxy
@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxy_tcp_mode_upgrades_keep_the_client_address(
    tmp_path: Path, cleanup: list[Any], send_proxy: str
) -> None:
    """HAProxy in TCP mode with a PROXY v1 or v2 header: an h2c upgrade is answered over HTTP/2
    and a WebSocket session works, both with the client's address and port in the scope."""
    server = Wherry(["tests.apps:ws_echo", "--proxy-protocol", "--no-access-log"], tmp_path)
    cleanup.append(server)
    wait_until(lambda: listening(server.port), 20, "wherry to listen")
    proxy = start_haproxy_tcp(tmp_path, server.port, send_proxy)
    cleanup.append(proxy)
    with socket.socket() as sock:
        sock.bind((CLIENT, 0))
        sock.connect(("127.0.0.1", proxy.port))
        _head, headers, body = h2c_upgrade(sock, "/up", b"hello")
        source_port = sock.getsockname()[1]
    assert body == b"hello"
    info = json.loads(headers[b"x-scope"])
    assert (info["http_version"], info["client"]) == ("2", [CLIENT, source_port])
    if importlib.util.find_spec("wherry.proto.websocket") is not None:
        websockets = pytest.importorskip("websockets.sync.client")
        with websockets.connect(f"ws://localhost:{proxy.port}/ws", source_address=(CLIENT, 0)) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == f"{CLIENT} ws hello"
    assert "Traceback" not in server.log_path.read_text(errors="replace")

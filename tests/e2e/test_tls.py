"""TLS: the options, ALPN, the handshake deadline, mTLS and the ASGI ``tls`` scope extension
(TLS extension spec 0.2), over real TLS connections with certificates made by trustme."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import RunningServer, read_response, recv_all, run_server
from tests.h2util import Certs, make_certs
from wherry.asgi.tls_extension import rfc4514_name
from wherry.config import Config, ConfigError
from wherry.proto.http1 import H2_REFUSAL
from wherry.tls import create_tls_context

Serve = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls-certs"))


async def tls_info(scope: Any, receive: Any, send: Any) -> None:
    """Answer with the scheme, the HTTP version and the tls extension as JSON."""
    if scope["type"] != "http":
        return
    body = json.dumps(
        {
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "tls": scope["extensions"].get("tls"),
        }
    ).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def get_over_tls(server: RunningServer, context: ssl.SSLContext) -> tuple[dict[str, Any], ssl.SSLSocket]:
    raw = server.connect()
    try:
        sock = context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, body = read_response(sock)
    except BaseException:
        sock.close()
        raise
    assert status == 200
    return json.loads(body), sock


def test_https_scope_and_tls_extension(serve: Serve, certs: Certs) -> None:
    """TLS extension spec: server_cert (PEM), tls_version, cipher_suite (IANA number), and no
    client certificate; the scheme is https and ALPN http/1.1 gives HTTP/1.1."""
    server = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file))
    info, sock = get_over_tls(server, certs.client_context(("http/1.1",)))
    with sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        version = sock.version()
        cipher = sock.cipher()
    assert info["scheme"] == "https" and info["http_version"] == "1.1"
    tls = info["tls"]
    leaf_pem = certs.server_file.read_text()
    begin = leaf_pem.index("-----BEGIN CERTIFICATE-----")
    end = leaf_pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    assert tls["server_cert"].strip() == leaf_pem[begin:end]
    assert tls["tls_version"] == {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[version or ""]
    if cipher is not None and cipher[0] == "TLS_AES_256_GCM_SHA384":
        assert tls["cipher_suite"] == 0x1302
    assert isinstance(tls["cipher_suite"], int)
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None


def test_plain_connections_have_no_tls_extension(serve: Serve) -> None:
    """TLS extension spec: 'For non-TLS connections, the ASGI server is forbidden from providing
    this extension.'"""
    server = serve(tls_info, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        _, _, body = read_response(sock)
    info = json.loads(body)
    assert info["tls"] is None and info["scheme"] == "http"


def test_mtls_required_refuses_a_client_without_certificate(serve: Serve, certs: Certs) -> None:
    """--ssl-cert-reqs required: a client with no certificate does not get through the handshake;
    one with a certificate the CA signed does, and its chain and RFC 4514 name are in the scope."""
    server = serve(
        tls_info,
        lifespan="off",
        ssl_certfile=str(certs.server_file),
        ssl_ca_certs=str(certs.ca_file),
        ssl_cert_reqs="required",
    )
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get_over_tls(server, certs.client_context(("http/1.1",)))
    info, sock = get_over_tls(server, certs.client_context(("http/1.1",), certs.client_file))
    sock.close()
    tls = info["tls"]
    client_pem = certs.client_file.read_text()
    first = client_pem[client_pem.index("-----BEGIN CERTIFICATE-----") :]
    first = first[: first.index("-----END CERTIFICATE-----") + 25]
    assert tls["client_cert_chain"][0].strip() == first
    assert tls["client_cert_name"].startswith("CN=Client\\, One")
    assert "O=Wherry Tests" in tls["client_cert_name"]
    assert tls["client_cert_error"] is None


def test_mtls_optional_accepts_no_certificate_and_refuses_a_stranger(serve: Serve, certs: Certs) -> None:
    """--ssl-cert-reqs optional: no certificate is fine; a certificate from a CA the server does
    not trust ends the handshake."""
    server = serve(
        tls_info,
        lifespan="off",
        ssl_certfile=str(certs.server_file),
        ssl_ca_certs=str(certs.ca_file),
        ssl_cert_reqs="optional",
    )
    info, sock = get_over_tls(server, certs.client_context(("http/1.1",)))
    sock.close()
    assert info["tls"]["client_cert_chain"] == []
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get_over_tls(server, certs.client_context(("http/1.1",), certs.stranger_file))


def test_handshake_deadline_closes_a_silent_connection(serve: Serve, certs: Certs) -> None:
    """--ssl-handshake-timeout: a client that connects and never starts the handshake is closed
    when it passes."""
    server = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file), ssl_handshake_timeout=0.5)
    with server.connect() as sock:
        sock.settimeout(5)
        started = time.monotonic()
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - started
    assert data == b""
    assert 0.3 < elapsed < 4.0


def test_tls_12_is_the_default_minimum_and_13_can_be_required(serve: Serve, certs: Certs) -> None:
    """TLS 1.2 is the lowest version by default (RFC 8996 deprecates 1.0 and 1.1);
    --ssl-min-version 1.3 refuses a client that stops at 1.2."""
    assert create_tls_context(Config(ssl_certfile=str(certs.server_file))).context.minimum_version == (  # type: ignore[union-attr]
        ssl.TLSVersion.TLSv1_2
    )
    only_12 = certs.client_context(("http/1.1",))
    only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    default = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file))
    info, sock = get_over_tls(default, only_12)
    sock.close()
    assert info["tls"]["tls_version"] == 0x0303
    strict = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file), ssl_min_version="1.3")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get_over_tls(strict, only_12)


def test_ciphers_option_limits_tls12_suites(serve: Serve, certs: Certs) -> None:
    """--ssl-ciphers sets the TLS 1.2 suites; the scope reports the IANA number of the one used."""
    server = serve(
        tls_info,
        lifespan="off",
        ssl_certfile=str(certs.server_file),
        ssl_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    )
    client = certs.client_context(("http/1.1",))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    info, sock = get_over_tls(server, client)
    sock.close()
    assert info["tls"]["cipher_suite"] in (0xC02B, 0xC02F)


def test_encrypted_key_with_password(serve: Serve, certs: Certs, tmp_path: Path) -> None:
    """--ssl-keyfile with --ssl-keyfile-password: an encrypted private key is loaded."""
    leaf = certs.ca.issue_cert("localhost")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    keyfile = tmp_path / "key.pem"
    keyfile.write_bytes(encrypted)
    certfile = tmp_path / "cert.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    server = serve(
        tls_info,
        lifespan="off",
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        ssl_keyfile_password="s3cret",
    )
    info, sock = get_over_tls(server, certs.client_context(("http/1.1",)))
    sock.close()
    assert info["scheme"] == "https"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ssl_certfile": "/nonexistent/cert.pem"}, "--ssl-certfile /nonexistent/cert.pem: cannot read it"),
        ({"ssl_keyfile": "/tmp/key.pem"}, "need --ssl-certfile"),
        ({"ssl_cert_reqs": "required"}, "needs --ssl-ca-certs"),
        ({"ssl_ciphers": "NOT-A-CIPHER"}, "--ssl-ciphers"),
    ],
    ids=["missing-cert", "key-without-cert", "required-without-ca", "bad-ciphers"],
)
def test_unusable_tls_settings_stop_the_server_with_the_reason(
    certs: Certs, options: dict[str, Any], message: str
) -> None:
    """A TLS setting that cannot work is a configuration error naming the option, before any
    connection is accepted."""
    if "ssl_certfile" not in options and "ssl_keyfile" not in options:
        options = {"ssl_certfile": str(certs.server_file), **options}
    with pytest.raises(ConfigError, match=message), run_server(tls_info, **options):
        pass


def test_rfc4514_names_are_escaped_and_reversed() -> None:
    """RFC 4514 §2.1, §2.4: the last RDN comes first; special characters are escaped."""
    subject = ((("countryName", "GB"),), (("organizationName", "A+B"),), (("commonName", " Name, #1 "),))
    assert rfc4514_name(subject) == "CN=\\ Name\\, #1\\ ,O=A\\+B,C=GB"
    assert rfc4514_name(()) is None


def test_plain_socket_to_a_tls_port_is_closed(serve: Serve, certs: Certs) -> None:
    """Plain HTTP sent to a TLS listener fails the handshake; the server stays up."""
    server = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file))
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(5)
        try:
            while sock.recv(4096):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
    info, again = get_over_tls(server, certs.client_context(("http/1.1",)))
    again.close()
    assert info["scheme"] == "https"


def test_alpn_offers_h2_then_http11_and_only_http11_without_http2(serve: Serve, certs: Certs) -> None:
    """ALPN (RFC 7301): a client offering both gets h2; with --no-http2 it gets http/1.1."""
    both = certs.client_context(("h2", "http/1.1"))
    with_h2 = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file))
    with both.wrap_socket(with_h2.connect(), server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == "h2"
    without = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file), http2=False)
    info, sock = get_over_tls(without, both)
    with sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    assert info["http_version"] == "1.1"


H2_START = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # preface, SETTINGS


@pytest.mark.parametrize("offered", [("http/1.1",), None, ("foo",)], ids=["http11", "no-alpn", "unknown"])
def test_http2_preface_is_refused_unless_alpn_chose_h2(
    serve: Serve, certs: Certs, offered: tuple[str, ...] | None
) -> None:
    """RFC 9113 §3.2 and RFC 7301: over TLS, HTTP/2 is spoken only when ALPN chose h2; after
    http/1.1 or no ALPN the preface is answered as an HTTP/1.1-only server does (GOAWAY
    HTTP_1_1_REQUIRED) and the connection closed."""
    server = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file))
    context = certs.client_context(offered or ())
    with context.wrap_socket(server.connect(), server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() in (None, "http/1.1")
        sock.sendall(H2_START)
        answer = recv_all(sock)
    assert answer == H2_REFUSAL
    with certs.client_context(("h2",)).wrap_socket(server.connect(), server_hostname="localhost") as sock:
        sock.sendall(H2_START)
        sock.settimeout(5)
        first = sock.recv(9)
    assert first[3] == 0x4 and not first[4] & 0x1  # the server's SETTINGS: HTTP/2 is served


def test_tls12_offers_only_forward_secret_aead_suites(serve: Serve, certs: Certs) -> None:
    """Without --ssl-ciphers, TLS 1.2 offers ECDHE with AES-GCM or ChaCha20-Poly1305 only (the
    Mozilla intermediate set): a client offering only CBC suites is refused, one offering
    ChaCha20-Poly1305 is served."""
    server = serve(tls_info, lifespan="off", ssl_certfile=str(certs.server_file))
    cbc = certs.client_context(("http/1.1",))
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers(
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:AES256-SHA256"
    )
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get_over_tls(server, cbc)
    chacha = certs.client_context(("http/1.1",))
    chacha.maximum_version = ssl.TLSVersion.TLSv1_2
    chacha.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
    info, sock = get_over_tls(server, chacha)
    sock.close()
    assert info["tls"]["cipher_suite"] in (0xCCA9, 0xCCA8)
    tls = create_tls_context(Config(ssl_certfile=str(certs.server_file)))
    assert tls is not None
    assert all("GCM" in c["name"] or "CHACHA20" in c["name"] for c in tls.context.get_ciphers())

"""The ASGI ``tls`` scope extension (TLS extension spec 0.2) of a connection: read from server-side
``ssl.SSLObject``s that complete their handshake over ``ssl.MemoryBIO``s, with ``trustme``'s
certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from wherry.asgi.tls_extension import TLS_VERSIONS, rfc4514_name, tls_extension

CIPHER_IDS = {
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def handshake(ca: trustme.CA, client_cert: bool) -> ssl.SSLObject:
    """The server's side of a TLS 1.3 connection made in memory; the client presents a certificate
    when ``client_cert`` (the server asks for one, and verifies it)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("server.test").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    if client_cert:
        ca.issue_cert("client@example.test", common_name="client, one").configure_cert(client_ctx)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname="server.test")
    pending = {client, server}
    for _ in range(10):
        for side in list(pending):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.discard(side)
        if not pending:
            break
    assert not pending, "the in-memory handshake did not complete"
    # TLS 1.3 sends the client's certificate after the client's handshake ends: the server reads
    # it with its last flight, which the loop above has done.
    return server


def test_a_connection_without_a_client_certificate(ca: trustme.CA) -> None:
    """Without a client certificate the chain is empty and the name None; the version and cipher
    are the negotiated ones, given by their TLS numbers."""
    server = handshake(ca, client_cert=False)
    extension = tls_extension(server, "PEM", CIPHER_IDS)
    assert extension == {
        "server_cert": "PEM",
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": CIPHER_IDS[server.cipher()[0]],  # type: ignore[index]
    }


def test_a_client_certificate_gives_its_pem_and_its_subject(ca: trustme.CA) -> None:
    """A verified client certificate is given as PEM, and its subject as an RFC 4514 name."""
    server = handshake(ca, client_cert=True)
    extension = tls_extension(server, None, {})
    der = server.getpeercert(binary_form=True)
    assert der is not None
    chain = extension["client_cert_chain"]
    assert chain[0] == ssl.DER_cert_to_PEM_cert(der)
    # Python 3.13 gives the verified chain (the certificate, then the CA that signed it); earlier
    # Pythons give the peer's certificate alone.
    assert len(chain) == (2 if hasattr(server, "get_verified_chain") else 1)
    assert extension["client_cert_name"].startswith("CN=client\\, one,")
    assert extension["cipher_suite"] is None  # a cipher the table does not know


class WithChain:
    """An ``SSLObject`` that also has ``get_verified_chain()`` (Python 3.13), returning ``chain``."""

    def __init__(self, ssl_object: ssl.SSLObject, chain: list[Any]) -> None:
        self._ssl_object = ssl_object
        self._chain = chain

    def get_verified_chain(self) -> list[Any]:
        return self._chain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ssl_object, name)


def test_the_verified_chain_is_given_when_the_ssl_object_has_one(ca: trustme.CA) -> None:
    """With get_verified_chain(), every certificate of the chain is given, leaf first, as PEM."""
    server = handshake(ca, client_cert=True)
    leaf = server.getpeercert(binary_form=True)
    assert leaf is not None
    root = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
    extension = tls_extension(WithChain(server, [leaf, bytearray(root)]), None, {})
    assert extension["client_cert_chain"] == [ssl.DER_cert_to_PEM_cert(leaf), ssl.DER_cert_to_PEM_cert(root)]


def test_an_empty_verified_chain_falls_back_to_the_peer_certificate(ca: trustme.CA) -> None:
    """When get_verified_chain() gives nothing, the peer's own certificate is the chain."""
    server = handshake(ca, client_cert=True)
    leaf = server.getpeercert(binary_form=True)
    assert leaf is not None
    extension = tls_extension(WithChain(server, []), None, {})
    assert extension["client_cert_chain"] == [ssl.DER_cert_to_PEM_cert(leaf)]


class DERCertificate:
    """A certificate object with ``public_bytes(encoding)``, as in a verified chain."""

    def __init__(self, der: bytes) -> None:
        self.der = der
        self.encodings: list[int] = []

    def public_bytes(self, encoding: int) -> bytes:
        self.encodings.append(encoding)
        return self.der


def test_a_chain_of_certificate_objects_is_read_through_public_bytes(ca: trustme.CA) -> None:
    """A chain of certificate objects is given as the PEM of each one's public_bytes()."""
    server = handshake(ca, client_cert=True)
    leaf = server.getpeercert(binary_form=True)
    assert leaf is not None
    cert = DERCertificate(leaf)
    extension = tls_extension(WithChain(server, [cert]), None, {})
    assert extension["client_cert_chain"] == [ssl.DER_cert_to_PEM_cert(leaf)]
    assert len(cert.encodings) == 1


def verified_chain_objects(server: ssl.SSLObject) -> Iterator[Any]:
    """The ``_ssl.Certificate`` objects of the server's verified chain (Python 3.10 to 3.12 keep
    them on the private ``_sslobj``; 3.13 returns them as DER bytes from ``get_verified_chain``)."""
    sslobj = getattr(server, "_sslobj", None)
    getter = getattr(sslobj, "get_verified_chain", None)
    if getter is None:
        pytest.skip("no _ssl.Certificate objects on this Python")
    yield from getter()


def test_a_chain_of_ssl_certificate_objects_is_given_as_pem(ca: trustme.CA) -> None:
    """A chain of the ssl module's own certificate objects is given as their PEM."""
    server = handshake(ca, client_cert=True)
    leaf = server.getpeercert(binary_form=True)
    assert leaf is not None
    chain = list(verified_chain_objects(server))
    extension = tls_extension(WithChain(server, chain), None, {})
    assert extension["client_cert_chain"][0] == ssl.DER_cert_to_PEM_cert(leaf)


class Unnegotiated:
    """An ``SSLObject`` before its handshake: no peer, no version, no cipher."""

    def getpeercert(self, binary_form: bool = False) -> None:
        return None

    def version(self) -> None:
        return None

    def cipher(self) -> None:
        return None


def test_no_version_and_no_cipher_are_none() -> None:
    """A connection that reports no TLS version and no cipher gives None for both."""
    extension = tls_extension(Unnegotiated(), None, CIPHER_IDS)
    assert (extension["tls_version"], extension["cipher_suite"]) == (None, None)


def test_the_tls_versions_are_their_protocol_numbers() -> None:
    """The versions ssl reports map to the numbers of the TLS protocol."""
    assert TLS_VERSIONS == {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        (None, None),
        ((), None),
        ((((("commonName", "a"),),)), "CN=a"),
        (
            ((("countryName", "NL"),), (("organizationName", "Org"),), (("commonName", "svc"),)),
            "CN=svc,O=Org,C=NL",
        ),
        (((("commonName", "a"), ("userId", "7")),), "CN=a+UID=7"),
        (((("emailAddress", "x@y"),),), "emailAddress=x@y"),
        (((("commonName", 'a,b+c"d\\e<f>g;h'),),), 'CN=a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h'),
        (((("commonName", "#x#"),),), "CN=\\#x#"),
        (((("commonName", " x y "),),), "CN=\\ x y\\ "),
        (((("commonName", "a\x00b"),),), "CN=a\\00b"),
        (((("commonName", " "),),), "CN=\\ "),
    ],
    ids=[
        "none",
        "empty",
        "one",
        "order",
        "multi-valued",
        "unknown-key",
        "specials",
        "hash",
        "spaces",
        "nul",
        "space",
    ],
)
def test_a_subject_is_an_rfc4514_name(subject: Any, name: str | None) -> None:
    """The subject reads last RDN first, with short attribute names and RFC 4514 escapes."""
    assert rfc4514_name(subject) == name

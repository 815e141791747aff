"""What a TLS connection tells its scopes: the ASGI ``tls`` extension (TLS extension spec 0.2)."""

from __future__ import annotations

import ssl
from typing import Any

TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304, "TLSv1.1": 0x0302, "TLSv1": 0x0301}
# RFC 4514 short names for the attributes Python reports by long name.
_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def _escape_rdn_value(value: str) -> str:
    """RFC 4514 §2.4 escaping of an attribute value."""
    out = []
    for index, char in enumerate(value):
        edge = index in (0, len(value) - 1)
        if char in ',+"\\<>;' or (char == "#" and index == 0) or (char == " " and edge):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def rfc4514_name(subject: Any) -> str | None:
    """The subject of ``SSLObject.getpeercert()`` as an RFC 4514 string (last RDN first)."""
    if not subject:
        return None
    rdns = []
    for rdn in reversed(subject):
        parts = [f"{_RDN_NAMES.get(key, key)}={_escape_rdn_value(value)}" for key, value in rdn]
        rdns.append("+".join(parts))
    return ",".join(rdns)


def tls_extension(ssl_object: Any, server_cert: str | None, cipher_ids: dict[str, int]) -> dict[str, Any]:
    """The ``tls`` entry of ``scope["extensions"]`` for one connection."""
    chain: list[str] = []
    name = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        getter = getattr(ssl_object, "get_verified_chain", None)  # Python 3.13+
        certs = getter() if getter is not None else None
        chain = [_pem(cert) for cert in certs] if certs else [ssl.DER_cert_to_PEM_cert(der)]
        name = rfc4514_name(ssl_object.getpeercert().get("subject"))
    cipher = ssl_object.cipher()
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        # A certificate that fails verification ends the handshake, so one that is here passed.
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": cipher_ids.get(cipher[0]) if cipher else None,
    }


def _pem(cert: Any) -> str:
    """One certificate of ``get_verified_chain`` (DER bytes, or an object with ``public_bytes``)."""
    if isinstance(cert, bytes | bytearray):
        return ssl.DER_cert_to_PEM_cert(bytes(cert))
    return ssl.DER_cert_to_PEM_cert(cert.public_bytes(2))  # 2: _ssl.ENCODING_DER (1 is PEM)

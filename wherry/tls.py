"""The TLS context from the options: certificate and key, client certificates (mTLS), ciphers,
TLS 1.2 as the lowest version, and ALPN offering h2 before http/1.1.

Unless ``--ssl-ciphers`` says otherwise, TLS 1.2 offers only forward-secret AEAD suites (ECDHE
with AES-GCM or ChaCha20-Poly1305, the Mozilla "intermediate" set); TLS 1.3 suites are all AEAD
already. The key-exchange groups are X25519, P-256 and P-384 where the ``ssl`` module can set a
list of them (``SSLContext.set_groups``); before that it can set only one curve, which would drop
X25519, so OpenSSL's default list stays."""

from __future__ import annotations

import ssl

from .config import Config, ConfigError

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
CERT_REQS.update({"0": ssl.CERT_NONE, "1": ssl.CERT_OPTIONAL, "2": ssl.CERT_REQUIRED})
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
TLS12_CIPHERS = ":".join(
    f"ECDHE-{key}-{cipher}"
    for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for key in ("ECDSA", "RSA")
)
GROUPS = "X25519:P-256:P-384"


class TLSContext:
    """An ``ssl.SSLContext`` for serving and what every connection's scope reports from it."""

    __slots__ = ("cipher_ids", "context", "server_cert")

    def __init__(self, context: ssl.SSLContext, server_cert: str | None) -> None:
        self.context = context
        self.server_cert = server_cert
        # OpenSSL names a cipher suite; the ASGI tls extension wants its IANA number.
        self.cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}


def _first_pem(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_mark = "-----END CERTIFICATE-----"
    end = text.find(end_mark, begin)
    if begin < 0 or end < 0:
        return None
    return text[begin : end + len(end_mark)] + "\n"


def _readable(flag: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it: {exc.strerror}") from None


def create_tls_context(config: Config) -> TLSContext | None:
    """None when no certificate is configured (plain TCP). Raises ConfigError with the reason
    when the files or settings cannot be used."""
    if not config.ssl_certfile:
        if config.ssl_keyfile or config.ssl_ca_certs:
            raise ConfigError("--ssl-keyfile and --ssl-ca-certs need --ssl-certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[config.ssl_min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    for flag, path in (("--ssl-certfile", config.ssl_certfile), ("--ssl-keyfile", config.ssl_keyfile)):
        if path:
            _readable(flag, path)
    try:
        context.load_cert_chain(
            config.ssl_certfile, config.ssl_keyfile or None, config.ssl_keyfile_password or None
        )
    except (OSError, ssl.SSLError) as exc:
        files = config.ssl_certfile + (f" and {config.ssl_keyfile}" if config.ssl_keyfile else "")
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(
            f"--ssl-certfile/--ssl-keyfile: cannot load the certificate and key from {files}: {reason} "
            "(a PEM certificate, and its unencrypted key or --ssl-keyfile-password)"
        ) from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs:
        _readable("--ssl-ca-certs", config.ssl_ca_certs)
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ConfigError(
                f"--ssl-ca-certs {config.ssl_ca_certs}: cannot load CA certificates: {reason}"
            ) from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise ConfigError("--ssl-cert-reqs optional/required needs --ssl-ca-certs")
    try:
        context.set_ciphers(config.ssl_ciphers or TLS12_CIPHERS)
    except ssl.SSLError as exc:
        raise ConfigError(f"--ssl-ciphers: {exc}") from None
    set_groups = getattr(context, "set_groups", None)
    if set_groups is not None:
        set_groups(GROUPS)
    context.set_alpn_protocols(["h2", "http/1.1"] if config.http2 else ["http/1.1"])
    return TLSContext(context, _first_pem(config.ssl_certfile))

"""A certificate for serving the demo over TLS (and so HTTP/2 in a browser) on this machine.

``python -m examples.certificate DIR`` writes ``DIR/ca.pem`` (a certificate authority made for this
machine only), ``DIR/server.pem`` (a certificate for localhost, 127.0.0.1 and ::1, with its
chain) and ``DIR/server.key``, and prints the directory. A browser warns about the authority
unless ``ca.pem`` is imported; curl takes ``--cacert DIR/ca.pem``. Made with ``trustme``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trustme

HOSTS = ("localhost", "127.0.0.1", "::1")


def write_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """Write a new authority and a server certificate for HOSTS; returns (ca, certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Wherry demo")
    server = ca.issue_cert(*HOSTS)
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key_file))
    with cert_file.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".demo-tls")
    write_certificate(target)
    print(target)

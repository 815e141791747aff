"""Wherry's WSGI adapter beside the WSGI-to-ASGI adapters of a2wsgi and asgiref, all served by
Wherry: requests per second on a small GET (wrk), and the server's peak memory while a 200 MB
request body is uploaded and a 200 MB response body is downloaded.

Run with an interpreter that has wherry, a2wsgi and asgiref installed:

    .venv/bin/python -m bench.wsgi_compare [--duration 5] [--size-mb 200]

The server is pinned to CPU 0 and wrk to CPU 1 (when there are two). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "wherry": ["bench.wsgi_apps:app", "--interface", "wsgi"],
    "a2wsgi": ["bench.wsgi_apps:a2wsgi_app"],
    "asgiref": ["bench.wsgi_apps:asgiref_app"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def _request(port: int, head: bytes, body_size: int = 0) -> tuple[bytes, int]:
    """Send ``head`` then ``body_size`` bytes; return the response head and the body size read."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        block = b"u" * 65536
        left = body_size
        while left > 0:
            sock.sendall(block[: min(left, len(block))])
            left -= len(block)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        response_head, _, rest = data.partition(b"\r\n\r\n")
        match = re.search(rb"content-length: *(\d+)", response_head, re.I)
        length = int(match.group(1)) if match else 0
        received = len(rest)
        while received < length:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        return response_head, received


def _wrk(port: int, duration: int, cpu: str | None) -> float:
    command = ["wrk", "-t1", "-c64", f"-d{duration}s", f"http://127.0.0.1:{port}/"]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cpu, *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def measure(name: str, duration: int, size: int) -> dict[str, float]:
    port = _free_port()
    two = (os.cpu_count() or 1) > 1
    command = [
        sys.executable, "-m", "wherry", *VARIANTS[name],
        "--port", str(port), "--no-access-log", "--log-level", "warning", "--lifespan", "off",
    ]  # fmt: skip
    if two and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    proc = subprocess.Popen(command, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _request(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        rps = _wrk(port, duration, "1" if two else None)
        base = _status(proc.pid, "VmRSS")
        start = time.monotonic()
        head, _ = _request(
            port, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size, size
        )
        upload_s = time.monotonic() - start
        assert head.startswith(b"HTTP/1.1 200"), head
        peak_upload = _status(proc.pid, "VmHWM")
        start = time.monotonic()
        head, got = _request(port, b"GET /download?%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
        download_s = time.monotonic() - start
        assert got == size, (got, size)
        peak_download = _status(proc.pid, "VmHWM")
        return {
            "rps": rps,
            "base_mib": base / 1024,
            "upload_peak_mib": peak_upload / 1024,
            "download_peak_mib": peak_download / 1024,
            "upload_mb_s": size / upload_s / 1e6,
            "download_mb_s": size / download_s / 1e6,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    print(
        "| adapter | GET req/s | RSS before (MiB) | peak after upload | peak after download "
        "| upload MB/s | download MB/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.variants.split(","):
        r = measure(name, args.duration, size)
        print(
            f"| {name} | {r['rps']:,.0f} | {r['base_mib']:.1f} | {r['upload_peak_mib']:.1f} "
            f"| {r['download_peak_mib']:.1f} | {r['upload_mb_s']:.0f} | {r['download_mb_s']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

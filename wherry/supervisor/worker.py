"""A worker process started by the supervisor: serve on the inherited sockets until told to stop."""

from __future__ import annotations

import json
import os
import socket

from ..config import Config
from ..main import run_in_process


def main() -> None:
    payload = json.loads(os.environ.pop("WHERRY_WORKER_CONFIG"))
    config = Config(**payload["options"])
    sockets = [socket.socket(fileno=fd) for fd in payload["fds"]]
    for sock in sockets:
        sock.setblocking(False)
    run_in_process(config, sockets)


if __name__ == "__main__":
    main()

"""A worker process started by the supervisor: serve on the inherited sockets until told to stop."""

from __future__ import annotations

import json
import os
import signal
import socket

from ..config import Config
from ..main import run_in_process
from ..sockets import held_signals
from .process import WORKER_ENV


def main() -> None:
    # The supervisor's own signals: a terminal hangup or a resize of the pool is its business.
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    with held_signals():  # until the server's own handlers are in place
        payload = json.loads(os.environ.pop(WORKER_ENV))
        config = Config(**payload["options"])
        sockets = [socket.socket(fileno=fd) for fd in payload["fds"]]
        for sock in sockets:
            sock.setblocking(False)
        control = socket.socket(fileno=payload["control"])
        run_in_process(config, sockets, control)


if __name__ == "__main__":
    main()

"""Running a uvicorn server on a socket we bind ourselves: the local sandbox and the webhook
receiver, in the foreground (a command, until Ctrl-C / SIGTERM) or in a background thread
(tests, or beside another job)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

import uvicorn


def bind(host: str, port: int, *, backlog: int = 256, inheritable: bool = False) -> socket.socket:
    """A listening TCP socket (port 0: an ephemeral port; read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0), or asyncio leaves Nagle on for accepted connections: +40 ms
    # per answer written in two parts (delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(inheritable)
    return sock


def serve_foreground(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve until interrupted. uvicorn re-raises the signal that stopped it once it has shut
    down gracefully; with no-op handlers in place that re-raise does nothing, and the command
    exits 0. The socket is closed and the previous handlers restored on the way out."""
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _stopped(signum: int, frame: Any) -> None:
    """Stand-in handler: the server already stopped gracefully."""


class ServerThread:
    """A uvicorn server in a daemon thread: `start()` returns once it accepts connections,
    `stop()` shuts it down and closes the socket."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket, name: str) -> None:
        self.server, self.sock, self.name = server, sock, name
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"etl-{name}", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # pragma: no cover - reported by start()
            self.error = exc

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                self.sock.close()
                raise RuntimeError(f"the {self.name} did not start: {self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} did not start in time")
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

"""Back-ends that are slow in the ways that defeat per-read timeouts: real TCP servers in threads.

A :class:`SlowPeer` listens on a free local port and, to every connection, misbehaves in one
:class:`Behaviour`: drips the status line and headers a byte at a time, sends headers at once
and drips the body, accepts and never answers, or answers a TLS ClientHello with a handshake
record it drips a byte at a time. Each byte comes inside a 1 s per-read timeout (0.9 s apart by
default), so only a wall-clock deadline ends a 1 s request at 1 s rather than at the next read. The peer counts the connections it saw and how many of
them the client closed (it watches for the client's end of the connection between bytes), so a
test can tell that a timed-out dip left no socket open. :meth:`SlowPeer.close` stops every
connection and joins every thread.
"""

from __future__ import annotations

import enum
import select
import socket
import threading
import time


class Behaviour(enum.Enum):
    """How the peer misbehaves."""

    DRIP_HEADERS = "drip headers"
    DRIP_BODY = "drip body"
    SILENT = "silent"
    DRIP_TLS = "drip tls handshake"


HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
BODY = b'{"name": "' + b"a" * 2000 + b'"}'


class SlowPeer:
    """A misbehaving server, its URL, and what it saw of its clients."""

    def __init__(self, behaviour: Behaviour, interval: float = 0.9) -> None:
        self.behaviour = behaviour
        self.interval = interval
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0
        self.closed_by_client = 0
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self) -> str:
        """The base URL (``https`` for the TLS peer)."""
        scheme = "https" if self.behaviour is Behaviour.DRIP_TLS else "http"
        return f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}"

    def wait_closed(self, count: int, timeout: float = 3.0) -> bool:
        """Wait until clients closed ``count`` connections; ``False`` if they did not in time."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            with self.lock:
                if self.closed_by_client >= count:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """End every connection, stop listening and join every thread."""
        self.stopping.set()
        self.acceptor.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self.lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(2)
            try:
                connection.recv(65536)  # the request, or the TLS ClientHello
                if self.behaviour is Behaviour.DRIP_HEADERS:
                    self._drip(connection, HEADERS + b"X-Filler: " + b"a" * 4000 + b"\r\n\r\n")
                elif self.behaviour is Behaviour.DRIP_BODY:
                    connection.sendall(HEADERS + f"Content-Length: {len(BODY)}\r\n\r\n".encode())
                    self._drip(connection, BODY)
                elif self.behaviour is Behaviour.DRIP_TLS:
                    # A handshake record announcing 16 KiB, whose bytes then come one by one.
                    connection.sendall(b"\x16\x03\x03\x40\x00")
                    self._drip(connection, b"\x02" * 16384)
                else:
                    self._drip(connection, b"")
            except OSError:
                self._client_closed()

    def _drip(self, connection: socket.socket, data: bytes) -> None:
        """Send ``data`` a byte per interval (nothing for an empty one) until the client leaves."""
        at = 0
        while not self.stopping.is_set():
            readable, _, _ = select.select([connection], [], [], self.interval)
            if readable and not connection.recv(65536):
                self._client_closed()
                return
            if at < len(data):
                connection.sendall(data[at : at + 1])
                at += 1

    def _client_closed(self) -> None:
        with self.lock:
            self.closed_by_client += 1

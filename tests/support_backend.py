"""A real HTTP back-end for data-dip tests: ``http.server`` in a thread on a free local port.

Each path misbehaves in one way a customer's back-end can (slow, failing, not JSON, too big,
redirecting) or answers properly, and a test can serve bodies of its own at paths it names
(``Backend.bodies``). :class:`Backend` records every request it served, and
:meth:`Backend.close` releases a held response and joins the server thread, so no socket or
thread outlives the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CUSTOMER = {"name": "Ada Lovelace", "balance": "42 dollars"}
# JSON that decodes to what XML cannot carry: NUL, ESC, a lone surrogate and a non-character.
NOT_XML_JSON = b'{"name": "Ada\\u0000 \\u001bLove\\ud800lace\\uffff", "balance": "42"}'
LARGE_BYTES = 300 * 1024  # over the fetcher's 256 KiB limit


class Backend:
    """The server, its base URL and what it received."""

    def __init__(self, slow_seconds: float = 3.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.bodies: dict[str, bytes] = {}  # JSON bodies a test serves at paths of its own
        self.release = threading.Event()
        self.slow_seconds = slow_seconds
        self.hook: Callable[[], Any] = lambda: CUSTOMER  # what /hook runs; its result is the reply
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        """Let held responses finish, stop serving and close the listening socket."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length) if length else b"")

        def _serve(self, body: bytes | None) -> None:
            backend.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                }
            )
            path = self.path.split("?")[0]
            if path in backend.bodies:
                self._send(200, backend.bodies[path])
            elif path == "/customer":
                self._send(200, json.dumps(CUSTOMER).encode())
            elif path == "/echo":
                received = json.loads(body) if body else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._send(200, json.dumps({"received": received, "headers": headers}).encode())
            elif path == "/slow":
                backend.release.wait(backend.slow_seconds)  # headers come after the timeout
                self._send(200, json.dumps(CUSTOMER).encode())
            elif path == "/error":
                self._send(500, b'{"error": "database on fire"}')
            elif path == "/not-found":
                self._send(404, b'{"error": "no such customer"}')
            elif path == "/html":
                self._send(200, b"<html><body>Maintenance</body></html>", "text/html")
            elif path == "/large":
                filler = "x" * LARGE_BYTES
                self._send(200, json.dumps({"name": "Big", "filler": filler}).encode())
            elif path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/customer")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/not-xml":
                self._send(200, NOT_XML_JSON)
            elif path == "/empty":
                self._send(200, b"")
            elif path == "/hook":
                self._send(200, json.dumps(backend.hook()).encode())
            elif path == "/trickle":
                self._trickle(json.dumps(CUSTOMER).encode())
            else:
                self._send(404, b"{}")

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _trickle(self, body: bytes) -> None:
            """Headers at once, then the body a byte at a time: each read is quick, the whole slow."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body:
                    if backend.release.wait(0.1):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:  # the client gave up: that is the point
                return

    return Handler

"""A webhook receiver for tests: a real HTTP server on loopback that checks Standard Webhooks
signatures and answers each request with the next status of its script."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SLOW = "slow"  # a script step: answer 200, but only after ``slow_seconds``


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    verified: Any  # the parsed body when the signature verified, else None
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class Receiver:
    """Serves on ``url`` until :meth:`stop`; ``script`` says what to answer, then 200 forever."""

    def __init__(self, secret: str, script: list[int | str] | None = None) -> None:
        self.signer = Webhook(secret)
        self.script = list(script or [])
        self.received: list[Received] = []
        self.slow_seconds = 1.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    verified = receiver.signer.verify(body, headers)
                except WebhookVerificationError:
                    verified = None
                with receiver.lock:
                    step = receiver.script.pop(0) if receiver.script else 200
                if step == SLOW:
                    time.sleep(receiver.slow_seconds)
                    step = 200
                status = int(step)
                with receiver.lock:
                    receiver.received.append(Received(headers, body, verified, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/omnivoice"

    @property
    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

"""A live stand-in for Twilio's Messages API, for worker processes ``responses`` cannot reach.

It serves ``POST`` and ``GET .../Accounts/{AC}/Messages.json`` the way Twilio does (a 201 with
the Message resource; the list, newest first), counts the texts it took, and can hold its answer
to a POST (``hold``) so a test can kill the worker while Twilio "is" taking its text. A worker
reaches it through :class:`LocalTwilio`, an SDK HTTP client that sends Twilio's URLs here.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.http.http_client import TwilioHttpClient

TWILIO_API = "https://api.twilio.com"


class LocalTwilio(TwilioHttpClient):
    """The SDK's own HTTP client, pointed at a stand-in instead of ``api.twilio.com``."""

    def __init__(self, base: str) -> None:
        super().__init__(timeout=30)
        self.base = base.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, url.replace(TWILIO_API, self.base), *args, **kwargs)


class MessagesApi:
    """The stand-in's state: the texts taken, and whether answers are held."""

    def __init__(self) -> None:
        self.texts: list[dict[str, str]] = []
        self.posts = 0
        self.lists = 0
        self.hold = threading.Event()  # set: POSTs wait for ``release``
        self.release = threading.Event()
        self.got_post = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> MessagesApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _resource(sid: str, fields: dict[str, str], created: float) -> dict[str, Any]:
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(created))
    return {
        "sid": sid, "to": fields.get("To"), "from": fields.get("From"), "body": fields.get("Body"),
        "status": "queued", "date_created": when, "date_updated": when,
    }  # fmt: skip


def _handler(api: MessagesApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # quiet
            return

        def _reply(self, status: int, document: Any) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fields = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            with api.lock:
                api.posts += 1
                sid = f"SM{api.posts:032d}"
                resource = _resource(sid, fields, time.time())
                api.texts.append({**fields, "sid": sid, "_created": str(time.time())})
            api.got_post.set()
            if api.hold.is_set():
                api.release.wait(30)
            self._reply(201, resource)

        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            with api.lock:
                api.lists += 1
                found = [t for t in api.texts if t.get("To") == query.get("To")]
            items = [_resource(t["sid"], t, float(t["_created"])) for t in reversed(found)]
            self._reply(200, {"messages": items, "next_page_uri": None, "page": 0})

    return Handler

"""Helpers for the console's browser test: the app served over HTTP from the test process, and a
switch that cuts the console's live streams.

The app runs in a threaded werkzeug server in this process (not in a gunicorn of its own), so the
``responses`` mock of Twilio's REST API sees the requests "Take call" makes; the browser, the
simulated calls and the stream all reach it over real HTTP. :class:`StreamCutter` sits in front
of the app: :meth:`StreamCutter.cut` ends every open ``/agent/events`` response (as a dropped
network or a restarted proxy would) and holds the browser's reconnects until
:meth:`StreamCutter.restore`, so a test can make things happen while every console is away.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import REQUIRE_TOPOLOGIES

CHROMIUM = os.environ.get("OMNIVOICE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EVENTS_PATH = "/agent/events"
HOLD_SECONDS = 30.0

StartResponse = Callable[..., Any]


def require_chromium() -> str:
    """The Chromium to drive; skip (fail on CI, ``OMNIVOICE_REQUIRE_TOPOLOGIES=1``) without one."""
    if os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium): the browser test cannot run"
    if REQUIRE_TOPOLOGIES:
        pytest.fail(f"{reason} (OMNIVOICE_REQUIRE_TOPOLOGIES=1)")
    pytest.skip(reason)


class StreamCutter:
    """WSGI middleware that can end every open live stream and hold new ones for a while."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.generation = 0
        self.reconnects: list[str | None] = []  # Last-Event-ID of each stream since the cut
        self.held = 0
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != EVENTS_PATH:
            return self.app(environ, start_response)
        if self.generation:
            if not self._open.is_set():
                with self._lock:
                    self.held += 1
                self._open.wait(HOLD_SECONDS)
            with self._lock:
                self.reconnects.append(environ.get("HTTP_LAST_EVENT_ID"))
        return self._until_cut(self.app(environ, start_response), self.generation)

    def _until_cut(self, body: Iterable[bytes], generation: int) -> Iterator[bytes]:
        try:
            for chunk in body:
                if self.generation != generation:
                    return  # the response ends here: the browser reconnects
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def cut(self) -> None:
        """End the open streams (at their next chunk) and hold the reconnects."""
        self._open.clear()
        self.generation += 1
        self.held = 0
        self.reconnects = []

    def restore(self) -> None:
        """Let the held reconnects (and new ones) through."""
        self._open.set()


class ThreadedServer:
    """A werkzeug server for ``app`` on ``port`` in a daemon thread (one thread a request)."""

    def __init__(self, app: Any, port: int) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def output_dir(tmp_path: Path) -> Path:
    """Where a test's screenshots go."""
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder

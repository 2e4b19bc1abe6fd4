"""HTTP data dips: run an engine :class:`~ivr.turn.HttpRequest` and report a :class:`FetchResult`.

Absolute ``http(s)`` URLs go over the network and finish or fail within the request's timeout,
wall clock: name lookup, connect, TLS handshake, headers and body all share one deadline
(:mod:`data_dips.deadline`), whatever the back-end does. A URL starting with ``/``
is served in-process by the app itself (a bundled demo back-end, for instance): a worker that
called its own server over HTTP could wait on itself forever, so it calls the WSGI app directly.
Any failure (timeout, refused connection, non-2xx status, a body that is not JSON, a body larger
than ``max_bytes``) is a result with ``ok=False`` and a reason, never an exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests
import urllib3
from werkzeug.test import Client

from data_dips.deadline import Budget, dip_session, within
from data_dips.resolver import Resolver, SystemResolver
from ivr.turn import FetchResult, HttpRequest

MAX_BYTES = 256 * 1024


class Fetcher(Protocol):
    """Anything that can run a data dip."""

    def fetch(self, request: HttpRequest) -> FetchResult:
        """Run ``request``; never raise."""
        ...


class HttpFetcher:
    """The real fetcher: ``requests`` for absolute URLs, the local WSGI app for ``/paths``."""

    def __init__(
        self,
        local_app: Callable[..., Any] | None = None,
        session: requests.Session | None = None,
        max_bytes: int = MAX_BYTES,
        resolver: Resolver | None = None,
    ) -> None:
        self.local_app = local_app
        self.session = session or dip_session()
        self.max_bytes = max_bytes
        self.resolver = resolver or SystemResolver()

    def fetch(self, request: HttpRequest) -> FetchResult:
        """Run ``request`` and describe the outcome."""
        if request.url.startswith("/") and not request.url.startswith("//"):
            return self._local(request)
        if not request.url.startswith(("http://", "https://")):
            return _failure(None, f"{request.url!r} is not an http(s) URL")
        budget = Budget(time.monotonic() + request.timeout, self.resolver)
        timed_out = f"timed out after {request.timeout:g}s"
        try:
            with within(budget):
                response = self.session.request(
                    request.method,
                    request.url,
                    json=request.json,
                    headers={"Accept": "application/json", **request.headers},
                    timeout=request.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    body = _read(response, self.max_bytes)
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            return _failure(None, timed_out)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if time.monotonic() >= budget.deadline:  # a timeout that reached us wrapped
                return _failure(None, timed_out)
            return _failure(None, f"request failed: {type(exc).__name__}")
        except ValueError as exc:
            return _failure(None, str(exc))
        return _result(response.status_code, body, self.max_bytes)

    def _local(self, request: HttpRequest) -> FetchResult:
        if self.local_app is None:
            return _failure(None, "relative URLs need the app to serve them")
        client = Client(self.local_app)
        response = client.open(
            request.url, method=request.method, json=request.json, headers=request.headers
        )
        try:
            return _result(response.status_code, response.get_data(), self.max_bytes)
        finally:
            response.close()


def _read(response: requests.Response, max_bytes: int) -> bytes:
    """The body, read as it arrives, refused as soon as it grows past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.raw.read1(8192, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise ValueError(f"response larger than {max_bytes} bytes")
        chunks.append(chunk)


def _result(status: int, body: bytes, max_bytes: int) -> FetchResult:
    if len(body) > max_bytes:
        return _failure(status, "response too large")
    if not 200 <= status < 300:
        return _failure(status, f"HTTP {status}")
    if not body.strip():
        return FetchResult(ok=True, status=status, data=None, at=time.time())
    try:
        # NaN and Infinity are not JSON; some back-ends send them anyway: they read as null, the
        # value a session document can store and give back unchanged.
        data = json.loads(body, parse_constant=lambda _name: None)
    except (ValueError, UnicodeDecodeError):
        return _failure(status, "response is not JSON")
    return FetchResult(ok=True, status=status, data=data, at=time.time())


def _failure(status: int | None, reason: str) -> FetchResult:
    return FetchResult(ok=False, status=status, error=reason, at=time.time())

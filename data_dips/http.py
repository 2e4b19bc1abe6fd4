"""HTTP data dips: run an engine :class:`~ivr.turn.HttpRequest` and report a :class:`FetchResult`.

Absolute ``http(s)`` URLs go over the network and finish or fail within the request's timeout,
wall clock: name lookup, connect, TLS handshake, headers and body all share one deadline
(:mod:`data_dips.deadline`), whatever the back-end does. A URL starting with ``/``
is served in-process by the app itself (a bundled demo back-end, for instance): a worker that
called its own server over HTTP could wait on itself forever, so it calls the WSGI app directly.
WSGI hands an app its path decoded, so there a value's encoded ``/`` (``%2F``) would read as a
separator and an encoded ``..`` as a step up: such a URL is refused, not routed elsewhere.
Any failure (timeout, refused connection, non-2xx status, a body that is not JSON, a body larger
than ``max_bytes``, JSON nested deeper than :data:`MAX_DEPTH`) is a result with ``ok=False`` and
a reason, never an exception.

The nesting limit is checked on the raw body, before anything decodes it: past it, the ``json``
decoder raises ``RecursionError``, orjson refuses to encode the session (at 255 levels), and
templates, event masking and handoff contexts all walk the data recursively. A result within
the limit is safe in every one of them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Protocol
from urllib.parse import unquote

import requests
import urllib3
from werkzeug.test import Client

from data_dips.deadline import Budget, dip_session, within
from data_dips.resolver import Resolver, SystemResolver
from ivr.turn import FetchResult, HttpRequest

MAX_BYTES = 256 * 1024
MAX_DEPTH = 64  # levels of arrays and objects in a data dip's JSON (README: "Data dips")

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LEVEL_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


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
                    data=request.form,  # form-encoded (requests sets the Content-Type)
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
        if _steps_out_in_process(request.url):
            return _failure(None, _STEPS_OUT)
        client = Client(self.local_app)
        response = client.open(
            request.url, method=request.method, json=request.json, data=request.form,
            headers=request.headers,
        )  # fmt: skip
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


_STEPS_OUT = "a value in this in-process URL holds '/' or is '.' or '..', which the app would read as part of the path"


def _steps_out_in_process(url: str) -> bool:
    """True when a path segment of ``url`` decodes to something WSGI would route differently."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    return any(
        "/" in (decoded := unquote(segment)) or decoded in (".", "..")
        for segment in path.split("/")
    )


def _result(status: int, body: bytes, max_bytes: int) -> FetchResult:
    if len(body) > max_bytes:
        return _failure(status, "response too large")
    if not 200 <= status < 300:
        return _failure(status, f"HTTP {status}")
    if not body.strip():
        return FetchResult(ok=True, status=status, data=None, at=time.time())
    if _nests_too_deep(body):
        return _failure(status, f"response nests deeper than {MAX_DEPTH} levels")
    try:
        # NaN and Infinity are not JSON; some back-ends send them anyway: they read as null, the
        # value a session document can store and give back unchanged.
        data = json.loads(body, parse_constant=lambda _name: None)
    except (ValueError, UnicodeDecodeError):
        return _failure(status, "response is not JSON")
    return FetchResult(ok=True, status=status, data=data, at=time.time())


def _nests_too_deep(body: bytes) -> bool:
    """True when arrays and objects nest more than :data:`MAX_DEPTH` levels in the JSON text
    ``body`` (brackets inside strings do not count), found without decoding it: every step runs
    in C, so even a 256 KiB body of brackets costs about 20 ms."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_DEPTH:
        return False  # the usual answer: too few brackets to nest too deep
    return max(accumulate(map(_LEVEL_STEP.__getitem__, brackets))) > MAX_DEPTH


def _failure(status: int | None, reason: str) -> FetchResult:
    return FetchResult(ok=False, status=status, error=reason, at=time.time())

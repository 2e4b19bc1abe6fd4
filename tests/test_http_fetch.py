"""HTTP data dips against a real local back-end, through a whole call and through the fetcher.

A flow written into the test's flows directory looks a customer up at an absolute URL on a
``ThreadingHTTPServer``. Whatever goes wrong there (too slow, HTTP 500, not JSON, too large,
a redirect, nobody listening), the caller hears the node's ``on_error`` path; a good answer is
saved with ``save_as`` and spoken in the next prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask, Response, jsonify, request

from data_dips.http import HttpFetcher
from ivr.turn import HttpRequest
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_backend import CUSTOMER, Backend
from tests.support_twilio import free_port, stored

DIP_NUMBER = "+14155550142"
UNAVAILABLE = "Our records are unavailable right now."

DIP_FLOW = """
id: dips
numbers: ["{number}"]
start: lookup
nodes:
  lookup:
    http: {{url: "{url}", timeout: 500ms, save_as: customer}}
    on_error: unavailable
    next: greet
  greet:
    gather:
      prompt: "Hello {{{{ customer.name }}}}, your balance is {{{{ customer.balance }}}}. Press 1 to end."
    on:
      "1": goodbye
  goodbye:
    say: Goodbye.
    hangup: true
  unavailable:
    say: {unavailable}
    hangup: true
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def dip_call(
    make_app: Callable[..., Flask], flows_dir: Path
) -> Iterator[Callable[[str], tuple[Call, float]]]:
    """Write the dip flow for ``url``, dial it, and say how long the first webhook took."""
    apps: list[Flask] = []

    def run(url: str) -> tuple[Call, float]:
        flow = DIP_FLOW.format(number=DIP_NUMBER, url=url, unavailable=UNAVAILABLE)
        (flows_dir / "dips.yaml").write_text(flow)
        app = make_app()
        apps.append(app)
        call = Call(FlaskTransport(app), AUTH_TOKEN, called=DIP_NUMBER)
        started = time.monotonic()
        call.dial()
        return call, time.monotonic() - started

    yield run
    for app in apps:
        app.extensions["omnivoice.calls"].fetcher.session.close()


def test_successful_dip_is_saved_and_spoken(
    dip_call: Callable[[str], tuple[Call, float]], backend: Backend, redis_client: redis.Redis
) -> None:
    call, _ = dip_call(f"{backend.url}/customer")
    assert call.last_heard == "Hello Ada Lovelace, your balance is 42 dollars. Press 1 to end."
    assert call.gather is not None
    assert stored(redis_client).doc["variables"]["customer"] == CUSTOMER
    assert [r["path"] for r in backend.requests] == ["/customer"]
    assert backend.requests[0]["headers"]["Accept"] == "application/json"
    call.press("1")
    assert call.last_heard == "Goodbye."


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/slow", None, "timed out"),
        ("/error", 500, "HTTP 500"),
        ("/not-found", 404, "HTTP 404"),
        ("/html", 200, "not JSON"),
        ("/large", None, "larger than"),
        ("/redirect", 302, "HTTP 302"),  # redirects are not followed
    ],
)
def test_failed_dip_takes_the_on_error_path(
    dip_call: Callable[[str], tuple[Call, float]],
    backend: Backend,
    redis_client: redis.Redis,
    path: str,
    status: int | None,
    reason: str,
) -> None:
    call, seconds = dip_call(f"{backend.url}{path}")
    assert call.last_heard == UNAVAILABLE
    assert call.ended == "hangup"
    assert call.statuses == [200]
    failure = stored(redis_client).doc["variables"]["http_error"]
    assert failure["status"] == status
    assert reason in failure["error"]
    assert "customer" not in stored(redis_client).doc["variables"]
    assert seconds < 2.0  # the node's 500 ms timeout, not the server's 3 s delay
    assert [r["path"] for r in backend.requests] == [path]


def test_refused_connection_takes_the_on_error_path(
    dip_call: Callable[[str], tuple[Call, float]], redis_client: redis.Redis
) -> None:
    call, _ = dip_call(f"http://127.0.0.1:{free_port()}/customer")
    assert call.last_heard == UNAVAILABLE
    assert call.ended == "hangup"
    assert "request failed" in stored(redis_client).doc["variables"]["http_error"]["error"]


# ---- HttpFetcher directly -----------------------------------------------------------------
class NoNetwork(requests.Session):
    """A requests session that fails the test if the fetcher uses the network."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise AssertionError(f"the network was used: {args} {kwargs}")


@pytest.fixture
def local_app() -> Flask:
    app = Flask("local-backend")

    @app.get("/lookup/<code>")
    def lookup(code: str) -> Response:
        if code != "ABC123":
            return Response('{"error": "unknown"}', 404, mimetype="application/json")
        return jsonify({"code": code, "via": request.headers.get("X-Via")})

    @app.post("/echo")
    def echo() -> Response:
        return jsonify({"received": request.get_json()})

    @app.get("/text")
    def text() -> Response:
        return Response("plain words", 200, mimetype="text/plain")

    return app


@pytest.fixture
def offline(local_app: Flask) -> Iterator[HttpFetcher]:
    session = NoNetwork()
    yield HttpFetcher(local_app=local_app, session=session)
    session.close()


def test_relative_url_is_served_in_process(offline: HttpFetcher) -> None:
    result = offline.fetch(HttpRequest(url="/lookup/ABC123", headers={"X-Via": "fetcher"}))
    assert result.ok
    assert result.status == 200
    assert result.data == {"code": "ABC123", "via": "fetcher"}


def test_relative_post_carries_its_json(offline: HttpFetcher) -> None:
    result = offline.fetch(HttpRequest(url="/echo", method="POST", json={"option": 2}))
    assert result.ok and result.data == {"received": {"option": 2}}


@pytest.mark.parametrize(
    ("url", "status", "reason"),
    [("/lookup/NOPE42", 404, "HTTP 404"), ("/text", 200, "not JSON"), ("/missing", 404, "404")],
)
def test_relative_url_failures_are_results(
    offline: HttpFetcher, url: str, status: int, reason: str
) -> None:
    result = offline.fetch(HttpRequest(url=url))
    assert not result.ok
    assert result.status == status
    assert result.error is not None and reason in result.error


def test_relative_url_without_an_app_is_a_failure() -> None:
    session = NoNetwork()
    result = HttpFetcher(session=session).fetch(HttpRequest(url="/lookup/ABC123"))
    session.close()
    assert not result.ok
    assert result.error is not None and "relative" in result.error


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/customer",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/customer",
        "javascript:alert(1)",
        "customer",
        "//127.0.0.1/customer",  # scheme-relative: not a path on this app, and not http(s)
        "",
    ],
)
def test_non_http_urls_are_refused_without_a_request(offline: HttpFetcher, url: str) -> None:
    result = offline.fetch(HttpRequest(url=url))
    assert not result.ok
    assert result.status is None
    assert result.error is not None and "not an http(s) URL" in result.error


@pytest.fixture
def fetcher() -> Iterator[HttpFetcher]:
    fetcher = HttpFetcher()
    yield fetcher
    fetcher.session.close()


def test_absolute_post_sends_json_and_headers(fetcher: HttpFetcher, backend: Backend) -> None:
    result = fetcher.fetch(
        HttpRequest(
            url=f"{backend.url}/echo",
            method="POST",
            json={"code": "ABC123"},
            headers={"X-Api-Key": "k-123"},
        )
    )
    assert result.ok
    assert result.data["received"] == {"code": "ABC123"}
    assert result.data["headers"]["x-api-key"] == "k-123"
    assert result.data["headers"]["accept"] == "application/json"


def test_empty_success_body_is_ok_without_data(fetcher: HttpFetcher, backend: Backend) -> None:
    result = fetcher.fetch(HttpRequest(url=f"{backend.url}/empty"))
    assert (result.ok, result.status, result.data) == (True, 200, None)


def test_a_smaller_size_limit_is_enforced(backend: Backend) -> None:
    fetcher = HttpFetcher(max_bytes=16)
    result = fetcher.fetch(HttpRequest(url=f"{backend.url}/customer"))
    fetcher.session.close()
    assert not result.ok
    assert result.error is not None and "larger than 16 bytes" in result.error


def test_slow_server_is_cut_off_at_the_timeout(fetcher: HttpFetcher, backend: Backend) -> None:
    started = time.monotonic()
    result = fetcher.fetch(HttpRequest(url=f"{backend.url}/slow", timeout=0.3))
    assert time.monotonic() - started < 1.5
    assert not result.ok
    assert result.error == "timed out after 0.3s"


CHAINED_FLOW = """
id: chained
numbers: ["{number}"]
start: first
nodes:
  first:
    http: {{url: "{url}", timeout: 800ms, save_as: one}}
    on_error: second
    next: second
  second:
    http: {{url: "{url}", timeout: 800ms, save_as: two}}
    on_error: unavailable
    next: done
  done:
    say: Done.
    hangup: true
  unavailable:
    say: {unavailable}
    hangup: true
"""


def test_chained_slow_dips_share_one_webhook_budget(
    make_app: Callable[..., Flask], flows_dir: Path, backend: Backend
) -> None:
    (flows_dir / "chained.yaml").write_text(
        CHAINED_FLOW.format(number=DIP_NUMBER, url=f"{backend.url}/slow", unavailable=UNAVAILABLE)
    )
    app = make_app(WEBHOOK_BUDGET_SECONDS=1.0)
    started = time.monotonic()
    c = Call(FlaskTransport(app), AUTH_TOKEN, called=DIP_NUMBER).dial()
    elapsed = time.monotonic() - started
    assert c.last_heard == UNAVAILABLE
    assert elapsed < 1.4  # not 0.8 + 0.8: the second dip got only what was left


def test_nan_and_infinity_from_a_back_end_read_as_null(offline: HttpFetcher) -> None:
    from data_dips.http import _result

    result = _result(200, b'{"score": NaN, "limit": Infinity, "low": -Infinity}', 1024)
    assert result.ok
    assert result.data == {"score": None, "limit": None, "low": None}

"""What a caller says cannot steer a data dip's URL: values are encoded, and the validator warns.

Through Twilio-signed webhooks a caller answers a speech gather whose answer goes, unchecked,
into a dip's path and query on a real back-end: ``../../admin`` and ``x?admin=1#`` arrive as one
path segment and one query value. ``raw_url`` is the explicit way to put text in as it is. A
path served in-process (WSGI decodes paths) refuses a value holding ``/``. ``flows validate``
warns, at the URL's file:line:col, where a value from the caller reaches a URL through
``raw_url`` or before its path, and where a URL starts with an encoded value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import redis
from flask import Flask

from ivr import templates
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_backend import Backend
from tests.support_twilio import stored
from tests.test_cli import flows_cli, located

NUMBER = "+14155550145"
UNAVAILABLE = "Our records are unavailable right now."
FLOW = """
id: urls
numbers: ["{number}"]
start: ask
nodes:
  ask:
    set: {{base: "{base}"}}
    gather: {{prompt: Which customer?, input: [speech]}}
    save_as: said
    next: lookup
  lookup:
    http: {{url: "{url}", timeout: 2s, save_as: found}}
    on_error: unavailable
    say: Found.
    hangup: true
  unavailable:
    say: {unavailable}
    hangup: true
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    server.bodies["/customers/admin"] = b'{"admin": true}'
    yield server
    server.close()


@pytest.fixture
def answer(
    make_app: Callable[..., Flask], flows_dir: Path, backend: Backend
) -> Callable[[str, str], Call]:
    """Call the flow whose dip URL is ``url`` and say ``said`` at its question."""

    def run(url: str, said: str) -> Call:
        (flows_dir / "urls.yaml").write_text(
            FLOW.format(number=NUMBER, base=backend.url, url=url, unavailable=UNAVAILABLE)
        )
        app = make_app()
        call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
        call.say(said)
        app.extensions["omnivoice.calls"].fetcher.session.close()
        return call

    return run


@pytest.mark.parametrize("said", ["../../admin", "x?admin=1#", "%2E%2E", "a b/c&d=e"])
def test_what_the_caller_said_is_one_path_segment_and_one_query_value(
    answer: Callable[[str, str], Call], backend: Backend, said: str
) -> None:
    call = answer(backend.url + "/customers/{{ said }}?q={{ said }}", said)
    [request] = backend.requests
    path, query, fragment = urlsplit(request["path"])[2:]
    assert path.count("/") == 2 and path.startswith("/customers/"), path
    assert unquote(path.removeprefix("/customers/")) == said
    assert parse_qs(query) == {"q": [said]}
    assert fragment == ""
    assert call.last_heard == UNAVAILABLE  # the back-end knows no such customer: HTTP 404


def test_urlencode_in_a_url_encodes_slashes_too(
    answer: Callable[[str, str], Call], backend: Backend
) -> None:
    answer(backend.url + "/customers/{{ said | urlencode }}", "../admin")
    assert backend.requests[0]["path"] == "/customers/..%2Fadmin"


def test_raw_url_puts_text_in_as_it_is(
    answer: Callable[[str, str], Call], backend: Backend, redis_client: redis.Redis
) -> None:
    call = answer("{{ base | raw_url }}/customers/x/{{ said | raw_url }}", "../admin")
    assert backend.requests[0]["path"] == "/customers/admin"  # the designer asked for it
    assert call.last_heard == "Found."
    assert stored(redis_client).doc["variables"]["found"] == {"admin": True}


@pytest.mark.parametrize("said", ["ABC123/options", "../../demo/api/bookings/ABC123"])
def test_an_in_process_path_refuses_a_value_it_would_read_as_path(
    answer: Callable[[str, str], Call], redis_client: redis.Redis, said: str
) -> None:
    call = answer("/demo/api/bookings/{{ said }}", said)
    assert call.last_heard == UNAVAILABLE
    error = stored(redis_client).doc["variables"]["http_error"]["error"]
    assert "holds '/' or is '.' or '..'" in error


def test_an_in_process_path_still_serves_a_plain_value(
    answer: Callable[[str, str], Call], redis_client: redis.Redis
) -> None:
    call = answer("/demo/api/bookings/{{ said }}", "ABC123")
    assert call.last_heard == "Found."
    assert stored(redis_client).doc["variables"]["found"]["code"] == "ABC123"


# ---- encoding -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("../../admin", "..%2F..%2Fadmin"),
        ("x?admin=1#", "x%3Fadmin%3D1%23"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "%2E%2E%2E"),
        ("a.b", "a.b"),
        ("Zoë & co", "Zo%C3%AB%20%26%20co"),
        ("1+1", "1%2B1"),
        (42, "42"),
        (None, ""),  # nothing, as in a prompt (never the word None)
        ("", ""),
    ],
)
def test_url_values_are_encoded_as_one_component(value: object, encoded: str) -> None:
    assert templates.url_component(value) == encoded
    url = templates.compile_url("https://api.example/v/{{ x }}")
    assert templates.render(url, {"x": value}) == "https://api.example/v/" + encoded


def test_a_missing_value_is_empty_and_prompts_are_not_encoded() -> None:
    assert templates.render(templates.compile_url("/a/{{ x.y }}/b"), {}) == "/a//b"
    assert templates.render(templates.compile_template("{{ x }}"), {"x": "a/b"}) == "a/b"


# ---- flows validate -----------------------------------------------------------------------
WARNED = """\
start: ask
nodes:
  ask:
    gather: {prompt: Code?, input: [speech]}
    save_as: said
    next: derive
  derive:
    set: {shout: "{{ said | upper }}"}
    next: raw
  raw:
    http: {url: "https://api.example/c/{{ said | raw_url }}", save_as: a}
    next: host
  host:
    http:
      url: "https://{{ shout }}.api.example/c"
    next: who
  who:
    http: {url: "{{ env.API }}/c/{{ caller | raw_url }}"}
    next: checked
  checked:
    gather: {prompt: Code?, input: [speech]}
    validate: {pattern: "^[A-Z0-9]{6}$"}
    save_as: code
    next: fine
  fine:
    http: {url: "https://{{ code }}.api.example/c/{{ code | raw_url }}?q={{ said }}"}
    hangup: true
"""


def test_validate_warns_where_caller_values_reach_a_url_unsafely(tmp_path: Path) -> None:
    path = tmp_path / "urls.yaml"
    path.write_text(WARNED, encoding="utf-8")
    result = flows_cli("validate", str(path))
    assert result.returncode == 0, result.stderr  # warnings do not stop a flow
    found = [(w["line"], w["col"], w["msg"]) for w in located(result.stdout)]
    found = [f for f in found if "built-in goodbye" not in f[2]]  # no fallback: not this test's
    assert [(line, col) for line, col, _ in found] == [
        ("11", "17"), ("15", "12"), ("18", "17"), ("18", "17")
    ]  # fmt: skip
    raw, host, start, who = (msg for _, _, msg in found)
    assert raw.startswith("{{ said }} from the caller reaches this URL unencoded through raw_url")
    assert host.startswith("{{ shout }} from the caller stands before this URL's path")
    assert start.startswith("This URL starts with a value")
    assert who.startswith("{{ caller }} from the caller reaches this URL unencoded")

"""Deeply nested JSON from a data dip takes the flow's ``on_error`` path, never the apology.

A real back-end answers arrays nested to a depth the test picks. Up to :data:`MAX_DEPTH` levels
the value goes everywhere a dip's result goes (saved in the session, spoken in a prompt, carried
into a transfer's context, masked and written to the event stream) and the call carries on; one
level more, or 100,000 levels of ``[``, and the caller hears ``on_error`` with the reason kept in
``http_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from conversation.events import MemorySink
from data_dips.http import MAX_DEPTH
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_backend import Backend
from tests.support_twilio import stored

NUMBER = "+14155550144"
UNAVAILABLE = "Our records are unavailable right now."
FLOW = """
id: nesting
numbers: ["{number}"]
sensitive: [pin]
start: lookup
nodes:
  lookup:
    set: {{pin: "4321"}}
    http: {{url: "{url}/deep", timeout: 2s, save_as: deep}}
    on_error: unavailable
    say: "Found {{{{ deep }}}}."
    transfer: {{queue: support, context: [deep, pin]}}
  unavailable:
    say: {unavailable}
    hangup: true
"""


def nested(depth: int) -> bytes:
    return b"[" * (depth - 1) + b'["x"]' + b"]" * (depth - 1)


@pytest.fixture
def dial(
    make_app: Callable[..., Flask], flows_dir: Path
) -> Iterator[Callable[[bytes], tuple[Call, MemorySink]]]:
    backend = Backend()

    def run(body: bytes) -> tuple[Call, MemorySink]:
        backend.bodies["/deep"] = body
        (flows_dir / "nesting.yaml").write_text(
            FLOW.format(number=NUMBER, url=backend.url, unavailable=UNAVAILABLE)
        )
        sink = MemorySink()
        app = make_app(EVENT_SINKS=(sink,))
        call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
        app.extensions["omnivoice.calls"].fetcher.session.close()
        return call, sink

    yield run
    backend.close()


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    return depth


def test_json_at_the_depth_limit_goes_everywhere_a_result_goes(
    dial: Callable[[bytes], tuple[Call, MemorySink]], redis_client: redis.Redis
) -> None:
    call, sink = dial(nested(MAX_DEPTH))
    assert call.ended == "enqueue"
    assert call.last_heard == "Found " + "[" * MAX_DEPTH + "'x'" + "]" * MAX_DEPTH + "."
    assert _depth(stored(redis_client).doc["variables"]["deep"]) == MAX_DEPTH
    handoff = next(e for e in sink.events if e.name.value == "handoff")
    assert _depth(handoff.data["bundle"]["context"]["deep"]) == MAX_DEPTH
    assert handoff.data["bundle"]["context"]["pin"] == "***"


@pytest.mark.parametrize(
    "body",
    [nested(MAX_DEPTH + 1), b"[" * 100_000, b'{"a":' * 40_000 + b"1" + b"}" * 40_000],
    ids=["one level too deep", "100,000 levels of [", "40,000 nested objects"],
)
def test_deeper_json_takes_the_on_error_path(
    dial: Callable[[bytes], tuple[Call, MemorySink]], redis_client: redis.Redis, body: bytes
) -> None:
    call, _ = dial(body)
    assert call.statuses == [200]
    assert call.last_heard == UNAVAILABLE
    assert call.ended == "hangup"
    failure = stored(redis_client).doc["variables"]["http_error"]
    assert failure == {"status": 200, "error": f"response nests deeper than {MAX_DEPTH} levels"}
    assert "deep" not in stored(redis_client).doc["variables"]


@pytest.mark.parametrize(
    "body",
    [b'{"note": "' + b"[" * 5_000 + b'", "ok": [1]}', b'["\\"' + b"[{" * 3000 + b'"]'],
    ids=["brackets in a string", "after an escaped quote"],
)
def test_brackets_inside_strings_do_not_count(
    dial: Callable[[bytes], tuple[Call, MemorySink]], redis_client: redis.Redis, body: bytes
) -> None:
    call, _ = dial(body)
    assert call.ended == "enqueue"
    assert "deep" in stored(redis_client).doc["variables"]

"""The integration API's handoff endpoints: a real call is handed over, then its bundle is fetched.

Real Redis on every topology, the call placed through the signed Twilio front by the simulator,
and the bundles compared with the ones the engine put on the event stream (what every other
reader of the handoff sees) and with the bundle's JSON Schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from context.event_stream import EventStream
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, app_for_tests
from tests.support_twilio import free_port

TOKEN = "api-token-for-handoff-tests"
PIN = "8642"
SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "docs" / "handoff-bundle.schema.json").read_text()
)
UNKNOWN_SID = "CA" + "e" * 32
UNKNOWN_ID = "HO" + "e" * 32

HANDOFF_FLOW = """\
id: bank
numbers: ["+14155550100"]
default: true
sensitive: [pin]
start: pin
nodes:
  pin:
    description: PIN entry
    gather: {prompt: Key in your PIN., num_digits: 4}
    validate: {pattern: "^[0-9]{4}$"}
    save_as: pin
    next: topic
  topic:
    description: what the call is about
    gather: {prompt: Press 1 for a lost card., num_digits: 1}
    on: {"1": agent}
  agent:
    transfer:
      queue: cards
      context: [pin]
      reason: "lost card, PIN {{ pin }} given"
"""


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    for path in flows_dir.glob("*.yaml"):
        path.unlink()
    (flows_dir / "bank.yaml").write_text(HANDOFF_FLOW)
    return make_app(API_TOKEN=TOKEN)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def handed_over(app: Flask) -> Call:
    """A caller keys their PIN, asks about a lost card and is put in the queue."""
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press(PIN).press("1")
    assert call.ended == "enqueue"
    return call


def engine_bundles(app: Flask) -> list[dict[str, Any]]:
    """The bundles of the handoff events on the event stream, oldest first."""
    stream: EventStream = app.extensions["omnivoice.events"]
    stream.ensure_group("api-test")
    events = [entry.event for entry in stream.read("api-test", "reader", count=1000)]
    return [e["data"]["bundle"] for e in events if e["name"] == "handoff"]


def test_both_endpoints_return_the_bundle_the_engine_built(app: Flask) -> None:
    call = handed_over(app)
    [built] = engine_bundles(app)
    client = app.test_client()
    by_call = client.get(f"/api/calls/{call.call_sid}/handoff", headers=bearer())
    assert by_call.status_code == 200, by_call.get_data(as_text=True)
    assert by_call.mimetype == "application/json"
    assert by_call.headers["Cache-Control"] == "no-store"
    assert by_call.get_json() == built
    by_id = client.get(f"/api/handoffs/{built['id']}", headers=bearer())
    assert by_id.status_code == 200
    assert by_id.get_json() == built
    assert by_id.headers["Cache-Control"] == "no-store"
    body = by_id.get_json()
    Draft202012Validator(SCHEMA).validate(body)
    assert (body["call_sid"], body["route"]) == (
        call.call_sid,
        {"kind": "queue", "target": "cards"},
    )
    assert [step["node"] for step in body["path"]] == ["pin", "topic", "agent"]


def test_sensitive_values_never_reach_the_api(app: Flask) -> None:
    call = handed_over(app)
    client = app.test_client()
    body = client.get(f"/api/calls/{call.call_sid}/handoff", headers=bearer())
    text = body.get_data(as_text=True)
    assert PIN not in text
    found = body.get_json()
    assert found["inputs"]["pin"] == "***"
    assert found["context"] == {"pin": "***"}
    assert found["reason"] == "lost card, PIN *** given"
    assert PIN not in client.get(f"/api/handoffs/{found['id']}", headers=bearer()).get_data(
        as_text=True
    )


def test_unknown_ids_are_404_json(app: Flask) -> None:
    client = app.test_client()
    for url in (f"/api/calls/{UNKNOWN_SID}/handoff", f"/api/handoffs/{UNKNOWN_ID}"):
        answer = client.get(url, headers=bearer())
        assert answer.status_code == 404
        assert "expired" in answer.get_json()["error"]
        assert answer.headers["Cache-Control"] == "no-store"


def test_a_call_that_was_never_handed_over_is_404(app: Flask) -> None:
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press(PIN)  # still in the menu
    answer = app.test_client().get(f"/api/calls/{call.call_sid}/handoff", headers=bearer())
    assert answer.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/api/calls/CA123/handoff",
        "/api/calls/" + "CA" + "E" * 32 + "/handoff",  # upper case is not how Twilio writes it
        "/api/calls/" + "XX" + "e" * 32 + "/handoff",
        "/api/calls/" + "CA" + "e" * 33 + "/handoff",
        "/api/handoffs/HO123",
        "/api/handoffs/" + "ho" + "e" * 32,
        "/api/handoffs/" + "HO" + "g" * 32,
        "/api/handoffs/" + "CA" + "e" * 32,
    ],
)
def test_a_malformed_id_is_400_json(app: Flask, url: str) -> None:
    answer = app.test_client().get(url, headers=bearer())
    assert answer.status_code == 400
    assert "32 lowercase hex digits" in answer.get_json()["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_without_the_right_bearer_token_it_is_401(app: Flask, headers: dict[str, str]) -> None:
    call = handed_over(app)
    answer = app.test_client().get(f"/api/calls/{call.call_sid}/handoff", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "bundle" not in answer.get_data(as_text=True)
    assert set(answer.get_json()) == {"error"}


def agent_cookie(app: Flask, client: FlaskClient) -> None:
    """Give ``client`` a session cookie signed with the app's secret that names an agent."""
    interface = app.session_interface
    value = interface.get_signing_serializer(app).dumps({"agent": "grace"})  # type: ignore[attr-defined]
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    # The cookie is one the app accepts: its session holds the agent.
    with app.test_request_context(
        headers={"Cookie": f"{app.config['SESSION_COOKIE_NAME']}={value}"}
    ) as context:
        assert interface.open_session(app, context.request) == {"agent": "grace"}


def test_a_console_session_cookie_does_not_open_the_api(app: Flask) -> None:
    call = handed_over(app)
    client = app.test_client()
    agent_cookie(app, client)
    answer = client.get(f"/api/calls/{call.call_sid}/handoff")
    assert answer.status_code == 401
    assert client.get(f"/api/calls/{call.call_sid}/handoff", headers=bearer()).status_code == 200


def test_without_an_api_token_configured_the_api_is_off(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(API_TOKEN=None)
    answer = app.test_client().get(f"/api/handoffs/{UNKNOWN_ID}", headers=bearer())
    assert answer.status_code == 503
    assert "API_TOKEN" in answer.get_json()["error"]


@pytest.mark.parametrize(
    "url", [f"/api/calls/{UNKNOWN_SID}/handoff", f"/api/handoffs/{UNKNOWN_ID}"]
)
def test_redis_down_is_503_json(flows_dir: Path, url: str) -> None:
    nothing_there = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    app = app_for_tests(flows_dir, REDIS_CLIENT=nothing_there, API_TOKEN=TOKEN)
    answer = app.test_client().get(url, headers=bearer())
    assert answer.status_code == 503
    assert "Redis did not answer" in answer.get_json()["error"]
    assert answer.headers["Cache-Control"] == "no-store"

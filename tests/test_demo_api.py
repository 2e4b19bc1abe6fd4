"""The demo airline back-end (``/demo/api``): served in dev mode or when asked for, never a 5xx.

It is reached through the app's own WSGI stack (the Twilio front passes its paths to Flask), and
the demo flow reaches it as an in-process data dip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import demo_api_wanted, settings_from_env
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, on_topologies

BOOKING = "/demo/api/bookings/ABC123"
REBOOK = f"{BOOKING}/rebook"

pytestmark = on_topologies("single")  # the back-end keeps nothing in Redis


@pytest.mark.parametrize(
    ("environ", "dev_mode", "served"),
    [
        ({}, False, False),  # production, not asked for
        ({}, True, True),  # dev mode
        ({"DEMO_API": "1"}, False, True),  # production, asked for
        ({"DEMO_API": "off"}, True, False),  # dev mode, turned off
    ],
)
def test_served_in_dev_mode_or_when_asked_for(
    make_app: Callable[..., Flask], environ: dict[str, str], dev_mode: bool, served: bool
) -> None:
    wanted = settings_from_env(environ)["DEMO_API"]
    assert demo_api_wanted({"DEMO_API": wanted, "DEV_MODE": dev_mode}) is served
    client = make_app(DEMO_API=wanted, DEV_MODE=dev_mode).test_client()
    reply = client.get(BOOKING)
    assert reply.status_code == (200 if served else 404)
    if served:
        assert reply.get_json()["flight"] == "OV 101"


def test_the_demo_flow_looks_a_booking_up_in_dev_mode(make_app: Callable[..., Flask]) -> None:
    app = make_app(DEMO_API=None, DEV_MODE=True)  # as OMNIVOICE_DEV=1 alone sets it
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press("1")
    call.say("A B C 1 2 3")
    assert "OV 101 from San Francisco to New York is delayed" in call.last_heard


def test_a_production_server_s_demo_flow_takes_its_error_path(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(DEMO_API=None)
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press("1")
    call.say("A B C 1 2 3")
    assert "OV 101" not in call.last_heard


@pytest.fixture
def demo(make_app: Callable[..., Flask]) -> Any:
    return make_app(DEMO_API=None, DEV_MODE=True).test_client()


def test_a_good_rebooking_moves_the_booking(demo: Any) -> None:
    for option, flight in ((1, "OV 105"), ("2", "OV 109")):
        reply = demo.post(REBOOK, json={"option": option})
        assert reply.status_code == 200
        assert reply.get_json() == {
            "code": "ABC123",
            "rebooked": True,
            "flight": flight,
            "departs": "1:10 PM" if option == 1 else "5:45 PM",
        }


def test_a_rebooking_can_name_the_flight_picked_on_a_page(demo: Any) -> None:
    reply = demo.post(REBOOK, json={"flight": "OV 109"})
    assert reply.status_code == 200
    assert reply.get_json()["flight"] == "OV 109" and reply.get_json()["departs"] == "5:45 PM"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[1]", "application/json"),  # a JSON list: once a 500
        (b'"option"', "application/json"),
        (b"1", "application/json"),
        (b"null", "application/json"),
        (b'{"option": true}', "application/json"),  # true == 1 in Python
        (b'{"option": 1.0}', "application/json"),
        (b'{"option": [1]}', "application/json"),
        (b'{"option": {"1": 1}}', "application/json"),
        (b'{"option": 3}', "application/json"),
        (b'{"flight": "OV 999"}', "application/json"),
        (b'{"flight": ["OV 105"]}', "application/json"),
        (b'{"flight": null}', "application/json"),
        (b"{", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"option": 1}', "text/plain"),
        (b"", "application/json"),
    ],
)
def test_a_bad_rebooking_body_is_a_400_with_a_json_error(
    demo: Any, body: bytes, content_type: str
) -> None:
    reply = demo.post(REBOOK, data=body, content_type=content_type)
    assert reply.status_code == 400
    assert reply.mimetype == "application/json"
    assert reply.get_json()["error"].endswith(".")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/demo/api/bookings/NOPE42", 404),
        ("POST", "/demo/api/bookings/NOPE42/rebook", 404),
        ("GET", "/demo/api/bookings/NOPE42/options", 404),
        ("GET", REBOOK, 405),
        ("DELETE", BOOKING, 405),
        ("GET", "/demo/api/nothing/here", 404),
    ],
)
def test_other_refusals_are_json_too(demo: Any, method: str, path: str, status: int) -> None:
    reply = demo.open(path, method=method, json={"option": 1})
    assert reply.status_code == status
    assert reply.mimetype == "application/json"
    assert reply.get_json()["error"]


def test_paths_outside_the_demo_keep_flask_s_own_refusals(demo: Any) -> None:
    reply = demo.get("/no/such/page")
    assert reply.status_code == 404
    assert reply.mimetype == "text/html"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    JSON_VALUES.map(lambda value: json.dumps({"option": value}).encode()),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
)
CODES = st.one_of(st.sampled_from(["ABC123", "xyz789", "QRS456"]), st.text(max_size=12))


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(code=CODES, body=BODIES, content_type=CONTENT_TYPES)
def test_no_request_body_makes_a_5xx(demo: Any, code: str, body: bytes, content_type: str) -> None:
    path = f"/demo/api/bookings/{code}/rebook"
    reply = demo.post(path, data=body, content_type=content_type)
    assert reply.status_code < 500
    if reply.status_code >= 400:
        assert reply.mimetype == "application/json"
        assert reply.get_json()["error"]

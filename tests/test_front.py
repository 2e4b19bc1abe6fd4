"""The Twilio front (webhooks.front): one route table, one signature guard, one failure policy each.

Routes here are registered by the test itself, the way a new channel module (SMS, recordings,
dial and queue callbacks) will register its own, on the app's front and on a bare one.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from tests.conftest import AUTH_TOKEN
from tests.support_twilio import LOCAL, sign
from webhooks import front
from webhooks.front import (
    EMPTY_MESSAGING,
    NO_CONTENT,
    BadRequest,
    FrontSettings,
    Reply,
    Route,
    TwilioFront,
)
from webhooks.request import WebhookRequest

SMS = {"MessageSid": "SM" + "1" * 32, "From": "+14155550123", "To": "+14155550100", "Body": "hi"}


def _flask(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"flask"]


def _echo(request: WebhookRequest) -> Reply:
    return front.twiml(f"<Response><Message>{request.fields()['Body']}</Message></Response>")


def _broken(request: WebhookRequest) -> Reply:
    raise RuntimeError("the view failed")


def _bare(**settings: Any) -> tuple[TwilioFront, Client]:
    edge = TwilioFront(_flask, FrontSettings(**{"auth_token": AUTH_TOKEN, **settings}))
    return edge, Client(edge)


def _post(client: Client, path: str, fields: dict[str, str], signed_for: str | None = None) -> Any:
    signature = sign(signed_for or LOCAL + path, fields)
    return client.post(path, data=fields, headers={"X-Twilio-Signature": signature})


def test_a_registered_route_is_served_and_other_paths_go_to_flask() -> None:
    edge, client = _bare()
    edge.register(Route("/sms", "sms.incoming", _echo, EMPTY_MESSAGING))
    answered = _post(client, "/sms", SMS)
    assert answered.status_code == 200
    assert ET.fromstring(answered.get_data()).find("Message").text == "hi"
    assert client.get("/healthz").get_data() == b"flask"
    assert edge.route("/sms").endpoint == "sms.incoming"
    assert [r.path for r in edge.routes] == ["/sms"]


def test_a_path_is_registered_once() -> None:
    edge, _ = _bare()
    edge.register(Route("/sms", "sms.incoming", _echo, EMPTY_MESSAGING))
    with pytest.raises(ValueError, match="/sms is already served"):
        edge.register(Route("/sms", "sms.other", _echo, NO_CONTENT))


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": "forged"}, {"X-Twilio-Signature": sign(LOCAL + "/other", SMS)}],
    ids=["missing", "forged", "signed-for-another-url"],
)
def test_a_route_registered_by_a_channel_module_gets_the_guard(
    make_app: Any, headers: dict[str, str]
) -> None:
    app: Flask = make_app()
    served: list[WebhookRequest] = []

    def view(request: WebhookRequest) -> Reply:
        served.append(request)
        return EMPTY_MESSAGING

    path = "/example-channel"  # a channel of its own (the app serves /sms already)
    app.extensions["omnivoice.front"].register(Route(path, "example", view, EMPTY_MESSAGING))
    client = app.test_client()
    assert client.post(path, data=SMS, headers=headers).status_code == 403
    assert not served
    assert _post(client, path, SMS).status_code == 200
    assert len(served) == 1


def test_dev_mode_serves_unsigned_requests_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    edge, client = _bare(auth_token=None, dev_mode=True)
    edge.register(Route("/sms", "sms.incoming", _echo, EMPTY_MESSAGING))
    with caplog.at_level(logging.WARNING, logger="webhooks.signature"):
        assert client.post("/sms", data=SMS).status_code == 200
    assert "DEV MODE" in caplog.text


@pytest.mark.parametrize(
    ("failure", "status", "body"),
    [
        (EMPTY_MESSAGING, 200, b"<Response />"),
        (NO_CONTENT, 204, b""),
        (front.twiml("<Response><Say>Sorry.</Say></Response>"), 200, b"<Say>Sorry.</Say>"),
    ],
    ids=["sms-empty-messaging-twiml", "status-callback-204", "voice-apology"],
)
def test_a_failing_view_answers_its_routes_failure_reply(
    failure: Reply, status: int, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    edge, client = _bare()
    edge.register(Route("/sms", "sms.incoming", _broken, failure))
    with caplog.at_level(logging.ERROR, logger="omnivoice.front"):
        answered = _post(client, "/sms", SMS)
    assert answered.status_code == status
    assert body in answered.get_data()
    assert "unexpected failure on /sms" in caplog.text


def test_the_empty_messaging_reply_is_messaging_twiml_that_sends_nothing() -> None:
    root = ET.fromstring(EMPTY_MESSAGING.body)
    assert root.tag == "Response"
    assert list(root) == []
    assert EMPTY_MESSAGING.content_type.startswith("text/xml")


def test_bad_requests_get_their_4xx_on_every_route() -> None:
    def picky(request: WebhookRequest) -> Reply:
        raise BadRequest(400, "MessageSid is missing")

    edge, client = _bare()
    edge.register(Route("/sms", "sms.incoming", picky, EMPTY_MESSAGING))
    refused = _post(client, "/sms", SMS)
    assert refused.status_code == 400
    assert "MessageSid is missing" in refused.get_data(as_text=True)
    wrong_method = client.get("/sms")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
    huge = client.post("/sms", data={"Body": "x" * (65 * 1024)})
    assert huge.status_code == 413


def test_each_endpoint_is_timed_under_its_name() -> None:
    from webhooks import metrics

    edge, client = _bare()
    edge.register(Route("/sms/status", "sms.status", lambda request: NO_CONTENT, NO_CONTENT))
    sample = ("omnivoice_webhook_seconds_count", {"endpoint": "sms.status"})

    def count() -> float:
        for family in metrics.WEBHOOK_SECONDS.collect():
            for s in family.samples:
                if (s.name, s.labels) == sample:
                    return s.value
        return 0.0

    before = count()
    assert _post(client, "/sms/status", SMS).status_code == 204
    assert count() == before + 1


def test_a_mounted_front_gives_views_the_mount_point() -> None:
    roots: list[str] = []

    def view(request: WebhookRequest) -> Reply:
        roots.append(request.root)
        return EMPTY_MESSAGING

    edge, _ = _bare()
    edge.register(Route("/sms", "sms.incoming", view, EMPTY_MESSAGING))
    client = Client(edge)
    signature = sign(LOCAL + "/ov/sms", SMS)
    answered = client.post(
        "/sms",
        data=SMS,
        headers={"X-Twilio-Signature": signature},
        environ_overrides={"SCRIPT_NAME": "/ov", "PATH_INFO": "/sms", "RAW_URI": "/ov/sms"},
    )
    assert answered.status_code == 200
    assert roots == ["/ov"]
    public, public_client = _bare(public_base_url="https://voice.example.com/gw/")
    public.register(Route("/sms", "sms.incoming", view, EMPTY_MESSAGING))
    assert _post(public_client, "/sms", SMS, "https://voice.example.com/gw/sms").status_code == 200
    assert roots == ["/ov", "/gw"]

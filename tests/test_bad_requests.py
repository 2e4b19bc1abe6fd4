"""Requests Twilio would never send get a clear 4xx, not a flow."""

from __future__ import annotations

from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import AUTH_TOKEN


@pytest.mark.parametrize("path", ["/voice", "/voice/answer?step=0", "/voice/status"])
def test_signed_request_without_call_sid_is_a_400(client: Any, path: str) -> None:
    url = f"http://localhost{path}"
    form = {"From": "+14155550123", "To": "+14155550100"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    response = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 400
    assert "CallSid is missing" in response.get_data(as_text=True)


def test_get_on_a_webhook_is_405(client: Any) -> None:
    assert client.get("/voice").status_code == 405


def test_a_public_base_url_with_a_path_prefixes_every_action(make_app: Any) -> None:
    import xml.etree.ElementTree as ET

    app = make_app(PUBLIC_BASE_URL="https://voice.example.com/ov")
    form = {"CallSid": "CA" + "7" * 32, "From": "+14155550123", "To": "+14155550100"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        "https://voice.example.com/ov/voice", form
    )
    response = app.test_client().post(
        "/voice", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200
    root = ET.fromstring(response.get_data())
    action = root.find("Gather").get("action")
    assert action.startswith("/ov/voice/answer?step=")
    assert root.find("Redirect").text == action


@pytest.mark.parametrize("step", ["-2", "2147483648", "7" * 120])
def test_a_step_no_answer_url_names_is_a_400_and_changes_nothing(
    client: Any, redis_client: Any, step: str
) -> None:
    from tests.support_twilio import keys_under

    form = {"CallSid": "CA" + "8" * 32, "From": "+14155550123", "To": "+14155550100"}
    validator = RequestValidator(AUTH_TOKEN)
    dial = client.post(
        "http://localhost/voice",
        data=form,
        headers={"X-Twilio-Signature": validator.compute_signature("http://localhost/voice", form)},
    )
    assert dial.status_code == 200
    before = {key: redis_client.dump(key) for key in keys_under(redis_client)}
    url = f"http://localhost/voice/answer?step={step}"
    answer = {**form, "Digits": "1"}
    response = client.post(
        url, data=answer, headers={"X-Twilio-Signature": validator.compute_signature(url, answer)}
    )
    assert response.status_code == 400
    assert "step out of range" in response.get_data(as_text=True)
    assert {key: redis_client.dump(key) for key in keys_under(redis_client)} == before

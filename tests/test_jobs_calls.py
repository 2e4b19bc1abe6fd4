"""A whole call whose flow texts a link: the text goes from the turn's save through the relay and
a real Dramatiq worker (Redis broker) to Twilio (the SDK, its HTTP mocked), and the flow reads
the outcome at its next step (``{{ sms.status }}``), Twilio's delivery callback included."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask

from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, REDIS_URL, on_topologies
from tests.support_jobs import (
    BASE,
    CALLER,
    MESSAGES_URL,
    form_of,
    mock_created,
    runtime,
    sending_app,
)
from tests.support_twilio import post

pytestmark = [on_topologies("single"), pytest.mark.timeout(60)]

FLOW = """\
    id: texter
    numbers: ["+14155550100"]
    start: intro
    pages:
      flights:
        title: Pick a new flight
        choices: {field: flight, items: options, value: "{{ item }}", label: "{{ item }}"}
    nodes:
      intro:
        set: {options: [OV 105, OV 109]}
        send_sms: {body: "Pick a flight: {{ link('flights') }}"}
        say: I've texted you a link.
        next: ask
      ask:
        gather: {prompt: "Your text is {{ sms.status }}. Press 1 to hear it again.", num_digits: 1}
        on: {"1": ask}
"""


@pytest.fixture
def texter(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "texter.yaml").write_text(textwrap.dedent(FLOW))
    app = sending_app(
        make_app,
        tmp_path,
        QUEUE_BROKER=None,
        QUEUE_URL=REDIS_URL,
        QUEUE_BROKER_OPTIONS={"heartbeat_timeout_ms": 1500},
    )
    yield app
    runtime(app).close()


def _heard_until(call: Call, text: str, seconds: float = 15.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        call.press("1")
        heard = call.heard[-1]
        if text in heard or time.monotonic() > deadline:
            return heard
        time.sleep(0.1)


def test_the_flow_hears_that_its_text_was_sent_then_delivered(texter: Flask) -> None:
    with responses.RequestsMock() as rsps:
        mock_created(rsps, "SM" + "6" * 32)
        runtime(texter).start(worker_threads=1)
        call = Call(FlaskTransport(texter), AUTH_TOKEN, base_url=BASE).dial()
        assert "Your text is queued" in call.heard[-1]
        assert "Your text is sent" in _heard_until(call, "is sent")
        [sent] = rsps.calls
        fields = form_of(sent)
        assert rsps.calls[0].request.url == MESSAGES_URL
    assert fields["To"] == CALLER and fields["Body"].startswith(f"Pick a flight: {BASE}/p/")
    callback = urlsplit(fields["StatusCallback"])
    path = f"{callback.path}?{callback.query}"
    status = {"MessageSid": "SM" + "6" * 32, "MessageStatus": "delivered"}
    answer = post(texter.test_client(), path, status, signed_url=BASE + path)
    assert answer.status_code == 204
    assert parse_qs(callback.query)["s"] == [call.call_sid]
    assert "Your text is delivered" in _heard_until(call, "is delivered", 2.0)


def test_a_number_twilio_refuses_is_heard_as_failed(texter: Flask) -> None:
    with responses.RequestsMock() as rsps:
        body = {
            "code": 21211,
            "message": "The 'To' number is not a valid phone number.",
            "status": 400,
        }
        rsps.add(responses.POST, MESSAGES_URL, json=body, status=400)
        runtime(texter).start(worker_threads=1)
        call = Call(FlaskTransport(texter), AUTH_TOKEN, base_url=BASE).dial()
        assert "Your text is failed" in _heard_until(call, "is failed")
        assert len(rsps.calls) == 1

"""A real gunicorn (two gthread workers) on real Redis, driven over HTTP like Twilio drives it.

The server runs ``app:app`` from the environment alone, as in production. A whole demo call goes
through it (each request may land on either worker), with the in-process data dip to the bundled demo
back-end, and the status callback at the end. The test's keys are deleted afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from twilio.request_validator import RequestValidator

from simulator import Call, HttpTransport
from tests.conftest import REDIS_URL, REPO
from tests.support_twilio import form, free_port

TOKEN = "live-server-token-" + uuid.uuid4().hex
START_SECONDS = 20.0
CLEARED_ENV = (
    "PUBLIC_BASE_URL",
    "TRUST_PROXY",
    "OMNIVOICE_DEV",
    "DEFAULT_FLOW",
    "FLOW_ENV",
    "FALLBACK_NUMBER",
    "FALLBACK_QUEUE",
    "PROMETHEUS_MULTIPROC_DIR",
    "DEMO_API",
)


@dataclass(frozen=True)
class LiveServer:
    """A running gunicorn: where it listens, its Redis key prefix and a client for that Redis."""

    base_url: str
    prefix: str
    redis: redis.Redis
    log: Path


def _gunicorn() -> str:
    beside_python = Path(sys.executable).with_name("gunicorn")
    return str(beside_python if beside_python.exists() else REPO / ".venv" / "bin" / "gunicorn")


def _wait_for_health(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    with requests.Session() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
            try:
                if session.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # still booting
                pass
            time.sleep(0.1)
    pytest.fail(f"gunicorn did not become healthy in {START_SECONDS:g}s:\n{log.read_text()}")


def _delete(connection: redis.Redis, prefix: str) -> None:
    keys = list(connection.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        connection.delete(*keys)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    prefix = f"test-live-{uuid.uuid4().hex[:12]}"
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=prefix,
        TWILIO_AUTH_TOKEN=TOKEN,
        FLOWS_DIR=str(REPO / "flows"),
        LOG_FORMAT="text",
        DEMO_API="1",  # the demo flow's data dips, asked for as a production server must
    )
    command = [
        _gunicorn(),
        "--workers", "2",
        "--worker-class", "gthread",
        "--threads", "4",
        "--bind", f"127.0.0.1:{port}",
        "app:app",
    ]  # fmt: skip
    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base_url, process, log)
        yield LiveServer(base_url, prefix, connection, log)
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown; TERM waits ~2 s
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        _delete(connection, prefix)
        connection.close()


@pytest.fixture
def transport() -> Iterator[HttpTransport]:
    http = HttpTransport(timeout=15)
    yield http
    http.session.close()


def test_whole_demo_call_over_http(live_server: LiveServer, transport: HttpTransport) -> None:
    call = Call(transport, TOKEN, caller="+14155550161", base_url=live_server.base_url)
    call.dial()
    gather = call.last.find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf speech"
    assert gather.get("numDigits") == "1"
    assert "For flight status, press 1 or say status." in call.last_heard

    call.press("1")
    gather = call.last.find("Gather")
    assert gather is not None and gather.get("finishOnKey") == "#"
    assert "confirmation code" in call.last_heard

    call.say("A B C 1 2 3")  # the data dip to /demo/api/bookings/ABC123, in-process
    assert call.last_heard.startswith(
        "Flight OV 101 from San Francisco to New York is delayed by 95 minutes."
    )
    assert "Would you like to move to another flight?" in call.last_heard

    call.press("2")
    assert "Is there anything else?" in call.last_heard
    call.press("2")
    assert call.last_heard == "Thank you for flying with Omnivoice Air. Goodbye."
    assert call.ended == "hangup"
    assert call.last.find("Hangup") is not None
    assert set(call.statuses) == {200}

    assert call.hang_up("completed", duration=61) == 204
    key = f"{live_server.prefix}:{{+14155550161}}:session"
    stored = live_server.redis.hgetall(key)
    assert stored[b"call"] == call.call_sid.encode()
    assert int(stored[b"seq"]) == 6  # five webhooks that advanced the call, one status
    assert live_server.redis.ttl(key) > 0


def test_signed_incoming_webhook_gets_a_gather(live_server: LiveServer) -> None:
    url = f"{live_server.base_url}/voice"
    params = form("CA" + uuid.uuid4().hex, From="+14155550162")
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    with requests.Session() as session:
        response = session.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=5
        )
        forged = session.post(
            url, data={**params, "From": "+14155550163"},
            headers={"X-Twilio-Signature": signature}, timeout=5,
        )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    gather = root.find("Gather")
    assert gather is not None
    assert (gather.get("action") or "").startswith("/voice/answer?step=")
    assert forged.status_code == 403

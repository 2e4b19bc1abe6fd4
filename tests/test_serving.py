"""The Procfile's server, run from its own ``web:`` line, beside slow clients and changing flows.

Slow or idle connections must not starve webhooks: 50 clients drip one header line every 2 s
(a request that never ends) while signed webhooks are timed against ones sent with nobody
else connected, on the same server. Flows change underneath the running workers too: an edit
is picked up by the watcher, and a 30 MB file is refused while the last good version serves.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import statistics
import subprocess
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

from bench.slow_clients import SlowClients
from tests.conftest import REDIS_URL, REPO
from tests.support_twilio import form, free_port
from tests.test_live_server import CLEARED_ENV, _delete, _gunicorn, _wait_for_health

TOKEN = "serving-token-" + uuid.uuid4().hex
RELOAD_SECONDS = 0.5
ORIGINAL = "For flight status, press 1"
CALLERS = itertools.count(2_000_000 + uuid.uuid4().int % 7_000_000)


@dataclass(frozen=True)
class Server:
    """The Procfile's server: where it listens and the flows directory it serves."""

    base_url: str
    flows: Path
    port: int


def procfile_command() -> str:
    """The ``web:`` line of the Procfile, as a process manager runs it (through ``sh``)."""
    lines = (REPO / "Procfile").read_text().splitlines()
    return next(line.removeprefix("web:").strip() for line in lines if line.startswith("web:"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    prefix = f"test-serving-{uuid.uuid4().hex[:12]}"
    flows = tmp_path_factory.mktemp("serving") / "flows"
    shutil.copytree(REPO / "flows", flows)
    log = flows.parent / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(
        PATH=f"{Path(_gunicorn()).parent}{os.pathsep}{env.get('PATH', '')}",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=prefix,
        TWILIO_AUTH_TOKEN=TOKEN,
        SECRET_KEY="serving-secret-" + uuid.uuid4().hex,
        FLOWS_DIR=str(flows),
        FLOW_RELOAD_SECONDS=str(RELOAD_SECONDS),
        LOG_FORMAT="text",
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["sh", "-c", f"exec {procfile_command()}"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        _wait_for_health(base_url, process, log)
        yield Server(base_url, flows, port)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        _delete(connection, prefix)
        connection.close()


def webhook(server: Server) -> tuple[float, str]:
    """A signed ``POST /voice`` for a new call on a new connection: its time and what it says."""
    url = f"{server.base_url}/voice"
    caller = f"+1415{next(CALLERS)}"  # a new caller: no resume offer
    params = form("CA" + uuid.uuid4().hex, From=caller)
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    started = time.perf_counter()
    response = requests.post(
        url, data=params, headers={"X-Twilio-Signature": signature}, timeout=15
    )
    took = time.perf_counter() - started
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    gather = root.find("Gather")
    assert gather is not None and (gather.get("action") or "").startswith("/voice/answer?step=")
    return took, " ".join((say.text or "").strip() for say in root.iter("Say"))


def test_signed_webhooks_are_answered_promptly_while_50_clients_drip_headers(
    server: Server,
) -> None:
    normal = statistics.median(webhook(server)[0] for _ in range(20))
    with SlowClients("127.0.0.1", server.port, count=50, every=2.0) as slow:
        time.sleep(2.5)  # every client has sent a second header line and waits on the server
        timed = [webhook(server)[0] for _ in range(20)]
        assert slow.dripped >= 50  # they were there all along (reconnecting when dropped)
    assert max(timed) < 50 * normal + 0.5, (timed, normal)
    assert statistics.median(timed) < 10 * normal + 0.05, (timed, normal)


def test_an_edit_is_picked_up_and_a_30_mb_file_refused_by_the_running_workers(
    server: Server,
) -> None:
    normal = statistics.median(webhook(server)[0] for _ in range(10))
    path = server.flows / "airline.yaml"
    original = path.read_text(encoding="utf-8")
    edited = original.replace(ORIGINAL, "For arrivals, press 1")
    aside = path.with_name(".airline.yaml.new")
    aside.write_text(edited, encoding="utf-8")
    os.replace(aside, path)
    time.sleep(RELOAD_SECONDS + 0.5)  # a period and the watcher's tick, on both workers
    assert all("For arrivals, press 1" in webhook(server)[1] for _ in range(10))

    padding = ("# " + "x" * 1021 + "\n") * (30 * 1024)
    aside.write_text(original + padding, encoding="utf-8")
    os.replace(aside, path)
    started, slowest = time.monotonic(), 0.0
    while time.monotonic() - started < 4 * RELOAD_SECONDS + 0.5:
        took, said = webhook(server)
        slowest = max(slowest, took)
        assert "For arrivals, press 1" in said  # the last good version keeps serving
    assert slowest < 50 * normal + 0.5, (slowest, normal)
    health = requests.get(f"{server.base_url}/healthz", timeout=5).text
    assert f"degraded: refused: {path}:1:1: error: The file is " in health
    assert "over the limit of 1,048,576 bytes (FLOW_MAX_BYTES)" in health

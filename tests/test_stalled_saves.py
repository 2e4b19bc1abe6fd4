"""A save that reaches a stalled Redis after the webhook gave up on it changes nothing.

Redis is stalled for real between a webhook's load and its save: the data dip of the answer
being saved runs a Lua script that keeps the server busy (as a blocked or overloaded server
would be) while the dip replies. The app's client gives up on the save, the caller hears the
spoken fallback, and the save command still sits in the server's socket. When the server comes
back it runs that command; its deadline, checked against Redis's own clock, has passed, so the
session, the cached reply and the event stream stay as they were, and the caller's next webhook
is served as if the stalled one had never happened. On every topology; the single-server case
stalls a private ``redis-server`` (the shared one serves other tests).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from context.redis_client import Topology, cluster_of, connect, topology_of
from simulator import Call, FlaskTransport
from tests import support_topologies
from tests.conftest import AUTH_TOKEN, REDIS_URL, app_for_tests, client_for, delete_under
from tests.support_backend import Backend
from tests.support_twilio import CALLER, form, post, spoken, stored, twiml, verbs
from webhooks.twiml import APOLOGY

FALLBACK = "+14155550999"
APP_TIMEOUT = 0.12  # the app's Redis socket timeout: it gives up well inside the stall
STALL_SECONDS = 0.8  # under the test Sentinels' 1 s down-after, so nobody fails over
# A read-only script that keeps the server busy: nothing else runs until it returns.
STALL = """
local start = redis.call('TIME')
local began = start[1] * 1000000 + start[2]
repeat
  local now = redis.call('TIME')
until now[1] * 1000000 + now[2] - began >= tonumber(ARGV[1]) * 1000000
return 1
"""


@pytest.fixture
def stallable(redis_url: str) -> Iterator[Any]:
    """A connection to a Redis this test may stall, with its own key prefix."""
    server = support_topologies.start_server() if redis_url == REDIS_URL else None
    url = server.url if server is not None else redis_url
    connection = client_for(url)
    connection.test_prefix = f"test-{uuid.uuid4().hex[:12]}"
    connection.omnivoice_url = url
    try:
        yield connection
    finally:
        delete_under(connection, connection.test_prefix)
        connection.close()
        if server is not None:
            server.stop()


@pytest.fixture
def backend() -> Iterator[Backend]:
    served = Backend()
    yield served
    served.close()


def build_app(connection: Any, flows_dir: Path, backend: Backend) -> Flask:
    """The app on a client that gives up after ``APP_TIMEOUT``; the booking lookup goes to
    ``backend``'s hook."""
    path = flows_dir / "airline.yaml"
    lookup = '"/demo/api/bookings/{{ code }}", timeout'
    text = path.read_text()
    assert lookup in text
    path.write_text(text.replace(lookup, f'"{backend.url}/hook", timeout'))
    client: Any = connect(connection.omnivoice_url, timeout=APP_TIMEOUT, dev_mode=False)
    if topology_of(client) is Topology.CLUSTER:
        client = cluster_of(client)
    return app_for_tests(
        flows_dir,
        REDIS_CLIENT=client,
        REDIS_KEY_PREFIX=connection.test_prefix,
        FALLBACK_NUMBER=FALLBACK,
    )


class Stall:
    """Stalls the server that holds ``key`` for ``STALL_SECONDS``, from another connection."""

    def __init__(self, connection: Any, key: str) -> None:
        self.connection = connection
        self.key = key
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        if topology_of(self.connection) is Topology.CLUSTER:
            node = self.connection.get_node_from_key(self.key)
            self.connection.execute_command("EVAL", STALL, 0, STALL_SECONDS, target_nodes=node)
        else:
            self.connection.execute_command("EVAL", STALL, 0, STALL_SECONDS)
        self.ended_at = time.monotonic()

    def start(self) -> None:
        self.thread.start()
        time.sleep(0.05)  # the script is running before the dip replies

    def wait(self) -> None:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def test_a_save_that_reaches_a_stalled_redis_too_late_changes_nothing(
    stallable: Any, flows_dir: Path, backend: Backend
) -> None:
    app = build_app(stallable, flows_dir, backend)
    booking = app.test_client().get("/demo/api/bookings/XYZ789").get_json()
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial().press("1")
    assert call.gather is not None and "confirmation code" in call.last_heard
    action = call.gather.get("action", "")
    step = int(parse_qs(urlsplit(action).query)["step"][0])
    prefix = stallable.test_prefix
    reply_key = f"{prefix}:{{{CALLER}}}:reply:{call.call_sid}:{step}"
    stream = app.extensions["omnivoice.events"].key_for(CALLER)
    before = stored(stallable)
    events_before = stallable.xlen(stream)
    stall = Stall(stallable, f"{prefix}:{{{CALLER}}}:session")

    def stall_then_reply() -> Any:
        stall.start()
        return booking

    backend.hook = stall_then_reply
    answer = form(call.call_sid, SpeechResult="X Y Z 7 8 9.", Confidence="0.92")
    client = app.test_client()
    root = twiml(post(client, action, answer))
    answered_at = time.monotonic()
    assert any(APOLOGY in text for text in spoken(root)), spoken(root)
    assert verbs(root)[-1] == "Dial" and root.findtext("Dial") == FALLBACK

    stall.wait()
    assert answered_at < stall.ended_at, "the webhook outlasted the stall: nothing was tested"
    time.sleep(0.3)  # the server runs the commands that waited in its sockets
    after = stored(stallable)
    assert (after.seq, after.call, after.raw) == (before.seq, before.call, before.raw)
    assert stallable.exists(reply_key) == 0  # no reply cached for the answer never heard
    assert stallable.xlen(stream) == events_before

    backend.hook = lambda: booking
    again = twiml(post(client, action, answer))  # the caller's next webhook, as if first
    assert any("is on time" in text for text in spoken(again)), spoken(again)
    assert APOLOGY not in " ".join(spoken(again))
    settled = stored(stallable)
    assert settled.seq == before.seq + 1
    assert settled.doc["variables"]["code"] == "XYZ789"

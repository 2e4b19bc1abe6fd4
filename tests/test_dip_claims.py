"""A side-effecting data dip runs once per (call, step), with an ``Idempotency-Key``.

Twenty copies of one Twilio-signed answer arrive at once (threads, each with its own Flask test
client, on every Redis topology); the flow's ``POST`` goes to a real, slow back-end that counts
what it receives: exactly one request, and all twenty callers' copies get the same reply. The
key is the same when the very same dip is retried (its first save never landed) and differs for
another step or call. A copy that finds the step claimed by a request that never answers gives
up inside the webhook's budget, down ``on_error``, without posting. ``GET`` dips claim nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from bench.roundtrips import command_names
from context.keys import Keys
from conversation.dip_claims import CLAIMED_ELSEWHERE, IDEMPOTENCY_HEADER, idempotency_key
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, on_topologies
from tests.support_backend import Backend
from tests.support_twilio import CALLER, form, post, prefix_of, spoken, stored, twiml

NUMBER = "+14155550146"
FLOW = """
id: claims
numbers: ["{number}"]
start: menu
nodes:
  menu:
    gather: {{prompt: Press 1 to rebook., num_digits: 1}}
    on: {{"1": rebook}}
  rebook:
    http: {{url: "{url}", method: {method}, json: {{option: 1}}, timeout: 3s, save_as: booked}}
    on_error: failed
    say: "Rebooked, reference {{{{ booked.name }}}}."
    next: again
  again:
    gather: {{prompt: Press 1 to rebook again., num_digits: 1}}
    on: {{"1": rebook}}
  failed:
    say: "Sorry, {{{{ http_error.error }}}}."
    hangup: true
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend(slow_seconds=0.4)  # /slow answers after 0.4 s: the copies overlap
    yield server
    server.close()


@pytest.fixture
def claims_app(
    make_app: Callable[..., Flask], flows_dir: Path, backend: Backend
) -> Callable[..., Flask]:
    def build(method: str = "POST", path: str = "/slow", **config: Any) -> Flask:
        url = backend.url + path
        (flows_dir / "claims.yaml").write_text(FLOW.format(number=NUMBER, url=url, method=method))
        return make_app(**config)

    return build


def _answer_at_once(app: Flask, call: Call, copies: int) -> list[tuple[int, list[str]]]:
    """Post ``copies`` identical signed answers to the call's gather at the same moment."""
    assert call.gather is not None
    action = call.gather.get("action") or ""
    params = form(call.call_sid, From=CALLER, To=NUMBER, Digits="1")
    start = threading.Barrier(copies)
    replies: list[tuple[int, list[str]]] = []
    lock = threading.Lock()

    def answer() -> None:
        client = app.test_client()
        start.wait()
        response = post(client, action, params)
        heard = spoken(twiml(response)) if response.status_code == 200 else []
        with lock:
            replies.append((response.status_code, heard))

    threads = [threading.Thread(target=answer) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return replies


def test_twenty_identical_answers_make_one_back_end_request(
    claims_app: Callable[..., Flask], backend: Backend
) -> None:
    app = claims_app()
    call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
    replies = _answer_at_once(app, call, 20)
    posts = [r for r in backend.requests if r["method"] == "POST"]
    assert len(posts) == 1, len(posts)
    assert len(replies) == 20
    assert {status for status, _ in replies} == {200}
    heard = {tuple(words) for _, words in replies}
    assert heard == {("Rebooked, reference Ada Lovelace.", "Press 1 to rebook again.")}, heard
    assert posts[0]["headers"][IDEMPOTENCY_HEADER] == idempotency_key(call.call_sid, 0, "rebook")


@on_topologies("single")  # the key's sameness does not depend on the topology
def test_the_key_is_the_same_for_a_retry_and_differs_for_another_step_or_call(
    claims_app: Callable[..., Flask], backend: Backend, redis_client: redis.Redis
) -> None:
    app = claims_app()
    call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
    keys = Keys(prefix_of(redis_client))
    session_key = keys.session(CALLER)
    before = redis_client.hgetall(session_key)
    assert call.gather is not None
    first_action = call.gather.get("action") or ""
    call.press("1")
    # The first attempt's save never landed (its worker died after the dip): put the session
    # back as it was, with no claim and no reply, and Twilio's retry runs the dip again.
    redis_client.delete(session_key, keys.reply(CALLER, call.call_sid, 0))
    redis_client.delete(keys.dip_claim(CALLER, call.call_sid, 0))
    redis_client.hset(session_key, mapping=before)
    redis_client.expire(session_key, 600)
    retry = post(app.test_client(), first_action, _retry_form(call))
    assert spoken(twiml(retry))[0] == "Rebooked, reference Ada Lovelace."
    call.press("1")  # the next step: another dip
    other = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER, caller="+14155550177").dial()
    other.press("1")  # another call
    sent = [r["headers"][IDEMPOTENCY_HEADER] for r in backend.requests if r["method"] == "POST"]
    assert len(sent) == 4
    assert sent[0] == sent[1]
    assert len({sent[1], sent[2], sent[3]}) == 3


def _retry_form(call: Call) -> dict[str, str]:
    return form(call.call_sid, From=CALLER, To=NUMBER, Digits="1", Caller=CALLER, Called=NUMBER)


@on_topologies("single")
def test_a_copy_waiting_on_a_silent_holder_gives_up_within_the_budget(
    claims_app: Callable[..., Flask], backend: Backend, redis_client: redis.Redis
) -> None:
    app = claims_app(WEBHOOK_BUDGET_SECONDS=2.0)
    call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
    keys = Keys(prefix_of(redis_client))
    redis_client.set(keys.dip_claim(CALLER, call.call_sid, 0), "1", ex=60)  # a holder that died
    started = time.monotonic()
    call.press("1")
    seconds = time.monotonic() - started
    assert call.last_heard == f"Sorry, {CLAIMED_ELSEWHERE}."
    assert 0.5 <= seconds < 1.5, seconds  # the budget less the margin kept to answer
    assert backend.requests == []
    assert stored(redis_client).doc["variables"]["http_error"]["error"] == CLAIMED_ELSEWHERE


@on_topologies("single")
def test_get_dips_claim_nothing_and_carry_no_key(
    claims_app: Callable[..., Flask], backend: Backend, redis_client: redis.Redis
) -> None:
    app = claims_app(method="GET", path="/customer")
    call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
    call.press("1")
    assert call.last_heard == "Rebooked, reference Ada Lovelace. Press 1 to rebook again."
    assert IDEMPOTENCY_HEADER not in backend.requests[0]["headers"]
    assert not redis_client.exists(
        Keys(prefix_of(redis_client)).dip_claim(CALLER, call.call_sid, 0)
    )


@on_topologies("single")
def test_a_post_dip_costs_one_round_trip_more_and_its_claim_expires(
    claims_app: Callable[..., Flask], backend: Backend, redis_client: redis.Redis
) -> None:
    sent: list[list[str]] = []

    class Counting(redis.Connection):
        handshaking = False  # a new connection's HELLO and CLIENT SETINFO: no webhook pays them

        def on_connect_check_health(self, check_health: bool = True) -> None:
            self.handshaking = True
            try:
                super().on_connect_check_health(check_health)
            finally:
                self.handshaking = False

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if not self.handshaking:
                data = (
                    command if isinstance(command, bytes) else b"".join(bytes(p) for p in command)
                )
                sent.append(command_names(data))
            super().send_packed_command(command, check_health)

    pool = redis.ConnectionPool(
        connection_class=Counting, **redis_client.connection_pool.connection_kwargs
    )
    counted = redis.Redis(connection_pool=pool)
    app = claims_app(REDIS_CLIENT=counted)
    call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
    sent.clear()
    call.press("1")
    pool.disconnect()
    assert [names[0] for names in sent] == ["EVALSHA", "SET", "EVALSHA"], sent
    claim = Keys(prefix_of(redis_client)).dip_claim(CALLER, call.call_sid, 0)
    # Only as long as its holder's request can last: a holder that died blocks its step for
    # seconds, not for the cached reply's ten minutes.
    budget = app.extensions["omnivoice.calls"].turn_budget
    assert 0 < redis_client.ttl(claim) <= budget + 6

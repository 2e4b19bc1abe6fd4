"""A new caller's first turn in one round trip (``SessionStore.start``), on every topology.

The store saves the turn only when a load of the call would have found nothing at all, and
otherwise writes nothing and returns exactly what that load returns; the service tries it only
for a turn with no side effects before its save (no data dip, no resume code), and a process
stops trying while most of its callers turn out to be known (``FirstTurns``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from context.event_stream import EventStream
from context.keys import Keys
from context.redis_client import Topology, topology_of
from context.sessions import FlowPin, Loaded, RedisClock, Saved, SessionStore
from conversation.first_turns import CLOCK_KEPT, PROBE_EVERY, FirstTurns
from ivr.errors import SessionCorrupt
from ivr.session import Session
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, on_topologies
from tests.support_backend import Backend
from tests.support_redis import RoundTrips, counting_client
from tests.support_twilio import CALLER, keys_under, prefix_of, stored

CALL_SID = "CA" + "f" * 32
STEP = -1  # the step a call's first webhook names (conversation.service.INCOMING_STEP)
REPLY = "<Response><Say>Welcome.</Say></Response>"
EVENT = {"v": 1, "name": "resume_fresh", "at": 1.0, "caller": CALLER, "data": {}}


def on_cluster(connection: object) -> bool:
    return topology_of(connection) is Topology.CLUSTER


@pytest.fixture
def counted(redis_client: redis.Redis) -> Iterator[tuple[redis.Redis, RoundTrips]]:
    connection, counter = counting_client(redis_client)
    yield connection, counter
    connection.close()


def store_on(connection: redis.Redis) -> SessionStore:
    keys = Keys(prefix_of(connection))
    cluster = on_cluster(connection)
    return SessionStore(
        connection, keys, 300, 60, events=EventStream(connection, keys), cluster=cluster
    )


def fresh_session(caller: str = CALLER, call_sid: str = CALL_SID) -> Session:
    return Session(
        caller=caller, flow_id="airline", flow_version="0123456789abcdef", call_sid=call_sid,
        node="main_menu", waiting="input", step=0, started_at=1.0, updated_at=1.0,
    )  # fmt: skip


def a_clock(store: SessionStore) -> RedisClock:
    store.load("+14155550999")  # any load reads Redis's clock
    assert store.clock is not None
    return store.clock


def snapshot(connection: redis.Redis) -> dict[str, Any]:
    """Every key under the test's prefix with its value, to show nothing was written."""
    return {key: connection.dump(key) for key in keys_under(connection)}


def same_load(a: Loaded, b: Loaded) -> bool:
    """Two loads found the same (their clocks were read at different moments)."""
    return replace(a, clock=None) == replace(b, clock=None)


# ---- the store ------------------------------------------------------------------------------
def test_on_an_empty_store_the_first_turn_is_saved_in_one_round_trip(
    counted: tuple[redis.Redis, RoundTrips],
) -> None:
    connection, counter = counted
    store = store_on(connection)
    clock = a_clock(store)
    flow = FlowPin(store.keys.flow_version("0123456789abcdef"), "id: airline", publish=True)
    store.start(fresh_session(caller="+14155550998", call_sid="CA" + "e" * 32), REPLY, STEP)
    counter.reset()  # the script is loaded now; what follows is a warm webhook's traffic

    saved = store.start(fresh_session(), REPLY, STEP, [EVENT], flow, clock)

    assert saved == Saved(1, published=True)
    if on_cluster(connection):  # the event stream and the flow version live in other slots
        assert counter.sent[0] == "EVALSHA" and len(counter.nodes_of("EVALSHA")) == 1
    else:
        assert counter.sent == ["EVALSHA"], counter.sent
    loaded = store.load(CALLER, CALL_SID, STEP)
    assert loaded.session == fresh_session() and loaded.seq == 1
    assert loaded.reply == REPLY and loaded.call_known  # the reply cached, the call marked
    assert connection.get(flow.key) == b"id: airline"
    assert store.events is not None and connection.xlen(store.events.key_for(CALLER)) == 1
    assert all(connection.ttl(key) > 0 for key in keys_under(connection))


@pytest.mark.parametrize("there", ["session", "own session", "reply", "call marker", "card"])
def test_with_anything_stored_nothing_is_written_and_the_load_comes_back(
    redis_client: redis.Redis, there: str
) -> None:
    store = store_on(redis_client)
    clock = a_clock(store)
    keys = store.keys
    if there == "session":
        store.save(fresh_session(call_sid="CA" + "a" * 32).evolve(step=3), 0)
    elif there == "own session":
        store.save(fresh_session().evolve(step=2), 0, own=True)
    elif there == "reply":
        redis_client.set(keys.reply(CALLER, CALL_SID, STEP), "<Response/>", ex=60)
    elif there == "call marker":
        redis_client.set(keys.call(CALLER, CALL_SID), "1", ex=60)
    else:
        redis_client.set(keys.card(CALLER), json.dumps({"v": 1, "name": "Ada"}), ex=60)
    before = snapshot(redis_client)

    found = store.start(fresh_session(), REPLY, STEP, [EVENT], None, clock)

    assert isinstance(found, Loaded), found
    assert snapshot(redis_client) == before  # not a key written, not a TTL moved
    assert same_load(found, store.load(CALLER, CALL_SID, STEP))
    assert found.clock is not None


def test_a_corrupt_session_found_instead_is_reported_as_a_load_reports_it(
    redis_client: redis.Redis,
) -> None:
    store = store_on(redis_client)
    clock = a_clock(store)
    redis_client.set(store.keys.session(CALLER), "not a hash", ex=60)
    with pytest.raises(SessionCorrupt, match="not a session hash"):
        store.start(fresh_session(), REPLY, STEP, (), None, clock)
    assert redis_client.get(store.keys.session(CALLER)) == b"not a hash"


@on_topologies("single", "sentinel")  # on a cluster the version is not checked with the save
def test_a_flow_version_missing_from_redis_is_published_with_the_first_turn(
    redis_client: redis.Redis,
) -> None:
    store = store_on(redis_client)
    clock = a_clock(store)
    flow = FlowPin(store.keys.flow_version("0123456789abcdef"), "id: airline")  # not asked to
    saved = store.start(fresh_session(), REPLY, STEP, (), flow, clock)
    assert saved == Saved(1, published=True)
    assert redis_client.get(flow.key) == b"id: airline"


def test_a_first_turn_past_its_deadline_by_an_old_clock_writes_nothing(
    redis_client: redis.Redis,
) -> None:
    store = store_on(redis_client)
    now = a_clock(store).now()
    wrong = RedisClock(now - 3600, time.monotonic())  # a clock an hour behind this Redis's
    before = snapshot(redis_client)
    assert store.start(fresh_session(), REPLY, STEP, [EVENT], None, wrong) is None
    assert snapshot(redis_client) == before


# ---- the service and the app ------------------------------------------------------------------
class Spy:
    """Counts the store's first-turn tries, passing each on to the real store."""

    def __init__(self, store: SessionStore) -> None:
        self.tries = 0
        self._start = store.start
        store.start = self.start  # type: ignore[method-assign]

    def start(self, *args: Any, **kwargs: Any) -> Any:
        self.tries += 1
        return self._start(*args, **kwargs)


def warm(app: Flask) -> None:
    """Two calls: the first loads (the store reads Redis's clock), the second is tried ahead
    (the first-turn script is loaded)."""
    for caller in ("+14155550901", "+14155550902"):
        Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial().hang_up()


def test_a_new_caller_takes_one_round_trip_and_a_known_one_two(
    make_app: Callable[..., Flask], counted: tuple[redis.Redis, RoundTrips]
) -> None:
    connection, counter = counted
    app = make_app(REDIS_CLIENT=connection)
    warm(app)
    counter.reset()
    first = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert first.last_heard.startswith("Thanks for calling Omnivoice Air. For flight status")
    on_shard = counter.nodes_of("EVALSHA")
    assert len(on_shard) == 1, counter.sent
    first.press("1")  # into the flow, then cut off: the next call is offered the resume
    first.hang_up()

    counter.reset()
    again = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert len(counter.nodes_of("EVALSHA")) == 2, counter.sent  # tried, found, saved
    assert "continue" in again.last_heard.lower()
    assert stored(connection).call == again.call_sid


def test_a_caller_with_a_card_and_no_session_is_asked_about_their_open_matter(
    app: Flask, redis_client: redis.Redis
) -> None:
    warm(app)
    store: SessionStore = app.extensions["omnivoice.store"]
    now = time.time()
    card = {
        "v": 1, "name": "Ada", "language": None, "time_zone": None,
        "contacts": [{"sid": "CAold", "channel": "voice", "at": now - 3600, "outcome": "completed"}],
        "open_conversation": {"topic": "cancelled flight to Denver", "status": "inactive"},
    }  # fmt: skip
    redis_client.set(store.keys.card(CALLER), json.dumps(card), ex=600)
    spy = Spy(store)
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert spy.tries == 1  # tried, and the card came back instead of a save
    assert "Are you calling about your cancelled flight to Denver?" in call.last_heard
    assert stored(redis_client).call == call.call_sid


def test_a_caller_without_caller_id_is_not_tried_ahead(app: Flask) -> None:
    warm(app)
    spy = Spy(app.extensions["omnivoice.store"])
    call = Call(FlaskTransport(app), AUTH_TOKEN, caller="anonymous").dial()
    assert spy.tries == 0  # such a caller may be asked for a resume code: a side effect
    assert call.gather is not None


def test_a_corrupt_session_met_by_a_try_is_discarded_and_the_call_starts_fresh(
    app: Flask, redis_client: redis.Redis
) -> None:
    warm(app)
    store: SessionStore = app.extensions["omnivoice.store"]
    redis_client.set(store.keys.session(CALLER), "not a hash", ex=60)
    spy = Spy(store)
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert spy.tries == 1
    assert call.last_heard.startswith("Thanks for calling Omnivoice Air. For flight status")
    assert stored(redis_client).call == call.call_sid


DIP_NUMBER = "+14155550147"
DIP_FLOW = """
id: greeting
numbers: ["{number}"]
start: look_up
nodes:
  look_up:
    http: {{url: "{url}/customer", timeout: 3s, save_as: customer}}
    on_error: menu
    say: "Hello {{{{ customer.name }}}}."
    next: menu
  menu:
    gather: {{prompt: Press 1., num_digits: 1}}
    on: {{"1": menu}}
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@on_topologies("single")  # the data dip's path is the same on every topology
def test_a_first_turn_with_a_data_dip_is_not_tried_ahead_and_dips_once(
    make_app: Callable[..., Flask], flows_dir: Path, backend: Backend
) -> None:
    (flows_dir / "greeting.yaml").write_text(DIP_FLOW.format(number=DIP_NUMBER, url=backend.url))
    app = make_app()
    warm(app)
    spy = Spy(app.extensions["omnivoice.store"])
    call = Call(FlaskTransport(app), AUTH_TOKEN, called=DIP_NUMBER).dial()
    assert spy.tries == 0
    assert [r["path"] for r in backend.requests] == ["/customer"]
    assert call.heard[0].startswith("Hello ")


@on_topologies("single")  # a policy of the process, whatever the topology
def test_a_process_whose_callers_are_known_stops_trying_and_probes(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    turns = app.extensions["omnivoice.calls"].first_turns = FirstTurns(probe_every=4)
    warm(app)
    caller = "+14155550177"
    for _ in range(12):  # the same caller again and again: their session is always there
        Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial().hang_up()
    assert turns.rate < turns.worth_it
    spy = Spy(app.extensions["omnivoice.store"])
    for _ in range(8):
        Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial().hang_up()
    assert spy.tries == 2  # one call in four


# ---- the policy -------------------------------------------------------------------------------
def test_tries_go_on_while_they_stand_stop_when_they_do_not_and_come_back() -> None:
    turns = FirstTurns()
    assert all(turns.worth_trying(1.0) for _ in range(50))  # nothing known yet: new callers
    for _ in range(20):
        turns.record(False)
    tried = sum(turns.worth_trying(1.0) for _ in range(PROBE_EVERY * 4))
    assert tried == 4  # only the probes
    for _ in range(20):
        turns.record(True)
    assert turns.worth_trying(1.0)


def test_no_try_goes_by_a_clock_never_read_or_read_too_long_ago() -> None:
    turns = FirstTurns()
    assert not turns.worth_trying(None)
    assert not turns.worth_trying(CLOCK_KEPT + 0.1)
    assert turns.worth_trying(CLOCK_KEPT - 0.1)


def test_a_process_meeting_only_new_callers_reads_redis_clock_now_and_then(app: Flask) -> None:
    warm(app)
    store: SessionStore = app.extensions["omnivoice.store"]
    assert store.clock is not None
    spy = Spy(store)
    store.clock = replace(store.clock, monotonic=store.clock.monotonic - CLOCK_KEPT - 1)
    Call(FlaskTransport(app), AUTH_TOKEN, caller="+14155550171").dial()
    assert spy.tries == 0 and store.clock.age() < 1.0  # loaded, so the clock is read anew
    Call(FlaskTransport(app), AUTH_TOKEN, caller="+14155550172").dial()
    assert spy.tries == 1


def test_half_known_callers_keep_the_rate_near_a_half() -> None:
    turns = FirstTurns()
    for i in range(400):
        turns.record(i % 2 == 0)
    assert 0.4 < turns.rate < 0.6


def test_a_try_refused_by_a_clock_gone_wrong_still_answers_the_caller(
    app: Flask, redis_client: redis.Redis
) -> None:
    warm(app)
    store: SessionStore = app.extensions["omnivoice.store"]
    assert store.clock is not None
    spy = Spy(store)
    # as if Redis's clock had been stepped an hour ahead since the last load (or a failover
    # brought a server whose clock differs): the try's deadline has passed by Redis's time
    store.clock = replace(store.clock, redis_seconds=store.clock.redis_seconds - 3600)
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert spy.tries == 1
    assert call.last_heard.startswith("Thanks for calling Omnivoice Air. For flight status")
    assert stored(redis_client).call == call.call_sid  # saved the usual way, by a fresh clock
    assert abs(store.clock.now() - time.time()) < 5

"""The session store on real Redis: round trips, TTLs, compare-and-set, corrupt documents.

:class:`~context.sessions.SessionStore` is used directly first, then through the webhooks: a
corrupt stored document must give the caller a fresh start (and the log an error), never a 500.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from context.event_stream import EventStream
from context.keys import Keys
from context.redis_client import Topology, topology_of
from context.sessions import FlowPin, SessionStore
from ivr.errors import SessionCorrupt, StoreUnavailable
from ivr.session import Session, Visit
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_redis import RoundTrips, counting_client
from tests.support_twilio import (
    CALLER,
    form,
    keys_under,
    post,
    prefix_of,
    session_key,
    spoken,
    stored,
    twiml,
)

CALL_SID = "CA" + "c" * 32
TTL = 300
REPLY_TTL = 60


@pytest.fixture
def store(redis_client: redis.Redis) -> SessionStore:
    keys = Keys(prefix_of(redis_client))
    return SessionStore(redis_client, keys, TTL, REPLY_TTL, cluster=on_cluster(redis_client))


def on_cluster(connection: object) -> bool:
    """Whether the test runs on the cluster topology (the store then writes events apart)."""
    return topology_of(connection) is Topology.CLUSTER


def a_session(**changes: object) -> Session:
    session = Session(
        caller=CALLER,
        flow_id="airline",
        flow_version="0123456789abcdef",
        call_sid=CALL_SID,
        node="confirmation",
        waiting="input",
        checkpoint="main_menu",
        variables={"intent": "status", "booking": {"flight": "OV 101", "gate": None}},
        no_match_count=1,
        step=4,
        trail=(Visit("welcome"), Visit("main_menu", "1", "want_status")),
        started_at=1700000000.5,
        updated_at=1700000012.25,
        resume_missing=("account",),
        held={"account": "12345678"},
    )
    return session.evolve(**changes)


# ---- SessionStore directly ----------------------------------------------------------------
def test_save_then_load_round_trips_every_field(store: SessionStore) -> None:
    session = a_session()
    assert store.save(session, 0).seq == 1
    loaded = store.load(CALLER)
    assert loaded.session == session
    assert loaded.seq == 1
    assert loaded.reply is None


def test_load_of_an_unknown_caller_is_empty(store: SessionStore) -> None:
    loaded = store.load("+14155550999", CALL_SID, 0)
    assert (loaded.session, loaded.seq, loaded.reply) == (None, 0, None)


def test_reply_is_cached_per_call_and_step(store: SessionStore) -> None:
    store.save(a_session(), 0, "<Response><Say>Hi</Say></Response>", reply_step=3)
    assert store.load(CALLER, CALL_SID, 3).reply == "<Response><Say>Hi</Say></Response>"
    assert store.load(CALLER, CALL_SID, 4).reply is None
    assert store.load(CALLER, "CA" + "d" * 32, 3).reply is None
    assert store.load(CALLER).reply is None


def test_every_write_sets_a_ttl(store: SessionStore, redis_client: redis.Redis) -> None:
    keys = store.keys
    events = EventStream(redis_client, keys, shards=2, ttl=700)
    store = SessionStore(
        redis_client, keys, TTL, REPLY_TTL, events=events, cluster=on_cluster(redis_client)
    )
    saved = store.save(
        a_session(),
        0,
        "<Response/>",
        reply_step=4,
        mark_call=True,
        events=[{"name": "resume_fresh"}],
        flow=FlowPin(keys.flow_version("0123456789abcdef"), "id: airline", publish=True),
    )
    assert saved is not None and saved.published
    assert store.claim_code("123456", CALLER, 900)
    expected = {
        keys.session(CALLER): TTL,
        keys.reply(CALLER, CALL_SID, 4): REPLY_TTL,
        keys.call(CALLER, CALL_SID): TTL,
        keys.resume_code("123456"): 900,
        keys.flow_version("0123456789abcdef"): 2 * TTL,
        events.key_for(CALLER): 700,
    }
    assert sorted(keys_under(redis_client)) == sorted(expected)
    for key, ttl in expected.items():
        assert 0 < redis_client.ttl(key) <= ttl, key
    assert store.load(CALLER, CALL_SID, 4).call_known
    assert not store.load(CALLER, "CA" + "f" * 32, 4).call_known
    assert store.caller_by_code("123456") == CALLER


def test_save_refreshes_the_ttl(store: SessionStore, redis_client: redis.Redis) -> None:
    store.save(a_session(), 0)
    key = store.keys.session(CALLER)
    redis_client.expire(key, 5)
    store.save(a_session(step=5), 1)
    assert redis_client.ttl(key) > 5


def test_delete_removes_keys(store: SessionStore, redis_client: redis.Redis) -> None:
    gone = store.keys.resume_code("654321")
    kept = store.keys.resume_code("123456")
    redis_client.set(gone, CALLER, ex=60)
    redis_client.set(kept, CALLER, ex=60)
    store.delete(gone)
    assert not redis_client.exists(gone)
    assert redis_client.exists(kept)


def test_compare_and_set_rejects_a_stale_seq(
    store: SessionStore, redis_client: redis.Redis
) -> None:
    first = a_session(step=4)
    assert store.save(first, 0).seq == 1
    assert store.save(a_session(step=5), 1).seq == 2
    stale = a_session(step=99, node="goodbye")
    assert store.save(stale, 1, "<Response/>", reply_step=99) is None
    assert store.save(stale, 0) is None
    loaded = store.load(CALLER, CALL_SID, 99)
    assert loaded.seq == 2
    assert loaded.session is not None and loaded.session.step == 5
    assert loaded.reply is None  # a losing save caches no reply
    assert store.save(stale, 2).seq == 3


def test_first_save_fails_when_someone_else_created_the_session(store: SessionStore) -> None:
    assert store.save(a_session(call_sid="CA" + "e" * 32), 0).seq == 1
    assert store.save(a_session(), 0) is None
    loaded = store.load(CALLER)
    assert loaded.session is not None and loaded.session.call_sid == "CA" + "e" * 32


def test_racing_writers_that_reload_and_retry_lose_no_update(store: SessionStore) -> None:
    increments = 100
    store.save(a_session(variables={"count": 0}), 0)
    # Both writers load, meet at the barrier, then save: every round has a loser that must
    # reload and retry.
    barrier = threading.Barrier(2, timeout=10)
    conflicts: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        lost = 0
        try:
            for _ in range(increments):
                loaded = store.load(CALLER)
                barrier.wait()
                while True:
                    assert loaded.session is not None
                    count = loaded.session.variables["count"] + 1
                    changed = loaded.session.evolve(variables={"count": count})
                    if store.save(changed, loaded.seq) is not None:
                        break
                    lost += 1
                    loaded = store.load(CALLER)
        except BaseException as exc:  # reported by the main thread
            barrier.abort()
            errors.append(exc)
        conflicts.append(lost)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sum(conflicts) >= increments  # the writers really did race
    final = store.load(CALLER)
    assert final.session is not None
    assert final.session.variables["count"] == 2 * increments
    assert final.seq == 2 * increments + 1


def test_discard_deletes_the_session(store: SessionStore, redis_client: redis.Redis) -> None:
    store.save(a_session(), 0)
    store.discard(CALLER)
    assert store.load(CALLER).session is None
    assert keys_under(redis_client) == []


def _valid_doc(**changes: object) -> dict[str, object]:
    doc = a_session().to_dict()
    doc.update(changes)
    return doc


def _hash(seq: object, doc: object) -> Callable[[redis.Redis, str], object]:
    def write(connection: redis.Redis, key: str) -> None:
        fields = {}
        if seq is not None:
            fields["seq"] = seq
        if doc is not None:
            fields["doc"] = doc if isinstance(doc, str | bytes) else json.dumps(doc)
        connection.hset(key, mapping=fields)  # type: ignore[arg-type]

    return write


CORRUPT: dict[str, Callable[[redis.Redis, str], object]] = {
    "not json": _hash("3", "{not json"),
    "json but not an object": _hash("3", "[1, 2, 3]"),
    "not utf-8": _hash("3", b"\xff\xfe{}"),
    "no schema version": _hash("3", {k: v for k, v in _valid_doc().items() if k != "schema"}),
    "future schema version": _hash("3", _valid_doc(schema=2)),
    "unknown field": _hash("3", _valid_doc(colour="blue")),
    "required field missing": _hash(
        "3", {k: v for k, v in _valid_doc().items() if k != "call_sid"}
    ),
    "unknown status": _hash("3", _valid_doc(status="sleeping")),
    "variables not an object": _hash("3", _valid_doc(variables=["code"])),
    "trail not a list": _hash("3", _valid_doc(trail=7)),
    "doc missing": _hash("3", None),
    "seq missing": _hash(None, _valid_doc()),
    "seq not a number": _hash("three", _valid_doc()),
    "a string key (WRONGTYPE)": lambda c, k: c.set(k, json.dumps(_valid_doc())),
    "a list key (WRONGTYPE)": lambda c, k: c.rpush(k, "seq", "doc"),
}


@pytest.mark.parametrize("corruption", list(CORRUPT))
def test_corrupt_document_raises_session_corrupt(
    store: SessionStore, redis_client: redis.Redis, corruption: str
) -> None:
    key = store.keys.session(CALLER)
    CORRUPT[corruption](redis_client, key)
    with pytest.raises(SessionCorrupt) as raised:
        store.load(CALLER, CALL_SID, 2)
    assert raised.value.key == key.replace(CALLER, "***" + CALLER[-4:])  # no number in logs
    assert CALLER not in str(raised.value)
    assert raised.value.reason


# ---- through the webhooks -----------------------------------------------------------------
HTTP_CORRUPTIONS = [
    "not json",
    "future schema version",
    "seq not a number",
    "a string key (WRONGTYPE)",
    "variables not an object",
]


@pytest.mark.parametrize("path", ["/voice", "/voice/answer?step=2"])
@pytest.mark.parametrize("corruption", HTTP_CORRUPTIONS)
def test_corrupt_session_gives_a_fresh_start_and_an_error_log(
    client: FlaskClient,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    path: str,
    corruption: str,
) -> None:
    CORRUPT[corruption](redis_client, session_key(redis_client, CALLER))
    with caplog.at_level(logging.ERROR, logger="omnivoice.calls"):
        root = twiml(post(client, path, form(CALL_SID, Digits="1")))
    gather = root.find("Gather")
    assert gather is not None
    assert any("For flight status, press 1" in text for text in spoken(gather))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("corrupt session" in r.getMessage() for r in errors)
    fresh = stored(redis_client)
    assert (fresh.seq, fresh.call, fresh.doc["node"]) == (1, CALL_SID, "main_menu")


def _kind(connection: redis.Redis, key: str) -> str:
    """What a key is for, from its name (see context/keys.py)."""
    rest = key.removeprefix(prefix_of(connection) + ":")
    if rest.endswith(":session"):
        return "session"
    if ":reply:" in rest:
        return "reply"
    if rest.startswith("{"):  # the caller's other keys, under its hash tag
        return rest.split(":")[1]
    return rest.split(":")[0]


def test_every_key_of_a_whole_call_has_a_ttl(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    path = flows_dir / "airline.yaml"
    path.write_text(path.read_text().replace("  ask: true", "  ask: true\n  codes: true"))
    app = make_app()
    known = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    known.press("2")
    known.say("A B C 1 2 3")  # two data dips and a checkpoint
    known.press("1")
    known.press("2")
    assert known.ended == "hangup"
    assert known.hang_up() == 204
    withheld = Call(FlaskTransport(app), AUTH_TOKEN, caller="anonymous").dial()
    withheld.press("#")  # no code: a fresh start, which issues one at the first question
    withheld.press("1")
    assert withheld.hang_up() == 204

    keys = keys_under(redis_client)
    assert {_kind(redis_client, key) for key in keys} == {
        "session", "reply", "call", "flow", "resume-code", "code-prompts", "events", "dip-claim"
    }  # fmt: skip
    without_ttl = [key for key in keys if redis_client.ttl(key) <= 0]
    assert without_ttl == []


# ---- round trips --------------------------------------------------------------------------
@pytest.fixture
def counted(redis_client: redis.Redis) -> Iterator[tuple[redis.Redis, RoundTrips]]:
    connection, counter = counting_client(redis_client)
    yield connection, counter
    connection.close()


def test_load_is_one_round_trip(counted: tuple[redis.Redis, RoundTrips]) -> None:
    connection, counter = counted
    store = SessionStore(connection, Keys(prefix_of(connection)))
    store.load(CALLER)
    store.load(CALLER, CALL_SID, 3)
    # one script each: session and cached reply
    assert counter.sent == ["EVALSHA", "EVALSHA"], counter.per_node


def test_save_is_one_round_trip(counted: tuple[redis.Redis, RoundTrips]) -> None:
    connection, counter = counted
    store = SessionStore(connection, Keys(prefix_of(connection)))
    store.save(a_session(), 0, "<Response/>", reply_step=3, mark_call=True)
    store.save(a_session(step=5), 1, "<Response/>", reply_step=4)
    # one pipeline each, led by the script
    assert counter.sent == ["EVALSHA", "EVALSHA"], counter.per_node


def test_save_survives_a_script_flush(store: SessionStore, redis_client: redis.Redis) -> None:
    assert store.save(a_session(), 0).seq == 1
    redis_client.script_flush()  # what a Redis restart or failover does to cached scripts
    assert store.save(a_session(step=5), 1).seq == 2
    loaded = store.load(CALLER)
    assert loaded.session is not None and loaded.session.step == 5


def test_webhooks_on_the_normal_path_take_at_most_two_round_trips(
    make_app: Callable[..., Flask],
    counted: tuple[redis.Redis, RoundTrips],
    record_property: Callable[[str, object], None],
) -> None:
    connection, counter = counted
    app = make_app(REDIS_CLIENT=connection)
    for warm_up in ("+14155550198", "+14155550199"):  # each script loaded (the first call loads)
        Call(FlaskTransport(app), AUTH_TOKEN, caller=warm_up).dial()
    call = Call(FlaskTransport(app), AUTH_TOKEN)
    per_webhook: dict[str, list[str]] = {}
    per_node: dict[str, dict[str, int]] = {}
    session_nodes: dict[str, list[str]] = {}
    counter.reset()
    call.dial()
    per_webhook["incoming"] = list(counter.sent)
    per_node["incoming"] = counter.per_node
    session_nodes["incoming"] = counter.nodes_of("EVALSHA")
    for name, digits in [("menu answer", "1"), ("no-match", "9"), ("code and data dip", "")]:
        counter.reset()
        if digits:
            call.press(digits)
        else:
            call.say("A B C 1 2 3")
        per_webhook[name] = list(counter.sent)
        per_node[name] = counter.per_node
        session_nodes[name] = counter.nodes_of("EVALSHA")
    record_property("round_trips_per_node", per_node)  # a round trip: one request to one node
    print(f"round trips per webhook and node: {per_node}")
    assert "delayed by 95 minutes" in call.last_heard
    assert all(sent[0] == "EVALSHA" for sent in per_webhook.values()), per_webhook  # load script
    if on_cluster(connection):
        # The session's load and save are one request each, both to the caller's shard; the
        # event stream's shard and a flow version's publication are writes of their own.
        assert all(len(nodes) <= 2 for nodes in session_nodes.values()), session_nodes
        assert len({n for nodes in session_nodes.values() for n in nodes}) == 1, session_nodes
    else:
        assert all(len(sent) <= 2 for sent in per_webhook.values()), (per_webhook, per_node)
        # A new caller's first turn is saved without a load (SessionStore.start).
        assert per_webhook["incoming"] == ["EVALSHA"], per_webhook


def test_duplicate_webhook_and_stray_status_cost_one_round_trip(
    make_app: Callable[..., Flask], counted: tuple[redis.Redis, RoundTrips]
) -> None:
    connection, counter = counted
    app = make_app(REDIS_CLIENT=connection)
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    action = call.gather.get("action", "") if call.gather is not None else ""
    client = app.test_client()
    post(client, action, form(call.call_sid, Digits="1"))

    counter.reset()
    twiml(post(client, action, form(call.call_sid, Digits="1")))  # Twilio retried it
    assert counter.count == 1, counter.sent
    counter.reset()
    stray = form("CA" + "f" * 32, From="+14155550999", CallStatus="completed")
    assert post(client, "/voice/status", stray).status_code == 204
    assert counter.count == 1, counter.sent


@pytest.mark.parametrize(
    "value",
    [123456789012345678901234567890, "Jos\ud83d", {"deep": [2**70, "\udc00"]}],
    ids=["integer beyond 64 bits", "half a surrogate pair", "both, nested"],
)
def test_data_only_json_can_write_comes_back_exactly(store: SessionStore, value: object) -> None:
    session = a_session(variables={"booking": value})
    assert store.save(session, 0).seq == 1
    loaded = store.load(session.caller)
    assert loaded.session is not None
    assert loaded.session.variables == {"booking": value}


def test_a_document_written_by_json_alone_still_loads(
    store: SessionStore, redis_client: redis.Redis
) -> None:
    session = a_session(variables={"name": "Jos\ud83d"})
    key = store.keys.session(session.caller)
    redis_client.hset(key, mapping={"seq": 3, "doc": json.dumps(session.to_dict()), "call": "x"})
    loaded = store.load(session.caller)
    assert loaded.seq == 3 and loaded.session == session


# ---- what counts as "store unavailable" ---------------------------------------------------
class _Refusing:
    """A connection whose every command fails with ``error`` (a cluster mid-failover, ...)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def execute_command(self, *args: object, **kwargs: object) -> object:
        raise self.error

    def pipeline(self, *args: object, **kwargs: object) -> _Refusing:
        return self

    def __enter__(self) -> _Refusing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., object]:
        return self.execute_command


FAILOVER_ERRORS = [
    redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"),
    redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'"),
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
    redis.exceptions.ResponseError(  # a write refused inside the save script
        "Error running script (call to f_0123): @user_script:6: "
        "OOM command not allowed when used memory > 'maxmemory'."
    ),
]


@pytest.mark.parametrize("error", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
def test_failover_and_memory_errors_are_store_unavailable(error: Exception) -> None:
    store = SessionStore(_Refusing(error), Keys("x"), TTL)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable):
        store.load(CALLER, CALL_SID, 0)
    with pytest.raises(StoreUnavailable):
        store.save(a_session(), 0)


@pytest.mark.parametrize("error", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
def test_a_caller_hears_the_fallback_when_the_store_fails_over(
    make_app: Callable[..., Flask], error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(REDIS_CLIENT=_Refusing(error), FALLBACK_QUEUE="support")
    with caplog.at_level(logging.ERROR):
        response = post(app.test_client(), "/voice", form())
    assert response.status_code == 200
    root = twiml(response)
    assert root.find("Enqueue") is not None and root.find("Enqueue").text == "support"
    assert any("session store unavailable" in r.getMessage() for r in caplog.records)
    assert not any("unexpected failure" in r.getMessage() for r in caplog.records)

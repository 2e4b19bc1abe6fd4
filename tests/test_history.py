"""Customer history: migrations, and the writer that records the event stream in SQL.

Real SQLite files and a real PostgreSQL (a schema of its own per test), real Redis on every
topology for the stream, and whole calls through the signed Twilio front.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import Engine, func, inspect, select

from app import create_app
from context.history import database
from context.history.models import (
    Conversation,
    ConversationStatus,
    Customer,
    DataRequest,
    Event,
    Identity,
    Interaction,
)
from context.history.writer import GROUP, HistoryWriter, sweep
from ivr import history as known
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = {
    "customers",
    "identities",
    "consents",
    "merges",
    "conversations",
    "interactions",
    "events",
}


def _postgres_or_skip() -> None:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        if os.environ.get("OMNIVOICE_REQUIRE_TOPOLOGIES"):
            pytest.fail(f"PostgreSQL at {PG_URL} does not answer: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} does not answer")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL on a fresh PostgreSQL schema of this test's own, dropped afterwards."""
    _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    yield engine
    engine.dispose()


def writer_for(app: Flask, engine: Engine, consumer: str = "w1", **options: Any) -> HistoryWriter:
    stream = app.extensions["omnivoice.events"]
    return HistoryWriter(stream, database.sessions(engine), consumer, **options)


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def stream_entries(app: Flask) -> int:
    stream = app.extensions["omnivoice.events"]
    return sum(int(stream.redis.xlen(stream.keys.events(s))) for s in range(stream.shards))


def a_call(app: Flask, caller: str = "+14155550123") -> Call:
    """A caller who asks about booking ABC123 and then hangs up."""
    c = dial(app, caller=caller)
    c.press("2")
    c.say("A B C 1 2 3")
    c.hang_up()
    return c


# ---- migrations ----------------------------------------------------------------------------
def test_migrations_go_up_and_down_from_empty(database_url: str) -> None:
    engine = database.open_engine(database_url)
    assert database.current(engine) is None
    database.upgrade(engine)
    assert database.current(engine) == database.head()
    assert set(inspect(engine).get_table_names()) >= TABLES
    database.downgrade(engine, "base")
    assert database.current(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    database.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_db_commands_migrate_the_configured_database(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = make_app(DATABASE_URL=url).test_cli_runner()
    assert "at base" in runner.invoke(args=["db", "current"]).output
    upgraded = runner.invoke(args=["db", "upgrade"])
    assert upgraded.exit_code == 0 and database.head() in upgraded.output
    down = runner.invoke(args=["db", "downgrade", "base"])
    assert down.exit_code == 0 and "at revision base" in down.output


def test_the_worker_refuses_a_database_that_is_behind(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    runner = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'old.db'}").test_cli_runner()
    refused = runner.invoke(args=["worker", "--once"])
    assert refused.exit_code != 0
    assert "run flask --app app db upgrade" in refused.output


# ---- a whole call, recorded ----------------------------------------------------------------
def test_a_call_is_recorded_as_customer_conversation_interaction_and_events(
    app: Flask, engine: Engine
) -> None:
    c = a_call(app)
    written = writer_for(app, engine).drain()
    assert written == stream_entries(app) > 3
    with database.sessions(engine)() as db:
        identity = db.scalars(select(Identity)).one()
        assert (identity.kind, identity.value, identity.evidence) == (
            "phone",
            "+14155550123",
            "caller_id",
        )
        interaction = db.scalars(select(Interaction)).one()
        assert interaction.contact_sid == c.call_sid
        assert interaction.customer_id == identity.customer_id
        assert interaction.flow_id == "airline" and interaction.flow_version
        assert interaction.outcome == "interrupted" and interaction.ended_at is not None
        conversation = db.get(Conversation, interaction.conversation_id)
        assert conversation is not None and conversation.customer_id == identity.customer_id
        kinds = db.scalars(select(Event.kind).order_by(Event.at, Event.id)).all()
        assert kinds[0] == "resume_fresh" and "input" in kinds and kinds[-1] == "call_ended"
        inputs = db.scalars(select(Event).where(Event.kind == "input")).all()
        assert any(e.data.get("value") == "ABC123" for e in inputs)


def test_a_replay_of_the_whole_stream_adds_nothing(app: Flask, engine: Engine) -> None:
    a_call(app)
    writer_for(app, engine).drain()
    before = (count(engine, Event), count(engine, Interaction), count(engine, Customer))
    stream = app.extensions["omnivoice.events"]
    for shard in range(stream.shards):
        stream.redis.xgroup_setid(stream.keys.events(shard), GROUP, "0")
    assert writer_for(app, engine, "w2").drain() > 0  # everything was read again
    assert (count(engine, Event), count(engine, Interaction), count(engine, Customer)) == before


def test_a_returning_caller_is_one_customer_with_two_interactions(
    app: Flask, engine: Engine
) -> None:
    a_call(app)
    a_call(app, caller="+1 (415) 555-0123")  # another written form of the same number
    writer_for(app, engine).drain()
    assert count(engine, Customer) == 1
    assert count(engine, Identity) == 1
    assert count(engine, Interaction) == 2


def test_a_caller_without_caller_id_is_recorded_without_a_customer(
    app: Flask, engine: Engine
) -> None:
    c = dial(app, caller="anonymous")
    c.hang_up()
    writer_for(app, engine).drain()
    assert count(engine, Customer) == 0
    with database.sessions(engine)() as db:
        interaction = db.scalars(select(Interaction)).one()
        assert interaction.contact_sid == c.call_sid and interaction.customer_id is None


# ---- faults --------------------------------------------------------------------------------
def test_database_down_loses_nothing_and_calls_go_on(
    app: Flask, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    down = database.open_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")
    writer = writer_for(app, down)
    first = a_call(app)
    with pytest.raises(sa.exc.OperationalError):
        writer.run_once()
    second = a_call(app, caller="+14155550124")  # calls never wait on SQL
    assert "Press 1 for flight OV 105" in " ".join(second.heard)
    stop = threading.Event()
    worker = threading.Thread(target=writer.run, args=(stop, 0.01))
    worker.start()
    time.sleep(0.1)  # it retries, and fails, meanwhile
    stop.set()
    worker.join(5)
    assert any("cannot write" in r.getMessage() for r in caplog.records)
    recovered = writer_for(app, engine)  # the same consumer, now with the database back
    assert recovered.drain() == stream_entries(app)
    sids = {first.call_sid, second.call_sid}
    with database.sessions(engine)() as db:
        assert set(db.scalars(select(Interaction.contact_sid))) == sids
    assert count(engine, Event) == stream_entries(app)
    down.dispose()


def test_a_writer_killed_mid_batch_is_finished_by_another_without_duplicates(
    app: Flask, engine: Engine
) -> None:
    a_call(app)
    stream = app.extensions["omnivoice.events"]
    crashed = writer_for(app, engine, "crashed")
    stream.ensure_group(GROUP)
    taken = stream.read(GROUP, "crashed", 3)  # read, never written or acknowledged
    assert taken
    time.sleep(0.06)
    rescuer = writer_for(app, engine, "rescuer", claim_after=0.05)
    assert rescuer.drain() == stream_entries(app)
    assert crashed.drain() == 0  # restarted: its old entries were claimed, nothing is left
    assert count(engine, Event) == stream_entries(app)


def test_two_first_calls_from_one_new_number_at_once_make_one_customer(
    app: Flask, postgres_url: str
) -> None:
    engine = database.open_engine(postgres_url)
    database.upgrade(engine)
    for _ in range(2):
        a_call(app, caller="+14155550199")
    stream = app.extensions["omnivoice.events"]
    stream.ensure_group(GROUP)
    batches = [stream.read(GROUP, f"w{i}", 4) for i in range(2)]
    assert all(batches)
    writers = [writer_for(app, engine, f"w{i}") for i in range(2)]
    start = threading.Barrier(2)

    def write(i: int) -> None:
        start.wait()
        writers[i]._write(batches[i])
        stream.ack(GROUP, batches[i])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    writers[0].drain()
    assert count(engine, Customer) == 1 and count(engine, Identity) == 1
    assert count(engine, Interaction) == 2
    engine.dispose()


# ---- conversations ---------------------------------------------------------------------------
def test_idle_conversations_go_inactive_then_closed_and_a_new_contact_opens_a_new_one(
    app: Flask, engine: Engine, redis_client: redis.Redis
) -> None:
    a_call(app)
    writer_for(app, engine).drain()
    sessions = database.sessions(engine)
    now = datetime.now(UTC)
    sweep(sessions, now + timedelta(minutes=31))
    with sessions() as db:
        assert db.scalars(select(Conversation.status)).one() == ConversationStatus.INACTIVE
    sweep(sessions, now + timedelta(days=8))
    with sessions() as db:
        conversation = db.scalars(select(Conversation)).one()
        assert conversation.status == ConversationStatus.CLOSED
        assert conversation.closed_at is not None
    stream = app.extensions["omnivoice.events"]
    late = {
        "v": 1, "name": "input", "at": time.time(), "channel": "voice",
        "caller": "+14155550123", "call_sid": "CAlate", "conversation": conversation.ref,
        "flow": "airline", "version": "v", "node": "main_menu", "data": {},
    }  # fmt: skip
    stream.append("+14155550123", [stream.encode(late)])
    writer_for(app, engine).drain()
    with sessions() as db:
        rows = db.scalars(select(Conversation).order_by(Conversation.generation)).all()
        assert [(r.generation, r.status) for r in rows] == [(0, "closed"), (1, "active")]


# ---- the embedded demo ---------------------------------------------------------------------
def test_the_demo_records_history_in_process_on_a_sqlite_file_it_creates(
    tmp_path: Path, flows_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    app = create_app(
        {
            "DEV_MODE": True,
            "REDIS_URL": "",  # the demo's in-process stand-in, not the suite's shared Redis
            "HISTORY_IN_PROCESS": True,
            "DATABASE_URL": url,
            "FLOWS_DIR": str(flows_dir),
            "CONFIGURE_LOGGING": False,
            "FLOW_RELOAD_SECONDS": 0,
        }
    )
    try:
        a_call(app)
        engine = database.open_engine(url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and count(engine, Interaction) == 0:
            time.sleep(0.05)
        assert count(engine, Interaction) == 1
        assert count(engine, Customer) == 1
        engine.dispose()
    finally:
        app.extensions["omnivoice.history"].close()


# ---- data rights ---------------------------------------------------------------------------
def test_export_gives_the_whole_timeline_of_a_customer_and_is_recorded(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = make_app(DATABASE_URL=database_url)
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    first, again = a_call(app), a_call(app)
    writer_for(app, engine).drain()
    result = app.test_cli_runner().invoke(args=["customers", "export", "(415) 555-0123"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [i["value"] for i in document["identities"]] == ["+14155550123"]
    assert [i["contact_sid"] for i in document["interactions"]] == [first.call_sid, again.call_sid]
    assert document["interactions"][0]["events"][0]["kind"] == "resume_fresh"
    with database.sessions(engine)() as db:
        request = db.scalars(select(DataRequest)).one()
        assert (request.kind, request.subject) == ("export", "***0123")
        assert request.counts["interactions"] == 2
    engine.dispose()


def test_erase_removes_rows_session_and_waiting_events_and_keeps_only_a_masked_record(
    make_app: Callable[..., Flask], database_url: str, redis_client: redis.Redis
) -> None:
    app = make_app(DATABASE_URL=database_url)
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    a_call(app)
    a_call(app, caller="+14155550124")  # somebody else, who stays
    writer_for(app, engine).drain()
    late = dial(app)  # events not yet written when the erasure runs
    late.press("2")
    result = app.test_cli_runner().invoke(args=["customers", "erase", "+14155550123", "--yes"])
    assert result.exit_code == 0, result.output
    assert writer_for(app, engine).drain() == 0  # nothing waits to write the customer back
    with database.sessions(engine)() as db:
        assert db.scalars(select(Identity.value)).all() == ["+14155550124"]
        assert count(engine, Interaction) == 1
        request = db.scalars(select(DataRequest)).one()
        assert (request.kind, request.subject) == ("erase", "***0123")
        assert request.counts["customers"] == 1 and request.counts["stream_entries"] > 0
    prefix = redis_client.test_prefix  # type: ignore[attr-defined]
    for kind in ("session", "card"):  # the live session and the customer card are gone too
        assert not redis_client.exists(f"{prefix}:{{+14155550123}}:{kind}"), kind
    assert redis_client.exists(f"{prefix}:{{+14155550124}}:card")  # somebody else's stays
    engine.dispose()


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("not a number", "neither a phone number"),
        ("+999", "neither a phone number"),
        ("+14155550777", "no customer has the phone ***0777"),
    ],
)
def test_data_rights_refuse_what_names_nobody(
    make_app: Callable[..., Flask], tmp_path: Path, subject: str, message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'rights.db'}"
    engine = database.open_engine(url)
    database.upgrade(engine)
    runner = make_app(DATABASE_URL=url).test_cli_runner()
    for command in (["customers", "export", subject], ["customers", "erase", subject, "--yes"]):
        result = runner.invoke(args=command)
        assert result.exit_code != 0
        assert message in result.output
    assert count(engine, DataRequest) == 0
    engine.dispose()


# ---- the customer card: history in flows -----------------------------------------------------
def cancelled_flight_call(app: Flask) -> Call:
    """A caller asks about booking QRS456 (cancelled, to Denver), declines a change, hangs up."""
    c = dial(app)
    c.press("1")
    c.say("Q R S 4 5 6")
    assert "to Denver is cancelled" in c.last_heard
    c.press("2")  # no, thanks
    c.press("2")  # end the call
    assert c.ended == "hangup"
    c.hang_up()
    return c


def test_a_caller_back_within_a_day_is_asked_about_their_cancelled_flight(
    app: Flask, engine: Engine
) -> None:
    first = cancelled_flight_call(app)
    writer_for(app, engine).drain()
    with database.sessions(engine)() as db:
        assert db.scalars(select(Conversation.topic)).one() == "cancelled flight to Denver"
    again = dial(app)
    assert again.last_heard == (
        "Thanks for calling Omnivoice Air. Are you calling about your cancelled flight to "
        "Denver? Press 1 or say yes to speak to an agent now. Press 2 or say no for the main menu."
    )
    again.press("1")
    assert again.ended == "enqueue" and "Connecting you to an agent." in again.last_heard
    assert first.call_sid != again.call_sid


def test_a_first_time_caller_and_a_caller_without_history_hear_the_menu(
    app: Flask, engine: Engine
) -> None:
    a_call(app)  # a call with no topic: nothing to ask about
    writer_for(app, engine).drain()
    back = dial(app)
    assert back.last_heard.startswith("Welcome back.")  # resumed, not asked about a topic
    assert "Are you calling about" not in " ".join(back.heard)
    new = dial(app, caller="+14155550124")
    assert new.last_heard.startswith("Thanks for calling Omnivoice Air. For flight status")


def test_the_card_lists_contacts_newest_first_and_rides_in_the_session_load(
    app: Flask, engine: Engine, redis_client: redis.Redis
) -> None:
    first = cancelled_flight_call(app)
    second = a_call(app)  # about something else, and cut off
    writer_for(app, engine).drain()
    store = app.extensions["omnivoice.store"]
    loaded = store.load("+14155550123", "CAnext", 0)
    assert loaded.card is not None
    assert [c["sid"] for c in loaded.card["contacts"]] == [second.call_sid, first.call_sid]
    assert [c["outcome"] for c in loaded.card["contacts"]] == ["interrupted", "completed"]
    # the open matter with a topic, not the newest call that has none

    assert loaded.card["open_conversation"]["topic"] == "cancelled flight to Denver"
    key = store.keys.card("+14155550123")
    assert 0 < redis_client.ttl(key) <= 30 * 86400


def test_history_in_templates_leaves_out_the_contact_in_progress() -> None:
    now = 1_800_000_000.0
    card = {
        "contacts": [
            {"sid": "CAnow", "at": now - 5, "channel": "voice"},
            {"sid": "CA1", "at": now - 3600, "channel": "sms", "outcome": "completed"},
            {"sid": "CA2", "at": now - 3 * 86400, "channel": "voice"},
        ],
        "open_conversation": {"topic": "lost bag"},
        "name": "Ada",
    }
    scope = known.scope(card, "CAnow", now)
    history = scope["history"]
    assert history.last_contact["sid"] == "CA1" and history.last_contact["ago"] == 3600
    assert history.contacts_within("24h") == 1
    assert history.contacts_within("96h") == 2
    assert history.contacts_within("soon") == 0  # not a duration: counts nothing, never fails
    assert scope["customer"] == {"name": "Ada", "language": None, "time_zone": None}
    assert known.scope({}, "CAnow", now) == {}
    broken = known.scope({"contacts": "junk", "open_conversation": 3}, "CAnow", now)
    assert broken["history"].last_contact is None and broken["history"].open_conversation is None


# ---- merging two customers, and undoing it ---------------------------------------------------
def test_a_merge_moves_everything_and_its_undo_gives_everything_back(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = make_app(DATABASE_URL=database_url)
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    a_call(app, caller="+14155550123")
    a_call(app, caller="+14155550124")  # the same person's other phone
    writer_for(app, engine).drain()
    runner = app.test_cli_runner()
    merged = runner.invoke(args=["customers", "merge", "+14155550124", "+14155550123"])
    assert merged.exit_code == 0, merged.output
    assert "moved 1 identities, 0 consents, 1 conversations, 1 interactions" in merged.output
    exported = json.loads(runner.invoke(args=["customers", "export", "+14155550123"]).output)
    assert sorted(i["value"] for i in exported["identities"]) == ["+14155550123", "+14155550124"]
    assert len(exported["interactions"]) == 2
    a_call(app, caller="+14155550124")  # a contact after the merge reaches the merged customer
    writer_for(app, engine).drain()
    with database.sessions(engine)() as db:
        owners = set(db.scalars(select(Interaction.customer_id)))
        assert len(owners) == 1
    merge_id = merged.output.split("merge ", 1)[1].split(":", 1)[0]
    undone = runner.invoke(args=["customers", "unmerge", merge_id])
    assert undone.exit_code == 0, undone.output
    # what moved goes back; the call made while merged stays with the customer it reached
    for number, interactions in (("+14155550123", 2), ("+14155550124", 1)):
        document = json.loads(runner.invoke(args=["customers", "export", number]).output)
        assert [i["value"] for i in document["identities"]] == [number]
        assert len(document["interactions"]) == interactions
    again = runner.invoke(args=["customers", "unmerge", merge_id])
    assert again.exit_code != 0 and "undone already" in again.output
    engine.dispose()


def test_merges_that_make_no_sense_are_refused(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'merge.db'}"
    engine = database.open_engine(url)
    database.upgrade(engine)
    app = make_app(DATABASE_URL=url)
    a_call(app)
    writer_for(app, engine).drain()
    runner = app.test_cli_runner()
    itself = runner.invoke(args=["customers", "merge", "+14155550123", "(415) 555-0123"])
    assert itself.exit_code != 0 and "into itself" in itself.output
    nobody = runner.invoke(args=["customers", "merge", "+14155550123", "+14155550999"])
    assert nobody.exit_code != 0 and "no customer has" in nobody.output
    missing = runner.invoke(args=["customers", "unmerge", "42"])
    assert missing.exit_code != 0 and "no merge 42" in missing.output
    engine.dispose()

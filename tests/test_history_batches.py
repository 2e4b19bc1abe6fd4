"""How the history writer batches: it waits for fuller batches when the stream is quiet, a
batch that races another writer's rows is written again without duplicates (PostgreSQL's
``COPY`` included), and the worker's writer yields the CPU to the webhooks.

Real Redis, real SQLite files and a real PostgreSQL schema per test, a real worker process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from context.history import card, database
from context.history.batch import insert_events
from context.history.models import Event, Interaction
from context.stream_loop import StreamLoop
from tests.conftest import AUTH_TOKEN, REDIS_URL, on_topologies
from tests.test_history import (  # noqa: F401  (fixtures)
    a_call,
    database_url,
    engine,
    postgres_url,
    writer_for,
)

REPO = Path(__file__).resolve().parents[1]

# How the writer batches does not depend on where the stream lives (its topologies are tested
# with the stream itself).
single = on_topologies("single")


def events_of(db: Engine, stream_id: str) -> int:
    with db.connect() as connection:
        query = select(func.count()).select_from(Event).where(Event.stream_id == stream_id)
        return int(connection.execute(query).scalar_one())


# ---- lingering -----------------------------------------------------------------------------
@single
def test_a_pass_that_found_a_part_full_batch_waits_and_a_full_shard_does_not(
    app: Flask,
    engine: Engine,  # noqa: F811
) -> None:
    a_call(app)
    patient = writer_for(app, engine, "w1", linger_for=0.25)
    assert patient.run_once() > 0
    assert 0.1 < patient.linger(1) <= 0.25  # the stream had less than a shard's share waiting
    a_call(app, caller="+14155550177")
    eager = writer_for(app, engine, "w2", batch=app.config["EVENT_STREAM_SHARDS"])  # 1 a shard
    assert eager.run_once() > 0
    assert eager.linger(1) == 0.0  # a shard came back full: more may be waiting, go on


def test_the_loop_waits_as_long_as_the_consumer_asks_after_a_busy_pass() -> None:
    class Busy(StreamLoop):
        passes: ClassVar[list[float]] = []

        def run_once(self) -> int:
            self.passes.append(time.monotonic())
            return 1

        def linger(self, done: int) -> float:
            return 0.05

    stop = threading.Event()
    loop = Busy()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    time.sleep(0.32)
    stop.set()
    runner.join(2)
    gaps = [b - a for a, b in zip(loop.passes, loop.passes[1:], strict=False)]
    assert 3 <= len(loop.passes) <= 8
    assert min(gaps) >= 0.045


@single
def test_a_lingering_writer_still_records_a_call_within_its_linger(
    app: Flask,
    engine: Engine,  # noqa: F811
) -> None:
    writer = writer_for(app, engine, linger_for=0.25)
    stop = threading.Event()
    runner = threading.Thread(target=writer.run, args=(stop, 0.01))
    runner.start()
    try:
        a_call(app)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(select(func.count()).select_from(Interaction)).scalar_one():
                    break
            time.sleep(0.02)
        else:
            pytest.fail("the call was not recorded within 5 s")
    finally:
        stop.set()
        runner.join(5)


# ---- races ---------------------------------------------------------------------------------
@single
def test_an_event_row_written_twice_is_an_integrity_error_on_both_databases(
    app: Flask,
    engine: Engine,  # noqa: F811
) -> None:
    a_call(app)
    writer_for(app, engine).drain()
    with engine.connect() as connection:
        row = connection.execute(select(Event).limit(1)).mappings().one()
    again = {key: row[key] for key in row if key != "id"}
    sessions = database.sessions(engine)
    with pytest.raises(IntegrityError), sessions.begin() as db:
        insert_events(db, [again])
    assert events_of(engine, row["stream_id"]) == 1


@single
def test_a_batch_that_races_another_writers_row_is_written_again_without_it(
    app: Flask,
    postgres_url: str,  # noqa: F811  (SQLite has one writer at a time: no race to lose)
) -> None:
    pg = database.open_engine(postgres_url)
    database.upgrade(pg)
    a_call(app)
    writer = writer_for(app, pg)
    writer.drain()
    with pg.connect() as connection:
        first = connection.execute(select(Event).limit(1)).mappings().one()
    caller = "+14155550188"
    a_call(app, caller=caller)
    stream = app.extensions["omnivoice.events"]
    shard = stream.shard_of(caller)
    (entry_id, _), *_ = stream.redis.xrevrange(stream.keys.events(shard), count=1)
    raced = f"{shard}-{entry_id.decode() if isinstance(entry_id, bytes) else entry_id}"
    # Another writer holds that entry's row, uncommitted: this batch's COPY waits on it.
    blocker = pg.connect()
    held = blocker.begin()
    blocker.execute(
        sa.insert(Event).values(
            stream_id=raced, interaction_id=first["interaction_id"],
            conversation_id=first["conversation_id"], at=first["at"], kind="raced", data={},
        )
    )  # fmt: skip
    done: list[int] = []
    failed: list[BaseException] = []

    def write() -> None:
        try:
            done.append(writer.run_once())
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    racing = threading.Thread(target=write)
    racing.start()
    time.sleep(0.5)
    assert racing.is_alive()  # waiting on the uncommitted row
    held.commit()
    blocker.close()
    racing.join(10)
    assert not failed and done and done[0] > 0
    assert events_of(pg, raced) == 1  # the other writer's row, not a second one
    with pg.connect() as connection:
        kinds = connection.execute(select(Event.kind).where(Event.stream_id == raced)).scalar_one()
        written = connection.execute(select(func.count()).select_from(Event)).scalar_one()
    assert kinds == "raced"
    entries = sum(int(stream.redis.xlen(stream.keys.events(s))) for s in range(stream.shards))
    assert written == entries  # everything else of the second call is in
    pg.dispose()


# ---- the worker's priority -----------------------------------------------------------------
def thread_nice(pid: int) -> dict[int, int]:
    """The nice value of each of a process's threads (``/proc/<pid>/task/<tid>/stat``)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(task.name)] = int(fields[16])  # field 19 of stat: nice
    return found


@single
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
@pytest.mark.parametrize("nice", ["10", "0"])
def test_the_worker_writer_runs_at_the_configured_nice_and_its_other_threads_do_not(
    redis_client: object, make_app: Callable[..., Flask], tmp_path: Path, nice: str
) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    database.upgrade(database.open_engine(url))
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_client.test_prefix,  # type: ignore[attr-defined]
        "DATABASE_URL": url,
        "SECRET_KEY": "worker-test-secret",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HISTORY_WRITER_NICE": nice,
        "HANDOFF_WEBHOOK_URL": "",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "worker"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        lines = []
        for line in worker.stdout:
            lines.append(line)
            if "history writer" in line and "running" in line:
                break
        assert f"(nice {nice})" in lines[-1], lines
        values = thread_nice(worker.pid)
        assert values[worker.pid] == int(nice)  # the main thread: the writer
        others = [value for tid, value in values.items() if tid != worker.pid]
        assert others and all(value == 0 for value in others)  # queue, relay: full priority
    finally:
        worker.terminate()
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()


# ---- look-ups that must not read whole tables ---------------------------------------------
@single
def test_the_cards_lookups_of_notes_and_identities_can_use_their_indexes(
    app: Flask,
    postgres_url: str,  # noqa: F811
) -> None:
    pg = database.open_engine(postgres_url)
    database.upgrade(pg)
    a_call(app)
    writer_for(app, pg).drain()
    plans = {}
    with pg.connect() as connection:
        connection.execute(sa.text("SET enable_seqscan = off"))  # tiny tables: ask for indexes
        for name, statement in (("notes", card._NOTES), ("callers", card._CALLERS)):
            compiled = statement.params(ids=[1, 2]).compile(
                dialect=pg.dialect, compile_kwargs={"literal_binds": True}
            )
            rows = connection.execute(sa.text(f"EXPLAIN {compiled}")).scalars()
            plans[name] = "\n".join(rows)
    pg.dispose()
    assert "ix_events_agent_notes" in plans["notes"], plans["notes"]
    assert "ix_identities_customer" in plans["callers"], plans["callers"]

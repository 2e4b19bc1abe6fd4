"""What merges, exports and erasures must not forget of handoffs: callback requests, and the
bundles of calls the history has not written yet (real SQLite and PostgreSQL, real Redis, whole
calls through the signed front)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select

from context.history import database
from context.history.models import CallbackRequest, Identity
from tests.test_history import a_call, database_url, dial, postgres_url, writer_for

__all__ = ["database_url", "postgres_url"]  # fixtures


def callback_for(engine: object, number: str) -> int:
    """A callback request of the customer who has ``number``; its id."""
    with database.sessions(engine)() as db:  # type: ignore[arg-type]
        customer_id = db.scalar(select(Identity.customer_id).where(Identity.value == number))
        row = CallbackRequest(
            stream_id=f"1-{number}", customer_id=customer_id, number=number,
            reason="call me about my refund", status="open", at=datetime.now(UTC),
        )  # fmt: skip
        db.add(row)
        db.commit()
        return row.id


def owner_of(engine: object, callback_id: int) -> int | None:
    with database.sessions(engine)() as db:  # type: ignore[arg-type]
        row = db.get(CallbackRequest, callback_id)
        assert row is not None
        return row.customer_id


def test_a_merge_moves_callback_requests_and_its_undo_gives_them_back(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = make_app(DATABASE_URL=database_url)
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    a_call(app, caller="+14155550123")
    a_call(app, caller="+14155550124")
    writer_for(app, engine).drain()
    asked = callback_for(engine, "+14155550124")
    source = owner_of(engine, asked)
    runner = app.test_cli_runner()
    merged = runner.invoke(args=["customers", "merge", "+14155550124", "+14155550123"])
    assert merged.exit_code == 0, merged.output
    with database.sessions(engine)() as db:
        target = db.scalar(select(Identity.customer_id).where(Identity.value == "+14155550123"))
    assert owner_of(engine, asked) == target != source
    merge_id = merged.output.split("merge ", 1)[1].split(":", 1)[0]
    assert runner.invoke(args=["customers", "unmerge", merge_id]).exit_code == 0
    assert owner_of(engine, asked) == source
    engine.dispose()


def test_an_export_lists_the_customers_callback_requests(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = make_app(DATABASE_URL=database_url)
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    a_call(app, caller="+14155550123")
    writer_for(app, engine).drain()
    callback_for(engine, "+14155550123")
    exported = app.test_cli_runner().invoke(args=["customers", "export", "+14155550123"])
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.output)
    assert [c["reason"] for c in document["callback_requests"]] == ["call me about my refund"]
    engine.dispose()


def test_an_erasure_removes_a_handoff_the_history_has_not_written_yet(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    app = make_app(DATABASE_URL=database_url)
    engine = database.open_engine(database_url)
    database.upgrade(engine)
    first = dial(app)
    first.press("0")  # to an agent
    assert first.ended == "enqueue"
    first.transfer_ends("bridged")
    writer_for(app, engine).drain()
    late = dial(app)  # back to the queue at once; its events still wait in the stream
    assert late.ended == "enqueue"
    handoffs = app.extensions["omnivoice.handoffs"]
    bundle = handoffs.for_call(late.call_sid)
    assert bundle is not None
    erased = app.test_cli_runner().invoke(args=["customers", "erase", "+14155550123", "--yes"])
    assert erased.exit_code == 0, erased.output
    assert handoffs.for_call(late.call_sid) is None
    assert handoffs.get(bundle["id"]) is None
    engine.dispose()

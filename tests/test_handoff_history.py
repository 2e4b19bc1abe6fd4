"""What an agent writes follows the caller: an agent's note reaches the history (SQL), the
customer card, and the bundle of the caller's next handoff; a callback request becomes a row.

Whole calls through the signed front, the real history writer on SQLite and PostgreSQL, real
Redis on every topology.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from context.event_stream import EventStream
from context.handoffs import HandoffStore
from context.history.models import CallbackRequest, Event, Interaction
from ivr.states import EventName
from tests.test_history import (  # noqa: F401  (fixtures)
    database_url,
    dial,
    engine,
    postgres_url,
    writer_for,
)


def note_about(bundle: dict, text: str, agent: str = "alice") -> dict:
    """An ``agent_note`` event as the console writes it, about the call of ``bundle``."""
    return {
        "v": 1,
        "name": EventName.AGENT_NOTE.value,
        "at": time.time(),
        "channel": "voice",
        "caller": bundle["caller"]["number"],
        "call_sid": bundle["call_sid"],
        "conversation": bundle["conversation"],
        "flow": bundle["flow"]["id"],
        "version": bundle["flow"]["version"],
        "node": None,
        "data": {
            "agent": agent,
            "text": text,
            "disposition": "follow_up",
            "handoff_id": bundle["id"],
        },
    }


def test_a_note_follows_the_caller_into_the_next_handoff(
    make_app: Callable[..., Flask],
    engine: Engine,  # noqa: F811
) -> None:
    app = make_app()
    writer = writer_for(app, engine)
    handoffs: HandoffStore = app.extensions["omnivoice.handoffs"]
    stream: EventStream = app.extensions["omnivoice.events"]
    first = dial(app).press("0")  # the demo's main menu: 0 for an agent
    assert first.ended == "enqueue"
    bundle = handoffs.for_call(first.call_sid)
    assert bundle is not None and bundle["notes"] == [] and bundle["previous"] == []
    first.hang_up()
    writer.drain()
    text = "Wants OV 220 moved to Friday <script>alert(1)</script>"
    caller = bundle["caller"]["number"]
    assert stream.append(caller, [stream.encode(note_about(bundle, text))])
    writer.drain()
    with Session(engine) as db:
        interaction = db.scalars(
            select(Interaction).where(Interaction.contact_sid == first.call_sid)
        ).one()
        assert interaction.agent == "alice"
        assert interaction.summary == f"follow_up: {text}"
        kinds = db.scalars(select(Event.kind).where(Event.interaction_id == interaction.id))
        assert EventName.AGENT_NOTE.value in set(kinds)
    back = dial(app)  # within the resume window: straight back to the queue
    assert back.ended == "enqueue"
    again = handoffs.for_call(back.call_sid)
    assert again is not None
    assert again["previous"] == [bundle["id"]]
    assert again["resumes"] == 1
    [note] = again["notes"]
    assert (note["agent"], note["text"], note["disposition"]) == ("alice", text, "follow_up")
    assert note["call_sid"] == first.call_sid
    assert "calling back" in again["summary"]
    assert again["recent_contacts"][0]["sid"] == first.call_sid


def test_a_callback_request_is_recorded_once(
    make_app: Callable[..., Flask],
    engine: Engine,  # noqa: F811
) -> None:
    app = make_app()
    writer = writer_for(app, engine)
    call = dial(app).press("0")
    call.transfer_ends("queue-full")
    assert "call you back" in call.last_heard
    call.press("1")
    assert call.ended == "hangup"
    writer.drain()
    writer.drain()  # a second pass finds nothing new
    with Session(engine) as db:
        [row] = db.scalars(select(CallbackRequest)).all()
        assert row.number == call.caller
        assert row.status == "open"
        assert row.call_sid == call.call_sid
        assert row.handoff_id and row.handoff_id.startswith("HO")
        assert row.customer_id is not None

"""A whole call that texts a link and waits on the line for the page, through the webhooks and
real Redis: the ``message_queued`` event carries the sealed job with the save, the hold loop
polls, a submission (made here as the page does, through ``ConversationService.amend``) and the
call's redirect to its answer URL make the call say the pick, and a submission made after the
call ended is picked up by the caller's next call."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from sqlalchemy import select

from context.history import database
from context.history.models import Event
from context.history.writer import HistoryWriter
from conversation.message_jobs import open_job
from ivr import links
from ivr.session import Session
from ivr.states import EventName, Waiting
from ivr.turn import Note
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import CALLER
from webhooks.voice_urls import answer_url

FLOW = """\
    id: rebook
    numbers: ["+14155550100"]
    resume: {within: 30m, ask: false}
    sensitive: [pin]
    start: intro
    pages:
      flights:
        title: Pick a new flight
        choices: {field: flight, items: options, value: "{{ item }}", label: "{{ item }}"}
    nodes:
      intro:
        set: {options: [OV 105, OV 109], pin: "4321"}
        send_sms: {body: "Your code {{ pin }}. Pick a flight: {{ link('flights') }}"}
        say: I've texted you a link. Pick a flight and I'll confirm it here.
        next: wait
      wait:
        wait_for: {page: flights, timeout: 2m, on_submit: confirm, on_timeout: by_phone}
      confirm:
        gather: {prompt: "You picked flight {{ flights.flight }}. Press 1 to confirm.", num_digits: 1}
        on: {"1": done}
      done:
        say: Confirmed. Goodbye.
        hangup: true
      by_phone:
        say: Let's do it by phone instead.
        hangup: true
"""


@pytest.fixture
def desk(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "rebook.yaml").write_text(textwrap.dedent(FLOW))
    return make_app()


def events(app: Flask) -> list[dict[str, Any]]:
    stream = app.extensions["omnivoice.events"]
    return [orjson.loads(f[b"e"]) for _id, f in stream.redis.xrange(stream.key_for(CALLER))]


def session_of(app: Flask) -> Session:
    session = app.extensions["omnivoice.store"].load(CALLER).session
    assert session is not None
    return session


def submit(app: Flask, flight: str) -> Session:
    """Submit the page as the page blueprint does: on the same session, with its event."""

    def change(session: Session, now: float) -> tuple[Session, list[Note]]:
        state = {**session.pages.get("flights", {}), "status": "submitted", "at": now}
        variables = {**session.variables, "flights": {"flight": flight}}
        changed = session.evolve(pages={**session.pages, "flights": state}, variables=variables)
        return changed, [Note(EventName.PAGE_SUBMITTED, {"page": "flights"})]

    saved = app.extensions["omnivoice.calls"].amend(CALLER, change)
    assert saved is not None
    return saved


def test_the_text_is_queued_with_the_save_and_its_job_opens_with_the_real_body(
    desk: Flask,
) -> None:
    call = Call(FlaskTransport(desk), AUTH_TOKEN).dial()
    assert "I've texted you a link" in " ".join(call.heard)
    [queued] = [e for e in events(desk) if e["name"] == EventName.MESSAGE_QUEUED]
    data = queued["data"]
    assert data["channel"] == "sms" and data["node"] == "intro" and data["via"] == "flow"
    assert "4321" not in orjson.dumps(data).decode().replace(data["job"], "")
    job = open_job(data, desk.extensions["omnivoice.store"].codec.sealer)
    [link] = job["links"]
    assert job["to"] == CALLER and job["call_sid"] == call.call_sid
    assert job["body"] == f"Your code 4321. Pick a flight: {links.mark(link['id'])}"
    assert job["conversation"] == queued["conversation"] and job["caller"] == CALLER
    session = session_of(desk)
    assert session.waiting == Waiting.PAGE
    assert session.messages[data["key"]]["status"] == "queued"


def test_the_hold_loop_polls_until_the_page_is_submitted_and_the_redirect_says_the_pick(
    desk: Flask,
) -> None:
    call = Call(FlaskTransport(desk), AUTH_TOKEN).dial()
    call.silence()  # one round of the hold loop passes
    assert "Take your time with the page" in " ".join(call.heard)
    session = submit(desk, "OV 109")
    call.redirected(answer_url("", session.step))
    assert call.last_heard == "You picked flight OV 109. Press 1 to confirm."
    call.press("1")
    assert call.ended == "hangup"
    names = [e["name"] for e in events(desk)]
    assert names.index(EventName.PAGE_SUBMITTED) < len(names) - 1


def test_a_redirect_racing_the_hold_loop_is_answered_once(desk: Flask) -> None:
    call = Call(FlaskTransport(desk), AUTH_TOKEN).dial()
    session = submit(desk, "OV 105")
    url = answer_url("", session.step)
    call.redirected(url)
    first = call.last_heard
    call.redirected(url)  # the hold loop's own redirect arriving late
    assert call.last_heard == first == "You picked flight OV 105. Press 1 to confirm."
    assert session_of(desk).step == session.step + 1


def test_a_key_pressed_while_waiting_goes_on_by_phone(desk: Flask) -> None:
    call = Call(FlaskTransport(desk), AUTH_TOKEN).dial().press("0")
    assert call.last_heard == "Let's do it by phone instead."
    assert session_of(desk).waiting is None


def test_a_submission_after_the_call_ended_is_picked_up_by_the_next_call(desk: Flask) -> None:
    first = Call(FlaskTransport(desk), AUTH_TOKEN).dial()
    first.hang_up()
    assert session_of(desk).status == "interrupted"
    submit(desk, "OV 105")
    again = Call(FlaskTransport(desk), AUTH_TOKEN).dial()
    assert "You picked flight OV 105. Press 1 to confirm." in " ".join(again.heard)


def test_the_history_records_the_queued_text_without_its_sealed_job(
    desk: Flask, tmp_path: Path
) -> None:
    engine = database.open_engine(f"sqlite:///{tmp_path / 'history.db'}")
    database.upgrade(engine)
    Call(FlaskTransport(desk), AUTH_TOKEN).dial().hang_up()
    stream = desk.extensions["omnivoice.events"]
    HistoryWriter(stream, database.sessions(engine), "w1").drain()
    with database.sessions(engine)() as db:
        [queued] = db.scalars(select(Event).where(Event.kind == "message_queued")).all()
    assert queued.data["channel"] == "sms" and queued.data["node"] == "intro"
    assert "job" not in queued.data and "4321" not in orjson.dumps(queued.data).decode()
    engine.dispose()

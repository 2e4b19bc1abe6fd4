"""Inbound texts through the signed Twilio front: STOP/START/HELP, opt-outs in the history,
a known caller's text joining their conversation, flow replies and retried webhooks.

Real Redis (sessions, the event stream, the reply cache), real SQLite and PostgreSQL for the
consents and the history writer, real calls through the simulator.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from sqlalchemy import Engine, select

from context.history import consents, database
from context.history.models import Consent, Event, Interaction
from context.history.writer import HistoryWriter
from context.redis_client import connect
from conversation.texts import InboundTexts
from ivr.keywords import Keyword, keyword
from ivr.turn import Gather, Pause, Play, Say
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import post, twiml
from tests.test_history import postgres_url  # noqa: F401  (a fixture: a schema of its own)
from webhooks.sms import parse_text
from webhooks.sms_text import SmsRenderer, text_of

OURS = "+14155550177"
SENDER = "+14155550123"
STRANGER = "+14155550999"
DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test"

FLOW = """
id: rebook
numbers: ["+14155550177"]
start: offer
fallback: done
nodes:
  offer:
    say: Your flight was cancelled.
    gather:
      prompt: Press 1 or text 1 to take flight OV 123 at 9:40.
      num_digits: 1
    on:
      "1": picked
      "0": agent
  agent:
    transfer: {queue: support}
  picked:
    say: You picked flight OV 123 at 9:40.
    play: https://example.com/chime.mp3
    pause: 1
    gather:
      prompt: Press 1 or text OK to confirm.
      num_digits: 1
    on:
      "1": done
  done:
    say: Your new flight is booked. Goodbye.
    hangup: true
sms:
  replies: {"1": picked, " OK ": done}
  otherwise: Text 1 to take flight OV 123.
  unknown: We have no open request from you.
  help: Omnivoice Air rebooking. Text 1 to take the new flight.
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(history_url: str) -> Iterator[Engine]:
    engine = database.open_engine(history_url)
    database.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def apps(make_app: Callable[..., Flask], flows_dir: Path) -> Iterator[Callable[[str], Flask]]:
    """Apps on the rebooking flow and the history database at a URL; their databases closed
    after the test."""
    (flows_dir / "rebook.yaml").write_text(textwrap.dedent(FLOW))
    made: list[Flask] = []

    def build(url: str) -> Flask:
        made.append(make_app(DATABASE_URL=url))
        return made[-1]

    yield build
    for app in made:
        app.extensions["omnivoice.texts"].history().kw["bind"].dispose()


@pytest.fixture
def sms_app(apps: Callable[[str], Flask], engine: Engine) -> Flask:
    return apps(engine.url.render_as_string(hide_password=False))


def text(
    app: Flask, body: str, sid: str = "SM" + "1" * 32, sender: str = SENDER, **extra: str
) -> ET.Element:
    """Text ``body`` to our number, signed; the parsed messaging reply."""
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": OURS,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
        **extra,
    }
    return twiml(post(app.test_client(), "/sms", params))


def said(root: ET.Element) -> list[str]:
    return [(m.text or "").strip() for m in root.iter("Message")]


def sid(n: int) -> str:
    return f"SM{n:032d}"


def writer(app: Flask, engine: Engine) -> HistoryWriter:
    return HistoryWriter(app.extensions["omnivoice.events"], database.sessions(engine), "w1")


def stream_events(app: Flask) -> list[dict[str, Any]]:
    stream = app.extensions["omnivoice.events"]
    found = []
    for shard in range(stream.shards):
        for _, fields in stream.redis.xrange(stream.keys.events(shard)):
            found.append(orjson.loads(next(iter(fields.values()))))
    return found


def may_text(engine: Engine, number: str = SENDER) -> bool:
    with database.sessions(engine)() as db:
        return consents.decide(db, number, "sms", "service").allowed


def a_call(app: Flask) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, caller=SENDER, called=OURS).dial()


# ---- the pure pieces -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "word"),
    [
        ("STOP", Keyword.STOP), (" stop ", Keyword.STOP), ("StopAll", Keyword.STOP),
        ("unsubscribe", Keyword.STOP), ("Cancel", Keyword.STOP), ("end", Keyword.STOP),
        ("QUIT", Keyword.STOP), ("start", Keyword.START), ("Yes", Keyword.START),
        ("unstop", Keyword.START), ("help", Keyword.HELP), ("INFO", Keyword.HELP),
        ("stop texting me", None), ("1", None), ("", None), ("\x00stop", None),
    ],
)  # fmt: skip
def test_keywords_are_the_whole_message_in_any_case(body: str, word: Keyword | None) -> None:
    assert keyword(body) is word


def test_the_sms_renderer_keeps_words_and_drops_sounds() -> None:
    actions = (
        Say("You picked OV 123."),
        Play("https://example.com/a.mp3"),
        Pause(2),
        Gather(prompt=(Say("Text yes to confirm."), Pause(1))),
    )
    assert text_of(actions) == "You picked OV 123. Text yes to confirm."
    root = ET.fromstring(SmsRenderer().render(actions, "", 3))
    assert [m.text for m in root.iter("Message")] == ["You picked OV 123. Text yes to confirm."]
    assert list(ET.fromstring(SmsRenderer().render((Pause(1),), "", 0))) == []


# ---- the front -------------------------------------------------------------------------------
def test_an_unsigned_text_is_refused(sms_app: Flask) -> None:
    client = sms_app.test_client()
    response = client.post("/sms", data={"MessageSid": sid(1), "From": SENDER, "Body": "STOP"})
    assert response.status_code == 403
    bad = client.post(
        "/sms",
        data={"MessageSid": sid(1), "From": SENDER, "Body": "STOP"},
        headers={"X-Twilio-Signature": "forged"},
    )
    assert bad.status_code == 403
    assert stream_events(sms_app) == []


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"From": SENDER, "Body": "hi"}, "MessageSid is missing"),
        ({"MessageSid": sid(2), "Body": "hi"}, "From is missing"),
        ({"MessageSid": sid(2), "From": SENDER, "Body": "x" * 1601}, "over the 1600"),
    ],
)
def test_texts_twilio_never_sends_get_a_400_saying_why(
    sms_app: Flask, params: dict[str, str], reason: str
) -> None:
    response = post(sms_app.test_client(), "/sms", params)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert stream_events(sms_app) == []


def test_garbage_in_a_text_gets_the_unknown_reply_and_is_kept(sms_app: Flask) -> None:
    root = text(sms_app, "\x00\x07\ufffe ☃ <b>&amp;", sid(3), extra_param="tolerated")
    assert said(root) == ["We have no open request from you."]
    (event,) = stream_events(sms_app)
    assert event["name"] == "sms_received" and event["data"]["message_sid"] == sid(3)


# ---- STOP, START, HELP -----------------------------------------------------------------------
def test_stop_then_start_are_recorded_and_decide_follows(sms_app: Flask, engine: Engine) -> None:
    assert may_text(engine)
    root = text(sms_app, " Stop ", sid(10))
    assert "unsubscribed" in said(root)[0]
    assert not may_text(engine)  # written at once
    assert said(text(sms_app, "1", sid(11))) == []  # nothing goes to an opted-out number
    assert said(text(sms_app, "help", sid(12))) == []
    root = text(sms_app, "unstop", sid(13))
    assert "subscribed again" in said(root)[0]
    assert may_text(engine)
    names = [e["name"] for e in stream_events(sms_app)]
    assert names == ["sms_opted_out", "sms_received", "sms_opted_in"]


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "cancel", "END", "quit"])
def test_every_stop_synonym_opts_out(sms_app: Flask, engine: Engine, word: str) -> None:
    assert "unsubscribed" in said(text(sms_app, word, sid(20)))[0]
    assert not may_text(engine)


def test_a_stop_withdraws_every_yes_to_texts(sms_app: Flask, engine: Engine) -> None:
    with database.sessions(engine).begin() as db:
        consents.record(db, SENDER, "sms", "marketing", True, "web form", datetime.now(UTC))
    text(sms_app, "STOP", sid(21))
    with database.sessions(engine)() as db:
        assert not consents.decide(db, SENDER, "sms", "marketing").allowed
        assert consents.decide(db, SENDER, "voice", "service").allowed  # texts only


def test_help_answers_the_flows_text(sms_app: Flask) -> None:
    assert said(text(sms_app, "INFO", sid(22))) == [
        "Omnivoice Air rebooking. Text 1 to take the new flight."
    ]


def test_advanced_opt_out_is_recorded_without_a_second_confirmation(
    sms_app: Flask, engine: Engine
) -> None:
    assert said(text(sms_app, "arret", sid(23), OptOutType="STOP")) == []
    assert not may_text(engine)
    assert said(text(sms_app, "HELP", sid(24), OptOutType="HELP")) == []


def test_sql_down_during_stop_the_reply_goes_out_and_the_writer_records_it_later(
    apps: Callable[[str], Flask], engine: Engine
) -> None:
    down = apps(DOWN_URL)
    root = text(down, "STOP", sid(30))
    assert "unsubscribed" in said(root)[0]
    assert may_text(engine)  # not yet: the database was down
    assert writer(down, engine).drain() == 1
    assert not may_text(engine)
    assert writer(down, engine).drain() == 0  # applied once
    with database.sessions(engine)() as db:
        (row,) = db.scalars(select(Consent)).all()
        assert row.granted is False and row.source == "texted STOP"


def test_an_old_stop_applied_late_does_not_undo_a_newer_start(
    apps: Callable[[str], Flask], engine: Engine
) -> None:
    down = apps(DOWN_URL)
    text(down, "STOP", sid(31))  # reaches SQL only through the writer
    up = apps(engine.url.render_as_string(hide_password=False))
    text(up, "START", sid(32))  # written at once
    writer(up, engine).drain()  # then the writer applies both, in order
    assert may_text(engine)


def test_a_retried_text_gets_the_same_reply_and_records_nothing_twice(sms_app: Flask) -> None:
    first = said(text(sms_app, "STOP", sid(40)))
    again = said(text(sms_app, "STOP", sid(40)))
    assert first == again and "unsubscribed" in first[0]
    assert [e["name"] for e in stream_events(sms_app)] == ["sms_opted_out"]


def test_a_retried_text_that_got_no_reply_gets_no_reply_again(sms_app: Flask) -> None:
    first = text(sms_app, "arret", sid(41), OptOutType="STOP")  # Twilio confirmed it itself
    again = text(sms_app, "arret", sid(41), OptOutType="STOP")  # a valid, empty <Response/>
    assert said(first) == said(again) == [] and again.tag == "Response"
    assert [e["name"] for e in stream_events(sms_app)] == ["sms_opted_out"]


# ---- known callers ---------------------------------------------------------------------------
def test_a_flow_reply_runs_the_node_and_answers_in_text(sms_app: Flask) -> None:
    call = a_call(sms_app)
    assert "Press 1 or text 1 to take flight OV 123 at 9:40." in call.heard[-1]
    root = text(sms_app, "1", sid(50))
    assert said(root) == ["You picked flight OV 123 at 9:40. Press 1 or text OK to confirm."]
    retried = text(sms_app, "1", sid(50))
    assert said(retried) == said(root)
    assert said(text(sms_app, "  ok ", sid(51))) == ["Your new flight is booked. Goodbye."]
    session = sms_app.extensions["omnivoice.store"].load(SENDER).session
    assert session.node == "done"
    received = [e for e in stream_events(sms_app) if e["name"] == "sms_received"]
    assert [e["data"]["message_sid"] for e in received] == [sid(50), sid(51)]
    assert all(
        e["conversation"] == session.conversation and e["channel"] == "sms" for e in received
    )


def test_the_live_call_follows_where_the_text_took_the_flow(sms_app: Flask) -> None:
    call = a_call(sms_app)
    text(sms_app, "1", sid(52))
    call.press("1")  # the call's gather was still the offer's: it hears the pick's question
    assert call.heard[-1] == "Press 1 or text OK to confirm."


def test_a_text_matching_no_reply_gets_otherwise(sms_app: Flask) -> None:
    a_call(sms_app)
    assert said(text(sms_app, "what?", sid(53))) == ["Text 1 to take flight OV 123."]


def test_an_unknown_sender_gets_the_unknown_reply(sms_app: Flask) -> None:
    a_call(sms_app)  # someone else's call
    assert said(text(sms_app, "1", sid(54), sender=STRANGER)) == [
        "We have no open request from you."
    ]


def test_a_known_callers_text_joins_their_conversation_in_the_history(
    sms_app: Flask, engine: Engine
) -> None:
    call = a_call(sms_app)
    text(sms_app, "what?", sid(55))
    writer(sms_app, engine).drain()
    with database.sessions(engine)() as db:
        voice = db.scalars(
            select(Interaction).where(Interaction.contact_sid == call.call_sid)
        ).one()
        sms = db.scalars(select(Interaction).where(Interaction.contact_sid == sid(55))).one()
        assert sms.channel == "sms" and sms.direction == "inbound"
        assert sms.conversation_id == voice.conversation_id
        assert sms.customer_id == voice.customer_id is not None
        kinds = db.scalars(select(Event.kind).where(Event.interaction_id == sms.id)).all()
        assert kinds == ["sms_received"]


def test_a_customer_the_card_knows_joins_their_open_conversation(
    sms_app: Flask, engine: Engine
) -> None:
    call = a_call(sms_app)
    call.hang_up()
    writer(sms_app, engine).drain()  # the caller's card now names the open conversation
    store = sms_app.extensions["omnivoice.store"]
    conversation = store.load(SENDER).session.conversation
    store.delete(store.keys.session(SENDER))  # the session is gone (expired, say)
    assert said(text(sms_app, "1", sid(56))) == ["Text 1 to take flight OV 123."]
    (received,) = [e for e in stream_events(sms_app) if e["name"] == "sms_received"]
    assert received["conversation"] == conversation
    writer(sms_app, engine).drain()
    with database.sessions(engine)() as db:
        voice = db.scalars(
            select(Interaction).where(Interaction.contact_sid == call.call_sid)
        ).one()
        sms = db.scalars(select(Interaction).where(Interaction.contact_sid == sid(56))).one()
        assert sms.conversation_id == voice.conversation_id and sms.channel == "sms"


def test_redis_down_a_stop_is_still_recorded_and_confirmed(
    apps: Callable[[str], Flask], make_app: Callable[..., Flask], engine: Engine
) -> None:
    apps(engine.url.render_as_string(hide_password=False))  # the flow file is written
    dead = connect("redis://127.0.0.1:1/0", 0.2, dev_mode=False)  # as the app connects
    down = make_app(
        REDIS_CLIENT=dead, DATABASE_URL=engine.url.render_as_string(hide_password=False)
    )
    try:
        assert "unsubscribed" in said(text(down, "STOP", sid(60)))[0]
        assert not may_text(engine)
        assert said(text(down, "hello", sid(61))) == []  # no reply rather than an error
    finally:
        down.extensions["omnivoice.texts"].history().kw["bind"].dispose()
        dead.close()


def test_a_text_does_not_move_a_caller_handed_over_to_a_person(sms_app: Flask) -> None:
    call = a_call(sms_app).press("0")
    assert call.ended == "enqueue", call.heard
    assert said(text(sms_app, "1", sid(57))) == ["Text 1 to take flight OV 123."]
    session = sms_app.extensions["omnivoice.store"].load(SENDER).session
    assert session.status == "transferred" and session.node == "agent"


class FlakyHistory:
    """The history database's factory, failing in a way nobody handles the first time."""

    def __init__(self, real: Callable[[], Any]) -> None:
        self.real = real
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a fault nobody planned for")
        return self.real()


def test_a_text_whose_handling_failed_is_handled_afresh_when_twilio_retries(
    sms_app: Flask,
) -> None:
    used = sms_app.extensions["omnivoice.texts"]
    texts = InboundTexts(used.service, used.replies, FlakyHistory(used.history), SmsRenderer())
    hello = parse_text({"MessageSid": sid(70), "From": SENDER, "To": OURS, "Body": "hello"})
    with pytest.raises(RuntimeError):
        texts.receive(hello)
    assert stream_events(sms_app) == []
    reply = texts.receive(hello)  # the retry: not "answered before" with nothing
    assert reply is not None and "We have no open request from you." in reply
    assert [e["name"] for e in stream_events(sms_app)] == ["sms_received"]


def test_a_text_reaches_the_flows_session_kept_aside_for_a_call_to_another_number(
    sms_app: Flask,
) -> None:
    a_call(sms_app).hang_up()
    other = Call(FlaskTransport(sms_app), AUTH_TOKEN, caller=SENDER).dial()  # the airline's number
    other.hang_up()
    store = sms_app.extensions["omnivoice.store"]
    assert store.load(SENDER).session.flow_id == "airline"
    assert said(text(sms_app, "1", sid(58))) == [
        "You picked flight OV 123 at 9:40. Press 1 or text OK to confirm."
    ]
    assert store.load_parked(SENDER, "rebook").session.node == "picked"
    assert store.load(SENDER).session.flow_id == "airline"  # untouched

"""``ivr.messages.update``: a message's status moves forward only, keeping what Twilio said."""

from __future__ import annotations

import pytest

from ivr import messages
from ivr.session import Session
from ivr.states import EventName
from ivr.turn import SendMessage

KEY = "MK" + "a" * 30


def _session() -> Session:
    session = Session(caller="+14155550123", flow_id="airline", flow_version="v1", call_sid="CA1")
    message = SendMessage(KEY, "sms", "+14155550123", "Hi", "offer")
    return messages.queued(session, message, 1.0)


def test_sent_then_delivered() -> None:
    sent = messages.update(_session(), KEY, "sent", 2.0, sid="SM1")
    assert sent is not None
    session, note = sent
    assert session.messages[KEY]["status"] == "sent" and session.messages[KEY]["sid"] == "SM1"
    assert note.name is EventName.MESSAGE_SENT
    assert note.data == {
        "key": KEY, "channel": "sms", "node": "offer", "status": "sent", "sid": "SM1",
        "error_code": None, "error": None,
    }  # fmt: skip
    delivered = messages.update(session, KEY, "delivered", 3.0)
    assert delivered is not None and delivered[1].name is EventName.MESSAGE_DELIVERED
    assert delivered[0].messages[KEY]["sid"] == "SM1"  # kept
    assert messages.latest(delivered[0], "sms")["status"] == "delivered"  # type: ignore[index]


@pytest.mark.parametrize(
    ("first", "then"),
    [("delivered", "sent"), ("failed", "sent"), ("sent", "sent"), ("undelivered", "delivered")],
)
def test_a_status_never_moves_backwards(first: str, then: str) -> None:
    moved = messages.update(_session(), KEY, first, 2.0)
    assert moved is not None
    assert messages.update(moved[0], KEY, then, 3.0) is None


@pytest.mark.parametrize("status", ["queued", "exploded", ""])
def test_statuses_that_are_not_news_change_nothing(status: str) -> None:
    assert messages.update(_session(), KEY, status, 2.0) is None


def test_an_unknown_message_changes_nothing() -> None:
    assert messages.update(_session(), "MK" + "b" * 30, "sent", 2.0) is None


def test_a_failure_keeps_a_short_error_and_its_code() -> None:
    moved = messages.update(_session(), KEY, "failed", 2.0, error_code=21211, error="x" * 500)
    assert moved is not None
    entry = moved[0].messages[KEY]
    assert entry["error_code"] == "21211" and len(entry["error"]) == messages.MAX_ERROR
    assert moved[1].name is EventName.MESSAGE_FAILED


def test_opted_out_is_its_own_event() -> None:
    moved = messages.update(_session(), KEY, "opted_out", 2.0)
    assert moved is not None and moved[1].name is EventName.MESSAGE_OPTED_OUT

"""Whole calls through the demo flow, driven like Twilio drives them."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis

from simulator import Call


def session_doc(redis_client: redis.Redis, caller: str) -> dict:
    key = f"{redis_client.test_prefix}:{{{caller}}}:session"  # type: ignore[attr-defined]
    return json.loads(redis_client.hget(key, "doc"))


def test_incoming_call_gets_the_main_menu_gather(call: Callable[..., Call]) -> None:
    c = call().dial()
    gather = c.last.find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf speech"
    assert gather.get("numDigits") == "1"
    assert gather.get("action", "").startswith("/voice/answer?step=")
    assert "For flight status, press 1" in c.last_heard
    redirect = c.last.find("Redirect")
    assert redirect is not None and redirect.text == gather.get("action")


def test_status_call_walks_to_the_end(call: Callable[..., Call], redis_client: redis.Redis) -> None:
    c = call().dial()
    c.press("1")
    assert "confirmation code" in c.last_heard
    c.press("123456")
    assert "couldn't find a booking" in c.last_heard
    assert "1 2 3 4 5 6" in c.last_heard
    c.say("X Y Z 7 8 9.")
    assert "OV 220 from London to Boston is on time" in c.last_heard
    c.press("2")
    assert "Thank you for flying" in c.last_heard
    assert c.ended == "hangup"
    doc = session_doc(redis_client, "+14155550123")
    assert doc["status"] == "completed"
    assert doc["variables"]["code"] == "XYZ789"
    assert doc["variables"]["booking"]["flight"] == "OV 220"


def test_rebooking_by_speech(call: Callable[..., Call], redis_client: redis.Redis) -> None:
    c = call().dial()
    c.say("I want to change my booking")
    c.say("a b c one two three")
    assert "Press 1 for flight OV 105 at 1:10 PM" in c.last_heard
    c.say("two")
    assert "You are now on flight OV 109, departing at 5:45 PM" in c.last_heard
    doc = session_doc(redis_client, "+14155550123")
    assert doc["variables"]["option"] == "2"
    assert doc["variables"]["rebooked"] == {
        "code": "ABC123",
        "rebooked": True,
        "flight": "OV 109",
        "departs": "5:45 PM",
    }


def test_agent_transfer_carries_context(
    call: Callable[..., Call], redis_client: redis.Redis
) -> None:
    c = call().dial()
    c.press("1")
    c.press("ABC123")  # not keyable: garbage for a DTMF gather, so a no-match...
    assert "didn't sound like a confirmation code" in c.last_heard
    c.say("A B C 1 2 3")
    assert "delayed by 95 minutes" in c.last_heard
    c.press("9")  # ...and 9 is no route on the yes/no menu
    assert "Sorry, I didn't get that" in c.last_heard
    c.press("9")
    c.press("9")
    assert c.ended == "enqueue"
    assert c.last.find("Enqueue").text == "support"
    doc = session_doc(redis_client, "+14155550123")
    assert doc["status"] == "transferred"
    assert doc["handoff"] == {
        "intent": "status",
        "code": "ABC123",
        "booking.flight": "OV 101",
        "booking.status": "delayed",
    }


def test_silence_escalates_then_transfers(call: Callable[..., Call]) -> None:
    c = call().dial()
    c.silence()
    assert c.last_heard.startswith("Sorry, I didn't hear anything.")
    c.silence()
    assert c.last_heard.startswith("You can also say agent at any time.")
    c.silence()
    assert "Connecting you to an agent." in c.last_heard
    assert c.ended == "enqueue"


def test_low_confidence_speech_is_a_no_match(call: Callable[..., Call]) -> None:
    c = call().dial()
    c.say("status", confidence=0.1)
    assert c.last_heard.startswith("Sorry, I didn't get that.")
    c.say("status", confidence=0.9)
    assert "confirmation code" in c.last_heard


def test_status_callback_marks_an_unfinished_call_interrupted(
    call: Callable[..., Call], redis_client: redis.Redis
) -> None:
    c = call().dial()
    c.press("1")
    assert c.hang_up("completed") == 204
    doc = session_doc(redis_client, "+14155550123")
    assert doc["status"] == "interrupted"
    assert doc["ended_reason"] == "call completed at confirmation"
    assert doc["call_status"] == "completed"

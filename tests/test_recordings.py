"""Voicemail through the real front and real Redis: a transfer nobody answers leads to a record
node, the caller leaves a message (or none), Twilio's recording status and transcription
callbacks come later without the caller's number, and all of it is kept on the session and
recorded as ``recording`` events."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import orjson
import pytest
from flask import Flask

from console import board
from ivr.session import Session
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import CALLER

FLOW = """\
    id: desk
    numbers: ["+14155550100"]
    start: menu
    nodes:
      menu:
        gather: {prompt: Press 1 for the desk., num_digits: 1}
        on: {"1": desk_phone, "2": voicemail}
      desk_phone:
        transfer:
          number: "+1 415 555 0199"
          on: {no_answer: voicemail, busy: voicemail}
      voicemail:
        say: Nobody is free. Leave a message after the tone and press pound.
        record: {max_length: 90s, finish_on_key: "#", transcribe: true, save_as: message}
        next: thanks
      thanks:
        branch:
          - {if: "message.url", then: got_it}
        next: no_message
      no_message:
        say: We did not hear a message. Goodbye.
        hangup: true
      got_it:
        say: "Thanks, we have your {{ message.duration }} second message. Goodbye."
        hangup: true
"""


@pytest.fixture
def desk(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "desk.yaml").write_text(textwrap.dedent(FLOW))
    return make_app()


def at_voicemail(app: Flask) -> Call:
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial().press("1")
    assert call.ended == "dial"
    return call.transfer_ends("no-answer")


def session_of(app: Flask, call: Call) -> Session:
    session = app.extensions["omnivoice.store"].load(CALLER, call.call_sid).session
    assert session is not None and session.call_sid == call.call_sid
    return session


def recording_events(app: Flask) -> list[dict[str, Any]]:
    stream = app.extensions["omnivoice.events"]
    items = stream.redis.xrange(stream.key_for(CALLER))
    events = [orjson.loads(fields[b"e"]) for _id, fields in items]
    return [event for event in events if event["name"] == "recording"]


def query(url: str | None) -> dict[str, str]:
    assert url is not None
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def record_verb(call: Call) -> ET.Element:
    verb = call.last.find("Record")
    assert verb is not None, ET.tostring(call.last)
    return verb


def test_no_answer_leads_to_a_record_with_every_setting(desk: Flask) -> None:
    call = at_voicemail(desk)
    assert call.last_heard == "Nobody is free. Leave a message after the tone and press pound."
    assert call.record is not None
    verb = record_verb(call)
    assert (verb.get("maxLength"), verb.get("finishOnKey"), verb.get("playBeep")) == (
        "90",
        "#",
        "true",
    )
    assert verb.get("transcribe") == "true"
    assert urlsplit(verb.get("action")).path == "/voice/record"
    callback = verb.get("recordingStatusCallback")
    assert urlsplit(callback).path == "/voice/recording"
    assert query(callback) == {"node": "voicemail", "c": CALLER}
    assert verb.get("transcribeCallback") == callback
    assert verb.get("recordingStatusCallbackEvent") == "completed absent"
    redirect = call.last.find("Redirect")
    assert redirect is not None and redirect.text == verb.get("action")


def test_a_message_is_kept_on_the_session_and_recorded_as_an_event(desk: Flask) -> None:
    call = at_voicemail(desk).leave_message(duration=17, digits="#")
    assert call.last_heard == "Thanks, we have your 17 second message. Goodbye."
    assert call.ended == "hangup"
    session = session_of(desk, call)
    kept = {"url": call.recording_link, "duration": 17, "digits": "#"}
    assert session.recordings == {"voicemail": {**kept, "status": "recorded"}}
    assert session.variables["message"] == kept
    [event] = recording_events(desk)
    assert event["node"] == "voicemail" and event["call_sid"] == call.call_sid
    assert event["data"]["url"] == call.recording_link
    assert event["data"]["duration"] == 17


def test_the_status_and_transcription_callbacks_update_the_recording(desk: Flask) -> None:
    call = at_voicemail(desk).leave_message(duration=17)
    call.hang_up()
    assert call.recording_processed("completed", duration=18) == 204
    transcribed = call.recording_processed(
        "completed",
        duration=18,
        TranscriptionStatus="completed",
        TranscriptionText="Please call me back about my refund.",
        TranscriptionSid="TR" + "0" * 32,
    )
    assert transcribed == 204
    recording = session_of(desk, call).recordings["voicemail"]
    assert recording["status"] == "completed" and recording["duration"] == 18
    assert recording["sid"] == call.recording_sid
    assert recording["transcription"] == "Please call me back about my refund."
    events = recording_events(desk)
    assert [e["data"]["status"] for e in events] == ["recorded", "completed", "completed"]
    assert events[-1]["data"]["transcription_status"] == "completed"


def test_silence_records_nothing_and_the_flow_goes_on(desk: Flask) -> None:
    call = at_voicemail(desk).leave_nothing()
    assert call.last_heard == "We did not hear a message. Goodbye."
    recording = session_of(desk, call).recordings["voicemail"]
    assert recording == {"url": None, "duration": 0, "digits": None, "status": "empty"}
    assert call.recording_processed("absent", duration=0) == 204
    assert session_of(desk, call).recordings["voicemail"]["status"] == "absent"


def test_a_retried_message_webhook_gets_the_same_reply_and_moves_nothing(desk: Flask) -> None:
    call = at_voicemail(desk)
    action = record_verb(call).get("action") or ""
    form = {
        "RecordingUrl": "https://api.twilio.com/rec/RE1",
        "RecordingDuration": "5",
        "Digits": "#",
    }
    first = post_signed(desk, call, action, form)
    step = session_of(desk, call).step
    again = post_signed(desk, call, action, form)
    assert again == first
    assert session_of(desk, call).step == step
    assert len(recording_events(desk)) == 1


def test_a_recording_of_an_unknown_call_changes_nothing(desk: Flask) -> None:
    call = at_voicemail(desk).leave_message()
    stranger = Call(FlaskTransport(desk), AUTH_TOKEN)
    stranger._record_callback = call._record_callback
    assert stranger.recording_processed("completed") == 204
    assert len(recording_events(desk)) == 1


@pytest.mark.parametrize("path", ["/voice/record?step=3", "/voice/recording?node=v&c=%2B1415"])
def test_forged_record_webhooks_are_refused(desk: Flask, path: str) -> None:
    response = desk.test_client().post(path, data={"CallSid": "CA1"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path", ["/voice/record", "/voice/record?step=x", "/voice/recording?c=%2B1", "/voice/recording"]
)
def test_record_webhooks_without_their_query_are_a_400(desk: Flask, path: str) -> None:
    call = Call(FlaskTransport(desk), AUTH_TOKEN)
    code, _ = call._send(f"http://localhost{path}", {"CallSid": call.call_sid})
    assert code == 400


def post_signed(app: Flask, call: Call, url: str, form: dict[str, str]) -> str:
    code, body = call._post(urljoin(call.base_url, url), form)
    assert code == 200, body
    return body


def test_the_terminal_simulator_leaves_a_message(desk: Flask) -> None:
    result = desk.test_cli_runner().invoke(args=["call", "--script", "2,please call me back"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "omnivoice: Thanks, we have your 4 second message. Goodbye." in lines
    assert lines[-1] == "[call ended: hangup]"


def test_the_agent_s_card_shows_the_voicemail_and_its_transcription(desk: Flask) -> None:
    call = at_voicemail(desk).leave_message(duration=37)
    call.recording_processed("completed", duration=37)
    call.recording_processed(
        "completed",
        duration=37,
        TranscriptionStatus="completed",
        TranscriptionText="Please call me back about my refund.",
    )
    cards = board.fold(desk.extensions["omnivoice.feed"].after("0-0"))
    lines = [p["text"] for p in cards[call.call_sid].pages]
    assert lines == [
        "The caller left a 37-second voicemail",
        'Voicemail transcribed: "Please call me back about my refund."',
    ]


def test_a_silent_voicemail_says_so_on_the_card(desk: Flask) -> None:
    call = at_voicemail(desk).leave_nothing()
    cards = board.fold(desk.extensions["omnivoice.feed"].after("0-0"))
    assert [p["text"] for p in cards[call.call_sid].pages] == ["The caller left no voicemail"]

"""The record node without a server: the engine's ``Record`` action and ``after_recording``,
its TwiML, the Twilio fields parsed at the edge, and the JSON Schema of ``record``."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET

import pytest
from jsonschema import Draft202012Validator

from ivr import engine, liveness
from ivr.errors import EngineError
from ivr.flow import Flow, load_flow_text
from ivr.schema import flow_json_schema
from ivr.session import Session
from ivr.states import EventName, Status, Waiting
from ivr.turn import Answer, Hangup, Record, Recorded, Say, Turn
from webhooks import params, twiml

CALLER = "+14155550123"
FLOW = """\
start: voicemail
nodes:
  voicemail:
    say: Leave a message.
    record: {max_length: 1m, finish_on_key: "#*", beep: false, timeout: 3s, save_as: message}
    next: thanks
  thanks:
    say: "Thanks for {{ message.duration }} seconds."
    hangup: true
  bare:
    record: {}
"""


def flow_of(text: str = FLOW) -> Flow:
    return load_flow_text(textwrap.dedent(text), "test.yaml", "test")


def begin(flow: Flow, node: str = "voicemail") -> Turn:
    return engine.start(flow, caller=CALLER, call_sid="CA1", at=100.0, node=node)


def test_a_record_node_speaks_then_records_and_waits() -> None:
    turn = begin(flow_of())
    say, record = turn.actions
    assert isinstance(say, Say) and say.text == "Leave a message."
    assert record == Record("voicemail", CALLER, 60, "#*", False, 3, False)
    assert turn.session.waiting == Waiting.RECORDING
    assert turn.session.node == "voicemail"


def test_twilio_s_defaults_hold_for_a_bare_record() -> None:
    [record] = begin(flow_of(), "bare").actions
    assert record == Record("bare", CALLER, 120, "1234567890*#", True, 5, False)


def test_a_message_is_kept_saved_and_recorded_then_the_flow_goes_on() -> None:
    flow = flow_of()
    waiting = begin(flow).session
    recorded = Recorded("https://api.twilio.com/rec/RE1", 42, "#", at=160.0)
    turn = engine.after_recording(flow, waiting, recorded)
    assert [a.text for a in turn.actions if isinstance(a, Say)] == ["Thanks for 42 seconds."]
    assert isinstance(turn.actions[-1], Hangup)
    kept = {"url": "https://api.twilio.com/rec/RE1", "duration": 42, "digits": "#"}
    assert turn.session.variables["message"] == kept
    assert turn.session.recordings == {"voicemail": {**kept, "status": "recorded"}}
    assert turn.session.step == waiting.step + 1
    assert turn.session.updated_at == 160.0
    [note] = [n for n in turn.notes if n.name == EventName.RECORDING]
    assert note.data == {"node": "voicemail", **kept, "status": "recorded"}
    assert Session.from_dict(turn.session.to_dict()).recordings == turn.session.recordings


def test_a_record_node_without_next_hangs_up_after_the_message() -> None:
    flow = flow_of()
    turn = engine.after_recording(flow, begin(flow, "bare").session, Recorded(None, at=150.0))
    assert turn.actions == (Hangup(),)
    assert turn.session.status == Status.COMPLETED
    assert turn.session.recordings["bare"]["status"] == "empty"


def test_a_recording_is_refused_when_the_session_waits_for_something_else() -> None:
    flow = flow_of("start: a\nnodes:\n  a:\n    gather: {prompt: Hi.}\n    next: a\n")
    with pytest.raises(EngineError):
        engine.after_recording(flow, begin(flow, "a").session, Recorded("https://x", 1))
    with pytest.raises(EngineError):
        engine.step(flow_of(), begin(flow_of()).session, Answer("1"))


def test_a_later_status_merges_into_the_recording_and_is_an_event() -> None:
    flow = flow_of()
    done = engine.after_recording(flow, begin(flow).session, Recorded("https://x/RE1", 5, "#"))
    changed, note = engine.recording_update(
        done.session, "voicemail", {"status": "completed", "duration": 6}, 300.0
    )
    assert changed.recordings["voicemail"] == {
        "url": "https://x/RE1",
        "duration": 6,
        "digits": "#",
        "status": "completed",
    }
    assert note.name == EventName.RECORDING and note.data["node"] == "voicemail"


def test_a_recording_call_stays_live_for_the_whole_message() -> None:
    turn = begin(flow_of())
    assert liveness.live_until(turn.actions, 0.0) >= 60 + 3 + liveness.WEBHOOK_GRACE


def test_the_twiml_records_posts_to_the_step_and_redirects_there() -> None:
    renderer = twiml.VoiceRenderer(lambda root, step: f"{root}/voice/answer?step={step}")
    turn = begin(flow_of())
    root = ET.fromstring(renderer.render(turn.actions, "/app", 7))
    assert [child.tag for child in root] == ["Say", "Record", "Redirect"]
    record = root[1]
    assert record.get("action") == "/app/voice/record?step=7"
    assert record.get("method") == "POST"
    assert (record.get("maxLength"), record.get("timeout")) == ("60", "3")
    assert (record.get("finishOnKey"), record.get("playBeep")) == ("#*", "false")
    assert record.get("recordingStatusCallback") == (
        "/app/voice/recording?node=voicemail&c=%2B14155550123"
    )
    assert record.get("transcribe") is None
    assert root[2].text == "/app/voice/record?step=7"


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (
            {"RecordingUrl": "https://r/RE1", "RecordingDuration": "9", "Digits": "#"},
            Recorded("https://r/RE1", 9, "#", 1.0),
        ),
        ({"Digits": "hangup", "RecordingDuration": "-3"}, Recorded(None, 0, "hangup", 1.0)),
        ({"RecordingUrl": "javascript:alert(1)"}, Recorded(None, 0, None, 1.0)),
        ({"RecordingUrl": "https://r/" + "x" * 600}, Recorded(None, 0, None, 1.0)),
    ],
)
def test_a_record_action_s_fields_are_parsed_safely(
    form: dict[str, str], expected: Recorded
) -> None:
    assert params.recorded(form, 1.0) == expected


def test_status_and_transcription_fields_are_parsed_and_bounded() -> None:
    assert params.recording_update({"RecordingStatus": "weird"}) == {"status": "failed"}
    assert params.recording_update({}) == {}
    update = params.recording_update(
        {"TranscriptionStatus": "completed", "TranscriptionText": "y" * 5000}
    )
    assert len(update["transcription"]) == params.MAX_TRANSCRIPTION
    failed = params.recording_update({"TranscriptionStatus": "failed", "TranscriptionText": "?"})
    assert failed == {"transcription_status": "failed", "transcription": None}


def test_the_json_schema_describes_record() -> None:
    schema = flow_json_schema()
    record = schema["$defs"]["RecordSpec"]
    assert set(record["properties"]) == {
        "max_length", "finish_on_key", "beep", "timeout", "transcribe", "save_as",
    }  # fmt: skip
    assert record["additionalProperties"] is False
    validator = Draft202012Validator(schema)
    good = {"start": "v", "nodes": {"v": {"record": {"max_length": "90s", "beep": False}}}}
    assert list(validator.iter_errors(good)) == []
    bad = {"start": "v", "nodes": {"v": {"record": {"max_lenght": 10}}}}
    assert list(validator.iter_errors(bad)) != []

"""The TwiML of each kind of transfer (``webhooks/twiml_transfers.py``), on parsed XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

from ivr.turn import Say, Transfer
from webhooks import twiml, twiml_transfers

ROOT = "https://ivr.example.com"
BUNDLE = {
    "id": "HOabc",
    "reason": "wants to change booking OV 220",
    "summary": "Ana Ruiz, identity confirmed: wants to change booking OV 220; 2 minutes in the menu.",
    "caller": {"number": "+14155550100", "name": "Ana Ruiz", "confidence": "high", "customer": 7},
    "context": {"intent": "change", "booking.flight": "OV 220", "note": "x" * 400},
    "path": [{"node": "welcome", "label": "Greeting"}],
}


def render(transfer: Transfer, step: int = 4, workflow: str | None = None) -> ET.Element:
    links = twiml.TransferLinks(ROOT, step, workflow)
    root = ET.fromstring(twiml.render((Say("Connecting you."), transfer), "unused", links))
    assert root.tag == "Response"
    assert root[0].tag == "Say"
    return root[1]


def query(url: str | None) -> dict[str, list[str]]:
    assert url is not None
    return parse_qs(urlsplit(url).query)


def test_a_queue_waits_on_our_hold_loop_and_reports_back() -> None:
    enqueue = render(Transfer("queue", "support", "HOabc", BUNDLE, flow="airline", node="agent"))
    assert enqueue.tag == "Enqueue"
    assert enqueue.text == "support"
    assert enqueue.get("action") == f"{ROOT}/voice/transfer?step=4"
    assert enqueue.get("method") == "POST"
    wait = enqueue.get("waitUrl")
    assert wait is not None and wait.startswith(f"{ROOT}/voice/wait?")
    assert query(wait) == {"flow": ["airline"], "node": ["agent"], "h": ["HOabc"]}
    assert enqueue.get("waitUrlMethod") == "POST"
    assert enqueue.get("workflowSid") is None
    assert enqueue.find("Task") is None


def test_a_taskrouter_queue_carries_flex_attributes_and_the_bundle() -> None:
    sid = "WW" + "0" * 32
    enqueue = render(Transfer("queue", "support", "HOabc", BUNDLE), workflow=sid)
    assert enqueue.get("workflowSid") == sid
    assert (enqueue.text or "").strip() == ""  # the workflow chooses the queue
    task = enqueue.find("Task")
    assert task is not None and task.text
    attributes = json.loads(task.text)
    assert attributes["type"] == "inbound"
    assert attributes["name"] == "Ana Ruiz"
    assert attributes["from"] == "+14155550100"
    assert attributes["crmid"] == 7
    assert attributes["handoff_id"] == "HOabc"
    assert attributes["omnivoice"]["context"]["intent"] == "change"


def test_a_node_workflow_wins_over_the_app_default() -> None:
    mine, default = "WW" + "1" * 32, "WW" + "2" * 32
    enqueue = render(Transfer("queue", "support", "HOabc", BUNDLE, workflow=mine), workflow=default)
    assert enqueue.get("workflowSid") == mine


def test_a_huge_bundle_is_slimmed_to_fit_a_task() -> None:
    big = {**BUNDLE, "path": [{"node": f"n{i}", "label": "x" * 200} for i in range(200)]}
    attributes = twiml_transfers.task_attributes(Transfer("queue", "q", "HOabc", big))
    assert "path" not in attributes["omnivoice"]
    assert attributes["omnivoice"]["reason"] == BUNDLE["reason"]
    assert len(json.dumps(attributes)) < 16_000


def test_a_number_transfer_whispers_the_summary_url_to_the_agent() -> None:
    dial = render(Transfer("number", "+14155550999", "HOabc", BUNDLE, timeout=20))
    assert dial.tag == "Dial"
    assert dial.get("timeout") == "20"
    assert dial.get("action") == f"{ROOT}/voice/transfer?step=4"
    [number] = dial.findall("Number")
    assert number.text == "+14155550999"
    assert number.get("url") == f"{ROOT}/voice/whisper?h=HOabc"
    assert number.get("method") == "POST"


def test_a_client_transfer_carries_the_bundle_keys_as_parameters() -> None:
    dial = render(Transfer("client", "agent_alice", "HOabc", BUNDLE, timeout=45))
    [client] = dial.findall("Client")
    assert client.findtext("Identity") == "agent_alice"
    parameters = {p.get("name"): p.get("value") for p in client.findall("Parameter")}
    assert parameters["handoff_id"] == "HOabc"
    assert parameters["caller_name"] == "Ana Ruiz"
    assert parameters["caller_number"] == "+14155550100"
    assert parameters["reason"] == BUNDLE["reason"]
    assert parameters["intent"] == "change"
    assert parameters["booking.flight"] == "OV 220"
    assert parameters["note"] == "x" * 256  # parameter values are kept short
    assert len(parameters) <= twiml_transfers.PARAMETERS


def test_a_sip_transfer_names_the_handoff_in_a_header() -> None:
    dial = render(Transfer("sip", "sip:agent@pbx.example.com", "HOabc", BUNDLE))
    assert dial.findtext("Sip") == "sip:agent@pbx.example.com?X-Handoff-Id=HOabc"


def test_hold_loop_speaks_then_plays_or_pauses_or_leaves() -> None:
    root = ET.fromstring(twiml.hold_loop((Say("You are number 2 in line."),), None))
    assert [c.tag for c in root] == ["Say", "Pause"]
    root = ET.fromstring(twiml.hold_loop((), "https://cdn.example.com/hold.mp3"))
    assert [c.tag for c in root] == ["Play"]
    root = ET.fromstring(twiml.hold_loop((Say("x"),), None, leave=True))
    assert [c.tag for c in root] == ["Leave"]


def test_whisper_reads_one_sentence() -> None:
    root = ET.fromstring(twiml.whisper(BUNDLE["summary"]))
    assert [(c.tag, c.text) for c in root] == [("Say", BUNDLE["summary"])]

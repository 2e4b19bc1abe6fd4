"""Transfers through the real front and real Redis: each kind of target, what Twilio reports back
(queue full, no answer, busy, waited too long, garbage), the hold loop, the whisper, and the
handoff bundle published by id, by CallSid and on the agents' feed."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from flask import Flask

from context.agent_feed import AgentFeed
from context.handoffs import HandoffStore
from context.redis_client import Topology, topology_of
from ivr.states import EventName
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_secrets import mentions
from tests.support_twilio import CALLER, post, prefix_of, spoken, twiml, verbs

FLOW = """\
    id: desk
    numbers: ["+14155550100"]
    sensitive: [pin]
    fallback: sorry
    start: menu
    nodes:
      menu:
        description: at the main menu
        gather:
          prompt: Press 1 for the queue, 2 for a person, 3 for the app, 4 for the PBX.
          num_digits: 1
        on: {"1": pin_first, "2": desk_phone, "3": app, "4": pbx}
      pin_first:
        gather: {prompt: Key your PIN., num_digits: 4}
        save_as: pin
        next: queue
      queue:
        description: waiting for the support queue
        transfer:
          queue: support
          reason: "PIN {{ pin }} given, wants support"
          context: [pin]
          hold: "You are caller {{ queue.position }}."
          hold_music: https://cdn.example.com/hold.mp3
          max_wait: 2m
          on: {queue_full: offer, waited_too_long: offer}
      desk_phone:
        transfer:
          number: "+1 415 555 0199"
          whisper: "Caller at the desk menu."
          timeout: 15s
          on: {no_answer: voicemail, busy: offer}
      app:
        transfer: {client: agent_alice, on: {failed: voicemail}}
      pbx:
        transfer: {sip: "sip:support@pbx.example.com"}
      offer:
        callback: {reason: "busy queue"}
        say: We will call you back. Goodbye.
        hangup: true
      voicemail:
        say: Nobody answered. Please leave a message after the tone.
        hangup: true
      sorry:
        say: Sorry, something went wrong.
        hangup: true
"""


@pytest.fixture
def desk(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "desk.yaml").write_text(textwrap.dedent(FLOW))
    return make_app()


def ring(app: Flask, *keys: str) -> Call:
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    for digits in keys:
        call.press(digits)
    return call


def feed_of(app: Flask) -> AgentFeed:
    feed: AgentFeed = app.extensions["omnivoice.feed"]
    return feed


def handoffs_of(app: Flask) -> HandoffStore:
    store: HandoffStore = app.extensions["omnivoice.handoffs"]
    return store


def feed_names(app: Flask) -> list[str]:
    return [entry.event["name"] for entry in feed_of(app).after("0-0")]


def query(url: str | None) -> dict[str, str]:
    assert url is not None
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_queue_transfer_carries_the_bundle_everywhere_but_the_pin(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    assert call.ended == "enqueue"
    enqueue = call.handover
    assert enqueue is not None and enqueue.text == "support"
    assert urlsplit(enqueue.get("action")).path == "/voice/transfer"
    wait = query(enqueue.get("waitUrl"))
    assert wait["flow"] == "desk" and wait["node"] == "queue"
    bundle = handoffs_of(desk).for_call(call.call_sid)
    assert bundle is not None and bundle["id"] == wait["h"]
    assert handoffs_of(desk).get(wait["h"]) == bundle
    assert bundle["caller"]["number"] == CALLER
    assert bundle["caller"]["identified_by"] == ["caller_id"]
    assert bundle["reason"] == "PIN *** given, wants support"
    assert bundle["context"] == {"pin": "***"} and bundle["inputs"] == {"pin": "***"}
    assert [step["node"] for step in bundle["path"]] == ["menu", "pin_first", "queue"]
    assert bundle["path"][0]["label"] == "at the main menu"
    assert bundle["route"] == {"kind": "queue", "target": "support"}
    [entry] = [e for e in feed_of(desk).after("0-0") if e.event["name"] == "handoff"]
    assert entry.event["data"]["bundle"] == bundle
    assert not mentions([e.event for e in feed_of(desk).after("0-0")], "4321")
    assert not mentions(bundle, "4321")


def test_the_hold_loop_says_the_position_plays_music_and_tells_agents(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    hold = call.hold(position=3, waited=40)
    assert verbs(hold) == ["Say", "Play"]
    assert spoken(hold) == ["You are caller 3."]
    assert hold.findtext("Play") == "https://cdn.example.com/hold.mp3"
    waiting = [e.event for e in feed_of(desk).after("0-0") if e.event["name"] == "queue_waiting"]
    assert waiting[-1]["data"]["position"] == 3 and waiting[-1]["data"]["wait_seconds"] == 40
    assert waiting[-1]["call_sid"] == call.call_sid


def test_past_max_wait_the_caller_leaves_and_is_offered_a_call_back(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    assert verbs(call.hold(position=1, waited=121)) == ["Leave"]
    call.transfer_ends("leave")
    assert call.last_heard == "We will call you back. Goodbye."
    assert call.ended == "hangup"
    names = feed_names(desk)
    assert names[-2:] == ["transfer_result", "callback_requested"]
    result = feed_of(desk).after("0-0")[-2].event["data"]
    assert (result["result"], result["next"]) == ("waited_too_long", "offer")


def test_a_full_queue_goes_to_the_flows_node_for_it(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    call.transfer_ends("queue-full")
    assert call.last_heard == "We will call you back. Goodbye."


def test_a_queue_error_with_no_node_for_it_goes_to_the_fallback(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    call.transfer_ends("system-error")
    assert call.last_heard == "Sorry, something went wrong."


def test_garbage_from_twilio_is_a_failed_transfer_not_an_error(desk: Flask) -> None:
    call = ring(desk, "3")
    call.transfer_ends("<script>")
    assert call.last_heard.startswith("Nobody answered.")


def test_a_bridged_call_ends_with_the_flow_done(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    call.transfer_ends("bridged")
    assert call.ended == "hangup"
    result = feed_of(desk).after("0-0")[-1].event
    assert result["name"] == "transfer_result" and result["data"]["result"] == "connected"


def test_a_caller_who_hangs_up_in_the_queue_gets_nothing_more(desk: Flask) -> None:
    call = ring(desk, "1", "4321")
    call.transfer_ends("hangup")
    assert verbs(call.last) == []
    assert feed_of(desk).after("0-0")[-1].event["data"]["result"] == "abandoned"


def test_a_number_transfer_whispers_the_summary_then_routes_no_answer(desk: Flask) -> None:
    call = ring(desk, "2")
    dial = call.handover
    assert dial is not None and dial.tag == "Dial" and dial.get("timeout") == "15"
    number = dial.find("Number")
    assert number is not None and number.text == "+14155550199"
    client = desk.test_client()
    whisper_url = number.get("url")
    assert whisper_url is not None
    path = urlsplit(whisper_url).path + "?" + urlsplit(whisper_url).query
    agent_leg = {"CallSid": "CA" + "9" * 32, "From": CALLER, "To": "+14155550199"}
    heard = twiml(post(client, path, agent_leg))
    assert spoken(heard) == ["Caller at the desk menu."]
    call.transfer_ends("no-answer")
    assert call.last_heard.startswith("Nobody answered.")
    call2 = ring(desk, "2")
    call2.transfer_ends("busy")
    assert call2.last_heard == "We will call you back. Goodbye."


def test_a_whisper_for_an_unknown_handoff_is_a_generic_sentence(desk: Flask) -> None:
    heard = twiml(post(desk.test_client(), "/voice/whisper?h=HO" + "0" * 32, {"CallSid": "CA1"}))
    assert spoken(heard) == ["A caller from the automated line is being connected to you now."]
    heard = twiml(post(desk.test_client(), "/voice/whisper?h=<x>", {"CallSid": "CA1"}))
    assert len(spoken(heard)) == 1


def test_client_and_sip_transfers_carry_the_handoff(desk: Flask) -> None:
    app_call = ring(desk, "3")
    dial = app_call.handover
    assert dial is not None
    parameters = {p.get("name"): p.get("value") for p in dial.iter("Parameter")}
    assert dial.findtext("Client/Identity") == "agent_alice"
    assert parameters["handoff_id"].startswith("HO")
    assert parameters["caller_number"] == CALLER
    sip_call = ring(desk, "4")
    assert sip_call.handover is not None
    sip = sip_call.handover.findtext("Sip") or ""
    bundle = handoffs_of(desk).for_call(sip_call.call_sid)
    assert bundle is not None
    assert sip == f"sip:support@pbx.example.com?X-Handoff-Id={bundle['id']}"


def test_a_taskrouter_workflow_puts_the_bundle_in_the_task(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "desk.yaml").write_text(textwrap.dedent(FLOW))
    sid = "WW" + "a" * 32
    app = make_app(TASKROUTER_WORKFLOW_SID=sid)
    call = ring(app, "1", "4321")
    enqueue = call.handover
    assert enqueue is not None and enqueue.get("workflowSid") == sid
    task = json.loads(enqueue.findtext("Task") or "{}")
    assert task["type"] == "inbound" and task["from"] == CALLER
    assert task["omnivoice"]["context"] == {"pin": "***"}
    assert "4321" not in (enqueue.findtext("Task") or "")


def test_a_retried_result_webhook_gets_the_same_answer_and_moves_nothing(desk: Flask) -> None:
    call = ring(desk, "3")
    assert call.handover is not None
    action = call.handover.get("action") or ""
    path = urlsplit(action).path + "?" + urlsplit(action).query
    form = {"CallSid": call.call_sid, "From": CALLER, "To": "+14155550100"}
    client = desk.test_client()
    first = post(client, path, {**form, "DialCallStatus": "failed"})
    again = post(client, path, {**form, "DialCallStatus": "failed"})
    assert first.get_data() == again.get_data()
    assert spoken(twiml(first))[0].startswith("Nobody answered.")
    results = [n for n in feed_names(desk) if n == EventName.TRANSFER_RESULT]
    assert len(results) == 1


def test_a_result_for_a_step_that_is_not_the_transfers_changes_nothing(desk: Flask) -> None:
    call = ring(desk, "3")
    form = {"CallSid": call.call_sid, "From": CALLER, "To": "+14155550100"}
    stale = post(desk.test_client(), "/voice/transfer?step=0", {**form, "DialCallStatus": "busy"})
    assert verbs(twiml(stale)) == []
    call.transfer_ends("no-answer")  # the real one still routes
    assert call.last_heard.startswith("Nobody answered.")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/voice/transfer", 400), ("/voice/transfer?step=x", 400), ("/voice/transfer?step=-5", 400)],
)
def test_a_result_without_a_usable_step_is_a_400(desk: Flask, path: str, status: int) -> None:
    reply = post(desk.test_client(), path, {"CallSid": "CA" + "1" * 32, "QueueResult": "hangup"})
    assert reply.status_code == status


@pytest.mark.parametrize("path", ["/voice/transfer?step=3", "/voice/wait", "/voice/whisper?h=x"])
def test_forged_transfer_webhooks_are_refused(desk: Flask, path: str) -> None:
    form = {"CallSid": "CA" + "1" * 32, "QueueResult": "hangup"}
    forged = post(desk.test_client(), path, form, token="not-the-auth-token")
    assert forged.status_code == 403


def test_the_hold_loop_of_a_flow_that_is_gone_is_a_plain_hold(desk: Flask) -> None:
    form = {"CallSid": "CA" + "1" * 32, "From": CALLER, "QueuePosition": "two"}
    hold = twiml(post(desk.test_client(), "/voice/wait?flow=nope&node=x&h=HOx", form))
    assert verbs(hold) == ["Pause"]


def test_a_default_hold_prompt_names_the_position(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = make_app()  # the demo flow's own hold prompt
    client = app.test_client()
    form = {"CallSid": "CA" + "1" * 32, "From": CALLER, "QueuePosition": "2", "QueueTime": "5"}
    hold = twiml(post(client, "/voice/wait?flow=airline&node=agent&h=HOx", form))
    assert spoken(hold) == ["Thanks for holding. You are number 2 in line."]


def test_a_redis_outage_at_the_whisper_still_whispers(desk: Flask) -> None:
    class Down:
        def get(self, key: str) -> Any:
            raise redis.ConnectionError("down")

    store = handoffs_of(desk)
    store.redis = Down()
    heard = twiml(post(desk.test_client(), "/voice/whisper?h=HO" + "1" * 32, {"CallSid": "CA1"}))
    assert spoken(heard) == ["A caller from the automated line is being connected to you now."]


def test_the_transfer_webhook_costs_one_round_trip_more_and_every_key_expires(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    from tests.support_redis import counting_client

    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "desk.yaml").write_text(textwrap.dedent(FLOW))
    connection, counter = counting_client(redis_client)
    app = make_app(REDIS_CLIENT=connection)
    ring(app, "3")  # scripts loaded, flow version published
    call = ring(app)
    counter.reset()
    call.press("3")  # the client transfer
    assert call.ended == "dial"
    # load and save as always, then the bundle (by id, by CallSid) and the feed in one pipeline
    assert counter.sent[:2] == ["EVALSHA", "EVALSHA"], counter.sent
    if topology_of(connection) is not Topology.CLUSTER:
        assert counter.count == 3, counter.sent
    call.transfer_ends("failed")
    connection.close()
    if topology_of(redis_client) is Topology.CLUSTER:
        return  # keys live on several masters there; the TTLs are the same code
    keys = list(redis_client.scan_iter(f"{prefix_of(redis_client)}:*", count=1000))
    kinds = {key.decode().split(":")[1] for key in keys}
    assert {"handoff", "call-handoff", "agent-feed"} <= kinds, kinds
    assert [key for key in keys if redis_client.ttl(key) <= 0] == []


def test_a_call_taken_from_the_console_keeps_its_transfer_open_for_the_agents_dial(
    desk: Flask,
) -> None:
    call = ring(desk, "1", "4321")
    enqueue = call.handover
    assert enqueue is not None
    action = enqueue.get("action") or ""
    path = urlsplit(action).path + "?" + urlsplit(action).query
    form = {"CallSid": call.call_sid, "From": CALLER, "To": "+14155550100"}
    client = desk.test_client()
    # Take call: Twilio reports the queue left for the REST redirect, right away...
    moved = post(client, path, {**form, "QueueResult": "redirected"})
    assert verbs(twiml(moved)) == []
    # ...then the agent's <Dial> (whose action names the same step) ends unanswered.
    routed = post(client, path, {**form, "DialCallStatus": "no-answer"})
    # the queue node names no node for no_answer: the flow's fallback (not a transfer) then
    assert spoken(twiml(routed)) == ["Sorry, something went wrong."]
    results = [
        e.event["data"]["result"]
        for e in feed_of(desk).after("0-0")
        if e.event["name"] == "transfer_result"
    ]
    assert results == ["redirected", "no_answer"]

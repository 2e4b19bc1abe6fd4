"""Resume: dropped, repeated and anonymous calls pick up where they left off (real Redis, HTTP)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from context.redis_client import connect
from ivr.session import Session
from simulator import Call, FlaskTransport
from tests import support_topologies
from tests.conftest import AUTH_TOKEN, app_for_tests, on_topologies

CALLER = "+14155550123"


def doc(redis_client: redis.Redis, caller: str = CALLER) -> dict[str, Any]:
    """The stored session of ``caller``, with every field (defaults included)."""
    key = f"{redis_client.test_prefix}:{{{caller}}}:session"  # type: ignore[attr-defined]
    return asdict(Session.from_dict(json.loads(redis_client.hget(key, "doc"))))


def seq(redis_client: redis.Redis, caller: str = CALLER) -> int:
    key = f"{redis_client.test_prefix}:{{{caller}}}:session"  # type: ignore[attr-defined]
    return int(redis_client.hget(key, "seq"))


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


def drop_at_rebooking(app: Flask) -> Call:
    """A caller who asks to change booking ABC123, hears the options, then the line drops."""
    c = dial(app)
    c.press("2")
    c.say("A B C 1 2 3")
    assert "Press 1 for flight OV 105" in c.last_heard
    assert c.hang_up("completed") == 204
    return c


def edit_flow(flows_dir: Path, old: str, new: str) -> None:
    path = flows_dir / "airline.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: Flask) -> Clock:
    fake = Clock()
    service = app.extensions["omnivoice.calls"]
    service.clock = service.codes.clock = fake
    return fake


def test_dropped_call_is_offered_its_checkpoint_with_variables(
    app: Flask, redis_client: redis.Redis
) -> None:
    drop_at_rebooking(app)
    assert doc(redis_client)["status"] == "interrupted"
    back = dial(app, caller="+1 415-555-0123")  # a different spelling of the same number
    assert back.last_heard.startswith("Welcome back. Last time you were choosing a new flight")
    assert "A B C 1 2 3" in back.last_heard
    gather = back.last.find("Gather")
    assert gather is not None and gather.get("input") == "dtmf speech"
    back.say("continue please")
    assert "Press 1 for flight OV 105" in back.last_heard
    stored = doc(redis_client)
    assert stored["variables"]["code"] == "ABC123" and stored["variables"]["intent"] == "change"
    assert stored["call_sid"] == back.call_sid and stored["status"] == "active"
    back.press("1")
    assert "You are now on flight OV 105" in back.last_heard


def test_declining_starts_fresh_without_old_variables(
    app: Flask, redis_client: redis.Redis
) -> None:
    drop_at_rebooking(app)
    back = dial(app)
    back.press("2")
    assert back.last_heard.startswith("Thanks for calling Omnivoice Air.")
    assert doc(redis_client).get("variables", {}) == {}


def test_retry_counters_reset_on_resume(app: Flask, redis_client: redis.Redis) -> None:
    c = dial(app)
    c.press("1")
    c.press("9")  # not a code: no-match 1
    assert doc(redis_client)["no_match_count"] == 1
    c.hang_up()
    back = dial(app)
    back.press("1")
    assert "confirmation code" in back.last_heard
    assert doc(redis_client)["no_match_count"] == 0


def test_call_back_after_the_window_starts_fresh(
    app: Flask, redis_client: redis.Redis, clock: Clock
) -> None:
    drop_at_rebooking(app)
    clock.now += 31 * 60  # the demo flow resumes within 30 minutes
    back = dial(app)
    assert back.last_heard.startswith("Thanks for calling Omnivoice Air.")
    assert doc(redis_client).get("variables", {}) == {}


def test_call_back_inside_the_window_resumes(app: Flask, clock: Clock) -> None:
    drop_at_rebooking(app)
    clock.now += 29 * 60
    assert dial(app).last_heard.startswith("Welcome back.")


def test_completed_caller_starts_fresh(app: Flask) -> None:
    c = dial(app)
    c.press("1")
    c.say("X Y Z 7 8 9")
    c.press("2")
    assert c.ended == "hangup"
    c.hang_up()
    assert dial(app).last_heard.startswith("Thanks for calling Omnivoice Air.")


def test_transferred_caller_goes_straight_back_to_the_queue(
    app: Flask, redis_client: redis.Redis
) -> None:
    c = dial(app)
    c.press("0")
    assert c.ended == "enqueue"
    c.hang_up()
    back = dial(app)
    assert back.ended == "enqueue"
    assert "straight through to an agent" in back.last_heard
    assert back.last.find("Enqueue").text == "support"
    assert doc(redis_client)["status"] == "transferred"


def test_ask_false_continues_without_asking(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    edit_flow(flows_dir, "  ask: true", "  ask: false")
    app = make_app()
    drop_at_rebooking(app)
    assert dial(app).last_heard.startswith("Press 1 for flight OV 105")


def test_no_answer_to_the_offer_continues(app: Flask) -> None:
    drop_at_rebooking(app)
    back = dial(app)
    back.silence()
    assert back.last_heard.startswith("Sorry, I didn't hear anything. Welcome back.")
    back.silence()
    assert "Press 1 for flight OV 105" in back.last_heard


def test_edited_yaml_does_not_change_a_resumed_call(
    app: Flask, flows_dir: Path, redis_client: redis.Redis
) -> None:
    drop_at_rebooking(app)
    old_version = doc(redis_client)["flow_version"]
    edit_flow(flows_dir, "Press 1 for flight", "Press one for flight")
    edit_flow(flows_dir, "Thanks for calling Omnivoice Air.", "Hello from the new flow.")
    app.extensions["omnivoice.catalog"].refresh()  # what the flow watcher does on its next look
    back = dial(app)
    back.press("1")
    assert back.last_heard.startswith("Press 1 for flight OV 105")
    assert doc(redis_client)["flow_version"] == old_version
    stranger = dial(app, caller="+14155550999")
    assert stranger.last_heard.startswith("Hello from the new flow.")


def test_pinned_version_survives_a_server_restart(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    first = make_app()
    drop_at_rebooking(first)
    edit_flow(flows_dir, "Press 1 for flight", "Press one for flight")
    restarted = make_app()  # a new process: only the edited YAML is on disk
    back = dial(restarted)
    back.press("1")
    assert back.last_heard.startswith("Press 1 for flight OV 105")


def app_on(url: str, flows_dir: Path, prefix: str) -> Flask:
    """A new process's app on the Redis at ``url``: it knows only the YAML on disk now."""
    return app_for_tests(
        flows_dir,
        REDIS_CLIENT=connect(url, timeout=2, dev_mode=False),
        REDIS_KEY_PREFIX=prefix,
    )


def test_a_call_begun_after_redis_restarted_empty_finishes_on_its_version(
    flows_dir: Path,
) -> None:
    server = support_topologies.start_server()
    try:
        prefix = "test-restart"
        first = app_on(server.url, flows_dir, prefix)
        dial(first, caller="+14155550999")  # this process publishes the flow version
        server.servers.kill(server.port)
        server.servers.restart(server.port)  # back without its data (no persistence)
        c = dial(first)  # the client reconnects by itself: no failure was seen
        c.press("2")
        c.say("A B C 1 2 3")
        assert "Press 1 for flight OV 105" in c.last_heard
        edit_flow(flows_dir, "Press 1 for flight", "Press one for flight")
        c.transport = FlaskTransport(app_on(server.url, flows_dir, prefix))  # another process
        c.press("1")
        assert "You are now on flight OV 105" in c.last_heard
        assert not any("couldn't pick up" in heard for heard in c.heard)
    finally:
        server.stop()


@on_topologies("single", "sentinel")  # a cluster keeps flow versions in another slot
def test_a_flow_version_lost_from_redis_is_never_pinned_by_a_new_call(
    app: Flask, make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    dial(app, caller="+14155550999")  # the version is published with this call's first save
    version = doc(redis_client, "+14155550999")["flow_version"]
    key = f"{redis_client.test_prefix}:flow:{version}"  # type: ignore[attr-defined]
    redis_client.delete(key)  # lost (an emptied Redis), and this process saw no error
    c = dial(app)
    assert redis_client.get(key) is not None  # the save that pinned it published it again
    c.press("2")
    c.say("A B C 1 2 3")
    edit_flow(flows_dir, "Press 1 for flight", "Press one for flight")
    c.transport = FlaskTransport(make_app())
    c.press("1")
    assert "You are now on flight OV 105" in c.last_heard


def test_unservable_checkpoint_apologises_and_starts_fresh(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    first = make_app()
    drop_at_rebooking(first)
    version = doc(redis_client)["flow_version"]
    redis_client.delete(f"{redis_client.test_prefix}:flow:{version}")  # type: ignore[attr-defined]
    edit_flow(flows_dir, "Press 1 for flight", "Press one for flight")
    back = dial(make_app())
    assert back.last_heard.startswith("Sorry, we couldn't pick up where you left off")
    assert "Thanks for calling Omnivoice Air." in back.last_heard
    assert back.statuses == [200]


def test_newest_call_takes_over_and_fences_the_old_one(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    edit_flow(flows_dir, "  ask: true", "  ask: true\n  concurrent: takeover")
    app = make_app()
    first = dial(app)
    first.press("1")
    second = dial(app)  # call waiting / fast redial while the first is live
    assert second.last_heard.startswith("Welcome back.")
    before = seq(redis_client)
    first.press("123456")
    assert first.ended == "hangup"
    assert "continuing on another line" in first.last_heard
    assert first.status_callback("completed") == 204  # the old call's end changes nothing
    assert seq(redis_client) == before
    assert doc(redis_client)["call_sid"] == second.call_sid
    second.press("1")
    assert "confirmation code" in second.last_heard


def test_duplicate_webhook_returns_the_same_twiml_and_advances_once(
    app: Flask, redis_client: redis.Redis
) -> None:
    c = dial(app)
    action = c.last.find("Gather").get("action")
    client = app.test_client()
    url = f"http://localhost{action}"
    form = {"CallSid": c.call_sid, "From": CALLER, "To": "+14155550100", "Digits": "1"}
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    first = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
    after_first = (seq(redis_client), doc(redis_client)["step"])
    second = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
    assert first.status_code == second.status_code == 200
    assert first.get_data() == second.get_data()
    assert (seq(redis_client), doc(redis_client)["step"]) == after_first


def test_racing_duplicates_from_threads_advance_once(app: Flask, redis_client: redis.Redis) -> None:
    from twilio.request_validator import RequestValidator

    c = dial(app)
    action = c.last.find("Gather").get("action")
    url = f"http://localhost{action}"
    form = {"CallSid": c.call_sid, "From": CALLER, "To": "+14155550100", "Digits": "1"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    start_seq = seq(redis_client)
    barrier = threading.Barrier(6)
    bodies: list[bytes] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200
        bodies.append(response.get_data())

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 6 and len(set(bodies)) == 1
    assert seq(redis_client) == start_seq + 1


def test_racing_answer_and_status_callback_lose_no_update(
    app: Flask, redis_client: redis.Redis
) -> None:
    for attempt in range(8):
        caller = f"+1415555{attempt:04d}"
        c = dial(app, caller=caller)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def answer(
            call: Call = c,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                call.press("1")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def hang_up(
            call: Call = c,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                call.status_callback("completed")
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=answer), threading.Thread(target=hang_up)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        stored = doc(redis_client, caller)
        assert stored["call_status"] == "completed"  # the status callback's update survived
        assert stored["status"] == "interrupted"
        if "confirmation code" in c.last_heard:  # the answer won: its advance was kept
            assert stored["node"] == "confirmation"
            assert stored["ended_reason"] == "call completed at confirmation"
            assert seq(redis_client, caller) == 3
        else:  # the call had already ended: the answer was refused, not half-applied
            assert c.ended == "hangup"
            assert stored["node"] == "main_menu"
            assert seq(redis_client, caller) == 2


def test_anonymous_caller_resumes_with_a_code(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    edit_flow(flows_dir, "  ask: true", "  ask: true\n  codes: true")
    app = make_app()
    first = dial(app, caller="anonymous")
    assert first.last_heard.startswith("If you have a resume code")
    first.press("#")
    assert "resume code:" in first.last_heard
    spoken = first.last_heard.split("resume code:")[1].split(".")[0]
    code = "".join(ch for ch in spoken if ch.isdigit())
    assert len(code) == 6
    first.press("2")
    first.say("A B C 1 2 3")
    assert "resume code" not in first.last_heard  # spoken once
    first.hang_up()

    second = dial(app, caller="Anonymous")
    second.press(code)
    assert second.last_heard.startswith(  # ask: true offers the choice, as by caller ID
        "Welcome back. Last time you were choosing a new flight for booking A B C 1 2 3."
    )
    second.press("1")
    assert "Press 1 for flight OV 105" in second.last_heard
    assert "resume code:" in second.last_heard  # the used code is gone; a new one is given
    assert code not in second.last_heard.replace(" ", "").replace(",", "")
    stored = doc(redis_client, second.call_sid)
    assert stored["variables"]["code"] == "ABC123"
    assert not redis_client.exists(f"{redis_client.test_prefix}:{{{first.call_sid}}}:session")  # type: ignore[attr-defined]
    third = dial(app, caller="anonymous")
    third.press(code)  # a code works once
    assert third.last_heard.startswith("Sorry, that code didn't match.")


def test_wrong_resume_code_three_times_starts_fresh(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    edit_flow(flows_dir, "  ask: true", "  ask: true\n  codes: true")
    app = make_app()
    c = dial(app, caller="")
    for attempt in range(2):
        c.press("000000" if attempt == 0 else "12")
        assert c.last_heard.startswith("Sorry, that code didn't match.")
    c.press("999999")
    assert c.last_heard.startswith(
        "Sorry, that code didn't match. Thanks for calling Omnivoice Air."
    )
    assert c.gather is not None


SENSITIVE_FLOW = """
id: bank
numbers: ["+14155550100"]
resume: {within: 30m, ask: false}
sensitive: [account]
start: account
nodes:
  account:
    gather: {prompt: "Enter your account number."}
    validate: {pattern: "^[0-9]{8}$"}
    save_as: account
    next: amount
  amount:
    gather: {prompt: "Account {{ account }}. Enter an amount."}
    save_as: amount
    next: done
  done:
    say: "Paying {{ amount }} from {{ account }}."
    hangup: true
"""


@pytest.fixture
def bank_app(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "bank.yaml").write_text(SENSITIVE_FLOW)
    return make_app()


def test_sensitive_variables_need_full_attestation(
    bank_app: Flask, redis_client: redis.Redis
) -> None:
    c = dial(bank_app)
    c.press("12345678")
    assert c.last_heard == "Account 12345678. Enter an amount."
    c.hang_up()
    spoofable = dial(bank_app, extra={"StirVerstat": "TN-Validation-Passed-B"})
    assert spoofable.last_heard == "Enter your account number."  # asked again
    assert "account" not in doc(redis_client).get("variables", {})
    spoofable.press("87654321")
    assert spoofable.last_heard == "Account 87654321. Enter an amount."  # back at the checkpoint
    spoofable.hang_up()
    attested = dial(bank_app, extra={"StirVerstat": "TN-Validation-Passed-A"})
    assert attested.last_heard == "Account 87654321. Enter an amount."


def test_verify_node_restores_held_sensitive_variables(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    (flows_dir / "airline.yaml").unlink()
    flow = (
        SENSITIVE_FLOW.replace(
            "resume: {within: 30m, ask: false}", "resume: {within: 30m, ask: false, verify: pin}"
        )
        + """
  pin:
    gather: {prompt: "Enter your PIN."}
    on: {"4321": pin_ok}
    no_match: {retries: 0, then: account}
  pin_ok:
    verified: true
    say: Thank you.
"""
    )
    (flows_dir / "bank.yaml").write_text(flow)
    app = make_app()
    c = dial(app)
    c.press("12345678")
    c.hang_up()
    back = dial(app)
    assert back.last_heard == "Enter your PIN."
    back.press("4321")
    assert back.last_heard == "Thank you. Account 12345678. Enter an amount."
    back.hang_up()
    wrong = dial(app)
    wrong.press("0000")
    assert wrong.last_heard == "Enter your account number."


def test_corrupt_session_starts_fresh_and_logs(
    app: Flask, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"{redis_client.test_prefix}:{{{CALLER}}}:session"  # type: ignore[attr-defined]
    redis_client.hset(key, mapping={"seq": "4", "doc": "{not json"})
    with caplog.at_level(logging.ERROR, logger="omnivoice.calls"):
        c = dial(app)
    assert c.last_heard.startswith("Thanks for calling Omnivoice Air.")
    assert any("corrupt session" in r.getMessage() for r in caplog.records)
    assert doc(redis_client)["status"] == "active"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start (and restart) a redis-server of the test's own, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        procs.append(proc)
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        return proc

    start.port = port  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=5)


def test_redis_restart_between_calls_starts_fresh(
    make_app: Callable[..., Flask], private_redis: Callable[[], subprocess.Popen[bytes]]
) -> None:
    server = private_redis()
    connection = redis.Redis(port=private_redis.port, socket_timeout=1)  # type: ignore[attr-defined]
    app = make_app(REDIS_CLIENT=connection)
    drop_at_rebooking(app)
    server.terminate()
    server.wait(timeout=5)
    private_redis()
    back = dial(app)
    assert back.statuses == [200]
    assert back.last_heard.startswith("Thanks for calling Omnivoice Air.")
    back.press("1")
    assert "confirmation code" in back.last_heard
    connection.close()


def test_an_outage_mid_call_loses_nothing(
    make_app: Callable[..., Flask], private_redis: Callable[[], subprocess.Popen[bytes]]
) -> None:
    """Redis stops answering mid-call: the caller hears the fallback; once it is back, the
    stored progress is all there and the caller's next call resumes it."""
    server = private_redis()
    port = private_redis.port  # type: ignore[attr-defined]
    connection = connect(f"redis://127.0.0.1:{port}/0", timeout=0.3, dev_mode=False)
    app = make_app(REDIS_CLIENT=connection, FALLBACK_NUMBER="+14155550999")
    c = dial(app)
    c.press("2")
    c.say("A B C 1 2 3")
    assert "Press 1 for flight OV 105" in c.last_heard
    inspector = redis.Redis(port=port)
    [session_key] = inspector.keys("*session*")
    before = inspector.hgetall(session_key)
    os.kill(server.pid, signal.SIGSTOP)  # the server hangs: every command times out
    try:
        started = time.monotonic()
        c.press("1")
        assert time.monotonic() - started < 2  # the production client gives up fast
        assert c.statuses[-1] == 200
        assert c.last_heard.startswith("Sorry, we are having trouble right now.")
        assert c.ended == "dial"
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert inspector.hgetall(session_key) == before
    assert c.hang_up("completed") == 204
    back = dial(app)
    assert back.last_heard.startswith("Welcome back. Last time you were choosing a new flight")
    back.say("continue please")
    assert "Press 1 for flight OV 105" in back.last_heard
    back.press("1")
    assert "OV 105" in back.last_heard
    connection.close()
    inspector.close()


LEAKY_FLOW = """
id: bank
numbers: ["+14155550100"]
resume: {within: 30m, ask: true, transferred: agent}
sensitive: [account]
start: account
nodes:
  account:
    gather: {prompt: "Enter your account number."}
    validate: {pattern: "^[0-9]{8}$"}
    save_as: account
    next: menu
  menu:
    description: "at the menu for account {{ account }}"
    gather: {prompt: "Account {{ account }}. Press 0 for an agent."}
    on: {"0": agent}
  agent:
    say: "Transferring account {{ account }}."
    transfer: {client: alice, context: [account]}
"""


@pytest.fixture
def leaky_app(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "bank.yaml").write_text(LEAKY_FLOW)
    return make_app()


def test_welcome_back_never_reads_out_sensitive_values_to_an_unattested_caller(
    leaky_app: Flask,
) -> None:
    c = dial(leaky_app)
    c.press("12345678")
    c.hang_up()
    back = dial(leaky_app)
    assert back.last_heard.startswith("Welcome back. Last time you were at the menu for account.")
    assert "12345678" not in back.last_heard
    back.press("1")
    assert back.last_heard == "Enter your account number."  # asked again before going on


def test_welcome_back_may_name_sensitive_values_to_an_attested_caller(leaky_app: Flask) -> None:
    c = dial(leaky_app)
    c.press("12345678")
    c.hang_up()
    back = dial(leaky_app, extra={"StirVerstat": "TN-Validation-Passed-A"})
    assert "at the menu for account 12345678" in back.last_heard


def test_a_transferred_caller_sent_back_carries_no_sensitive_values(leaky_app: Flask) -> None:
    c = dial(leaky_app)
    c.press("12345678")
    c.press("0")
    assert c.ended == "dial"
    c.hang_up()
    back = dial(leaky_app)
    assert back.ended == "dial"
    assert "12345678" not in back.last_heard
    parameters = {p.get("name"): p.get("value") for p in back.last.iter("Parameter")}
    assert parameters.get("account") == "***"  # a sensitive context value is never sent


def _codes_app(make_app: Callable[..., Flask], flows_dir: Path, **config: Any) -> Flask:
    edit_flow(flows_dir, "  ask: true", "  ask: true\n  codes: true")
    return make_app(**config)


def _announced_code(call: Call) -> str:
    spoken = call.last_heard.split("resume code:")[1].split(".")[0]
    return "".join(ch for ch in spoken if ch.isdigit())


def test_a_live_calls_code_resumes_nothing(make_app: Callable[..., Flask], flows_dir: Path) -> None:
    app = _codes_app(make_app, flows_dir)
    owner = dial(app, caller="anonymous")
    owner.press("#")
    code = _announced_code(owner)
    owner.press("2")  # still on the line
    intruder = dial(app, caller="anonymous")
    intruder.press(code)
    assert intruder.last_heard.startswith("Sorry, that code didn't match.")
    owner.say("A B C 1 2 3")
    assert "Press 1 for flight OV 105" in owner.last_heard  # the owner's call is untouched


def test_codes_are_never_issued_twice(
    make_app: Callable[..., Flask],
    flows_dir: Path,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _codes_app(make_app, flows_dir)
    taken = f"{redis_client.test_prefix}:resume-code:123456"  # type: ignore[attr-defined]
    redis_client.set(taken, "CAsomebody-else", ex=60)
    draws = iter([123456, 654321])
    monkeypatch.setattr("conversation.resume_codes.secrets.randbelow", lambda _: next(draws))
    c = dial(app, caller="anonymous")
    c.press("#")
    assert _announced_code(c) == "654321"
    assert redis_client.get(taken) == b"CAsomebody-else"


def _code_left_by_a_dropped_call(
    make_app: Callable[..., Flask], flows_dir: Path
) -> tuple[Flask, str]:
    """An app allowing 2 wrong codes a minute at least (all in one minute), and the code of a
    caller without caller ID whose call dropped at the main menu."""
    minute_start = (time.time() // 60) * 60 + 1.0
    app = _codes_app(
        make_app, flows_dir, RESUME_CODE_FAILURES_PER_MINUTE=2, CLOCK=lambda: minute_start
    )
    owner = dial(app, caller="anonymous")
    owner.press("#")
    code = _announced_code(owner)
    owner.hang_up()
    return app, code


def test_a_caller_resuming_by_code_may_start_over(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app, code = _code_left_by_a_dropped_call(make_app, flows_dir)
    back = dial(app, caller="anonymous")
    back.press(code)
    assert back.last_heard.startswith("Welcome back. Last time you were at the main menu.")
    back.press("2")  # start over
    assert back.last_heard.startswith("Thanks for calling Omnivoice Air.")


def test_with_ask_false_a_code_resumes_at_once(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    edit_flow(flows_dir, "  ask: true", "  ask: false\n  codes: true")
    app = make_app()
    owner = dial(app, caller="anonymous")
    owner.press("#")
    code = _announced_code(owner)
    owner.hang_up()
    back = dial(app, caller="anonymous")
    back.press(code)
    assert "For flight status" in back.last_heard
    assert "Welcome back" not in back.last_heard


def test_one_caller_keying_wrong_codes_locks_nobody_else_out(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app, code = _code_left_by_a_dropped_call(make_app, flows_dir)
    guesser = dial(app, caller="anonymous")
    guesser.press("111111")
    guesser.press("222222")  # the floor of wrong codes a minute, by one caller
    back = dial(app, caller="anonymous")
    back.press(code)
    assert not back.last_heard.startswith("Sorry, that code didn't match.")
    assert "Last time you were at the main menu" in back.last_heard  # where the owner was
    back.press("1")
    assert "For flight status" in back.last_heard


def test_a_flood_of_wrong_codes_throttles_code_resumes(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app, code = _code_left_by_a_dropped_call(make_app, flows_dir)
    for guess in ("1", "2"):  # two guessing calls, three wrong codes each
        guesser = dial(app, caller="anonymous")
        for attempt in ("1", "2", "3"):
            guesser.press(guess * 3 + attempt * 3)
    # 6 wrong codes against a limit of max(2, 1 x 4 calls asked for a code): refused this minute
    back = dial(app, caller="anonymous")
    back.press(code)
    assert back.last_heard.startswith("Sorry, that code didn't match.")


def test_twenty_calls_keying_one_code_at_once_resume_it_once(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = _codes_app(make_app, flows_dir)
    owner = dial(app, caller="anonymous")
    owner.press("#")
    code = _announced_code(owner)
    owner.press("2")
    owner.say("A B C 1 2 3")  # a booking in hand, then the line drops
    owner.hang_up()
    callers = [dial(app, caller="anonymous") for _ in range(20)]
    start = threading.Barrier(len(callers))

    def key_code(call: Call) -> str:
        start.wait()
        call.press(code)
        if call.last_heard.startswith("Welcome back."):
            call.press("1")  # continue
        return call.last_heard

    with ThreadPoolExecutor(len(callers)) as pool:
        heard = list(pool.map(key_code, callers))
    resumed = [text for text in heard if not text.startswith("Sorry, that code didn't match.")]
    assert len(resumed) == 1, heard
    assert "Press 1 for flight OV 105" in resumed[0]  # back where the owner was

"""Calls that share a caller ID (lines behind one PBX trunk): whole calls over signed webhooks.

By default (``resume: {concurrent: separate}``) a call from a number whose previous call is still
live starts a session of its own and the live call goes on undisturbed; with ``takeover`` the new
call resumes the session and the live call is told goodbye. A call counts as live until its next
webhook is overdue (:mod:`ivr.liveness`), so a redial after a drop whose status callback never
came still resumes once that moment has passed, and a redial after a reported end resumes at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from ivr import liveness
from ivr.session import Session
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_redis import RoundTrips, counting_client
from tests.support_twilio import CALLER, prefix_of, stored

WELCOME = "Thanks for calling Omnivoice Air."
WELCOME_BACK = "Welcome back."
GOODBYE = "This call is continuing on another line. Goodbye."


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def with_policy(make_app: Callable[..., Flask], flows_dir: Path, policy: str | None) -> Flask:
    """The demo flow with ``concurrent: policy`` (``None``: the default), on a hand-moved clock."""
    if policy is not None:
        path = flows_dir / "airline.yaml"
        text = path.read_text()
        path.write_text(text.replace("  ask: true", f"  ask: true\n  concurrent: {policy}"))
    app = make_app()
    service = app.extensions["omnivoice.calls"]
    service.clock = service.codes.clock = Clock()
    return app


def clock_of(app: Flask) -> Clock:
    clock: Clock = app.extensions["omnivoice.calls"].clock
    return clock


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


def own_session(connection: redis.Redis, call_sid: str) -> Session:
    """The session of a live call that another call from its number set aside."""
    key = f"{prefix_of(connection)}:{{{CALLER}}}:session:{call_sid}"
    raw = connection.hget(key, "doc")
    assert raw is not None, f"no session of its own for {call_sid}"
    assert 0 < connection.ttl(key) <= 86400
    return Session.from_dict(json.loads(raw))


def at_confirmation(app: Flask) -> Call:
    """A caller who asked for flight status and is asked for a confirmation code."""
    call = dial(app)
    call.press("1")
    assert "confirmation code" in call.last_heard
    return call


@pytest.mark.parametrize("policy", [None, "separate"], ids=["default", "separate"])
def test_a_second_line_gets_its_own_session_and_nobody_is_cut_off(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis, policy: str | None
) -> None:
    app = with_policy(make_app, flows_dir, policy)
    first = at_confirmation(app)
    clock_of(app).now += 5
    second = dial(app)  # another line behind the same number, while the first is live
    assert second.last_heard.startswith(WELCOME)  # not the first caller's "welcome back"
    assert "Thanks" in second.last_heard and WELCOME_BACK not in second.last_heard

    first.say("X Y Z 7 8 9.")  # the first caller goes on as if nothing happened
    assert "is on time" in first.last_heard
    second.press("2")
    assert "confirmation code" in second.last_heard
    second.say("A B C 1 2 3")
    assert "Press 1 for flight OV 105" in second.last_heard
    first.press("2")  # "anything else?" no: goodbye
    assert first.ended == "hangup" and GOODBYE not in " ".join(first.heard)
    assert all(status == 200 for status in first.statuses + second.statuses)

    assert stored(redis_client).call == second.call_sid  # the newest call has the number's session
    mine = own_session(redis_client, first.call_sid)
    assert mine.call_sid == first.call_sid and mine.variables["code"] == "XYZ789"
    assert first.status_callback("completed") == 204  # recorded in the first call's own session
    assert own_session(redis_client, first.call_sid).call_status == "completed"
    assert stored(redis_client).doc["call_status"] is None

    second.press("1")
    assert "You are now on flight OV 105" in second.last_heard


def test_takeover_moves_the_session_to_the_new_call_and_ends_the_live_one(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    app = with_policy(make_app, flows_dir, "takeover")
    first = at_confirmation(app)
    clock_of(app).now += 5
    second = dial(app)
    assert second.last_heard.startswith(WELCOME_BACK)
    first.say("X Y Z 7 8 9.")
    assert first.ended == "hangup" and GOODBYE in first.last_heard
    second.press("1")
    assert "confirmation code" in second.last_heard
    second.say("X Y Z 7 8 9.")
    assert "is on time" in second.last_heard
    assert stored(redis_client).call == second.call_sid


@pytest.mark.parametrize("policy", [None, "takeover"], ids=["default", "takeover"])
def test_a_redial_after_a_drop_nobody_reported_resumes_once_the_call_is_overdue(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis, policy: str | None
) -> None:
    app = with_policy(make_app, flows_dir, policy)
    at_confirmation(app)  # then the line drops: no webhook, no status callback
    live_until = stored(redis_client).doc["live_until"]
    clock = clock_of(app)
    assert clock.now < live_until < clock.now + 5 * 60  # a stale call blocks resume briefly
    clock.now = live_until + 1
    back = dial(app)
    assert back.last_heard.startswith(WELCOME_BACK)
    assert "giving us your confirmation code" in back.last_heard
    back.press("1")
    assert "confirmation code" in back.last_heard
    back.say("X Y Z 7 8 9.")
    assert "is on time" in back.last_heard


def test_a_live_call_taken_for_gone_is_not_cut_off_but_starts_again(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    app = with_policy(make_app, flows_dir, None)
    first = at_confirmation(app)
    clock = clock_of(app)
    clock.now = stored(redis_client).doc["live_until"] + 1  # the first caller is slow, not gone
    second = dial(app)
    assert second.last_heard.startswith(WELCOME_BACK)  # it looked like a redial after a drop
    first.say("X Y Z 7 8 9.")
    assert first.ended is None and GOODBYE not in first.last_heard
    assert first.last_heard.startswith("Sorry, we couldn't pick up where you left off")
    assert "For flight status, press 1" in first.last_heard
    first.press("1")
    assert "confirmation code" in first.last_heard
    first.say("X Y Z 7 8 9.")
    assert "is on time" in first.last_heard
    assert own_session(redis_client, first.call_sid).variables["code"] == "XYZ789"
    second.press("1")  # the second call kept the number's session all along
    assert "confirmation code" in second.last_heard
    assert stored(redis_client).call == second.call_sid


def test_a_redial_after_a_reported_drop_resumes_at_once(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = with_policy(make_app, flows_dir, None)
    first = at_confirmation(app)
    assert first.hang_up("completed") == 204  # Twilio reports the drop
    clock_of(app).now += 2
    back = dial(app)
    assert back.last_heard.startswith(WELCOME_BACK)


def test_a_redial_after_a_finished_call_starts_fresh(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = with_policy(make_app, flows_dir, None)
    first = at_confirmation(app)
    first.say("X Y Z 7 8 9.")
    first.press("2")  # nothing else: the flow ends
    assert first.ended == "hangup"
    clock_of(app).now += 2  # even before Twilio's status callback
    assert dial(app).last_heard.startswith(WELCOME)


@pytest.fixture
def counted(redis_client: redis.Redis) -> Iterator[tuple[redis.Redis, RoundTrips]]:
    connection, counter = counting_client(redis_client)
    yield connection, counter
    connection.close()


def test_calls_beside_each_other_keep_to_two_round_trips_per_webhook(
    make_app: Callable[..., Flask], flows_dir: Path, counted: tuple[redis.Redis, RoundTrips]
) -> None:
    connection, counter = counted
    app = with_policy(lambda: make_app(REDIS_CLIENT=connection), flows_dir, None)
    dial(app, caller="+14155550199")  # scripts loaded, flow version published
    first = at_confirmation(app)
    sent: dict[str, list[str]] = {}
    counter.reset()
    second = dial(app)  # sets the first call's session aside in its save
    sent["second call's first webhook"] = list(counter.sent)
    counter.reset()
    first.say("X Y Z 7 8 9.")  # loaded from, and saved to, the first call's own session
    sent["first call's next webhook"] = list(counter.sent)
    counter.reset()
    assert first.status_callback("completed") == 204
    sent["first call's status callback"] = list(counter.sent)
    assert "is on time" in first.last_heard and second.last_heard.startswith(WELCOME)
    session_requests = {name: [c for c in s if c == "EVALSHA"] for name, s in sent.items()}
    assert all(len(requests) == 2 for requests in session_requests.values()), sent
    if not hasattr(connection, "get_primaries"):  # one server: nothing else is sent
        assert all(len(s) <= 2 for s in sent.values()), sent


def test_the_live_window_follows_what_the_caller_was_asked() -> None:
    from ivr.turn import Gather, Hangup, Say

    short = (Gather(prompt=(Say("Press 1."),), num_digits=1, timeout=5),)
    code = (Gather(prompt=(Say("x" * 100),), input=("dtmf", "speech"), timeout=8),)
    assert liveness.live_until(short, 0) == pytest.approx(0.8 + 5 + liveness.WEBHOOK_GRACE)
    assert liveness.live_until(code, 0) == pytest.approx(10 + 8 * 12 + liveness.WEBHOOK_GRACE)
    assert liveness.live_until((Say("Bye."), Hangup()), 0) < liveness.WEBHOOK_GRACE + 1
    session = Session(CALLER, "airline", "v1", "CA1", updated_at=100.0)
    assert liveness.is_live(session, 100 + liveness.LEGACY_LIVE_SECONDS)  # saved before the field
    assert not liveness.is_live(session, 101 + liveness.LEGACY_LIVE_SECONDS)
    assert not liveness.is_live(session.call_ended("completed", 100.0), 100.0)
    assert liveness.is_live(session.evolve(live_until=500.0), 500.0)
    assert not liveness.is_live(session.evolve(live_until=500.0), 500.5)


def test_a_corrupt_set_aside_session_is_discarded_alone(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    app = with_policy(make_app, flows_dir, None)
    first = at_confirmation(app)
    clock_of(app).now += 5
    second = dial(app)  # the first call's session is set aside under its own key
    own_key = f"{prefix_of(redis_client)}:{{{CALLER}}}:session:{first.call_sid}"
    redis_client.hset(own_key, "doc", "{not json")
    first.say("X Y Z 7 8 9.")  # the first call's next webhook finds its own session corrupt
    assert all(status == 200 for status in first.statuses)
    assert stored(redis_client).call == second.call_sid  # the other line's session is untouched
    second.press("2")
    assert "confirmation code" in second.last_heard

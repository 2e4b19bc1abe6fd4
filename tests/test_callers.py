"""Who is calling and which flow answers: caller keys and number routing over HTTP on real Redis.

A caller with a usable number is keyed by its E.164 form; a withheld caller ID is keyed by the
call's own CallSid (two anonymous callers must never share a session); an agent app caller keeps
its ``client:`` identity. The called number (``To``) picks the flow, else the default flow does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from context.callers import _NANP_E164, _parsed_e164, identify, masked, to_e164
from context.keys import Keys
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import (
    form,
    post,
    prefix_of,
    session_key,
    session_keys,
    spoken,
    stored,
    twiml,
)

SUPPORT_FLOW = """
id: support_line
description: A second flow on its own number.
numbers: ["+14155550199"]
start: menu
nodes:
  menu:
    gather:
      prompt: Welcome to the support line. Press 1 for billing.
    on:
      "1": billing
  billing:
    say: Billing is closed today.
    hangup: true
"""


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


@pytest.mark.parametrize(
    "from_",
    [None, "", "   ", "anonymous", "Anonymous", "restricted", "+266696687", "unknown"],
)
def test_withheld_caller_is_served_and_keyed_by_call_sid(
    client: FlaskClient, redis_client: redis.Redis, from_: str | None
) -> None:
    params = form("CA" + "5" * 32)
    if from_ is None:
        del params["From"]
    else:
        params["From"] = from_
    root = twiml(post(client, "/voice", params))
    gather = root.find("Gather")
    assert gather is not None
    assert session_keys(redis_client) == [session_key(redis_client, params["CallSid"])]
    assert stored(redis_client, params["CallSid"]).doc["caller"] == params["CallSid"]

    answered = twiml(post(client, gather.get("action", ""), {**params, "Digits": "1"}))
    assert any("confirmation code" in text for text in spoken(answered))


def test_two_anonymous_callers_never_share_a_session(app: Flask, redis_client: redis.Redis) -> None:
    first = dial(app, caller="anonymous")
    first.press("1")
    second = dial(app, caller="anonymous")
    assert second.last_heard.startswith("Thanks for calling Omnivoice Air.")  # not resumed
    assert sorted(session_keys(redis_client)) == sorted(
        [session_key(redis_client, first.call_sid), session_key(redis_client, second.call_sid)]
    )
    assert stored(redis_client, first.call_sid).doc["node"] == "confirmation"
    assert stored(redis_client, second.call_sid).doc["node"] == "main_menu"


def test_two_spellings_of_a_number_are_one_caller(app: Flask, redis_client: redis.Redis) -> None:
    call = dial(app, caller="+1 (415) 555-0123")
    assert session_keys(redis_client) == [session_key(redis_client, "+14155550123")]
    call.caller = "+14155550123"  # the same call, the other spelling: it finds its session
    call.press("1")
    assert "confirmation code" in call.last_heard
    assert session_keys(redis_client) == [session_key(redis_client, "+14155550123")]
    assert stored(redis_client, "+14155550123").doc["node"] == "confirmation"


def test_national_format_is_normalised_with_the_default_region(
    app: Flask, redis_client: redis.Redis
) -> None:
    dial(app, caller="(415) 555-0123")
    assert session_keys(redis_client) == [session_key(redis_client, "+14155550123")]


def test_client_caller_keeps_its_identity(app: Flask, redis_client: redis.Redis) -> None:
    call = dial(app, caller="client:alice")
    assert call.gather is not None
    assert session_keys(redis_client) == [session_key(redis_client, "client:alice")]
    assert stored(redis_client, "client:alice").call == call.call_sid


@pytest.fixture
def two_flow_app(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "support_line.yaml").write_text(SUPPORT_FLOW)
    return make_app()


@pytest.mark.parametrize(
    ("called", "flow_id", "first_words"),
    [
        ("+14155550199", "support_line", "Welcome to the support line."),
        ("(415) 555-0199", "support_line", "Welcome to the support line."),
        ("+14155550100", "airline", "Thanks for calling Omnivoice Air."),
        ("+14155550777", "airline", "Thanks for calling Omnivoice Air."),  # no flow: default
        ("", "airline", "Thanks for calling Omnivoice Air."),
    ],
)
def test_called_number_selects_the_flow(
    two_flow_app: Flask, redis_client: redis.Redis, called: str, flow_id: str, first_words: str
) -> None:
    call = dial(two_flow_app, called=called)
    assert call.last_heard.startswith(first_words)
    assert call.gather is not None
    assert stored(redis_client).doc["flow_id"] == flow_id


def test_second_flow_runs_to_its_end(two_flow_app: Flask, redis_client: redis.Redis) -> None:
    call = dial(two_flow_app, called="+14155550199")
    call.press("1")
    assert call.last_heard == "Billing is closed today."
    assert call.ended == "hangup"
    assert stored(redis_client).doc["status"] == "completed"


# ---- context.callers directly -------------------------------------------------------------
@pytest.mark.parametrize(
    ("from_", "key", "recognised", "kind"),
    [
        ("+14155550123", "+14155550123", True, "number"),
        ("+1 (415) 555-0123", "+14155550123", True, "number"),
        ("+44 20 7946 0958", "+442079460958", True, "number"),
        ("client:alice", "client:alice", True, "client"),
        ("sip:Alice@Example.com", "sip:Alice@Example.com", True, "sip"),
        ("SIP:bob@example.com", "sip:bob@example.com", True, "sip"),
        ("Client:alice", "client:alice", True, "client"),
        ("client:", "CA1", False, "withheld"),
        ("anonymous", "CA1", False, "withheld"),
        ("RESTRICTED", "CA1", False, "withheld"),
        ("+266696687", "CA1", False, "withheld"),
        ("not a number", "CA1", False, "withheld"),
        ("+1" + "5" * 60, "CA1", False, "withheld"),
        (None, "CA1", False, "withheld"),
    ],
)
def test_identify(from_: str | None, key: str, recognised: bool, kind: str) -> None:
    caller = identify(from_, "CA1")
    assert (caller.key, caller.recognised, caller.kind) == (key, recognised, kind)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", "US", "+14155550100"),
        ("415-555-0100", "US", "+14155550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("12", "US", None),
        ("", "US", None),
        (None, "US", None),
        ("client:bob", "US", None),
    ],
)
def test_to_e164(raw: str | None, region: str, expected: str | None) -> None:
    assert to_e164(raw, region) == expected


def test_masked_keeps_only_the_last_four_characters() -> None:
    assert masked("+14155550123") == "***0123"
    assert masked("1234") == "***"


@settings(max_examples=300, derandomize=True)
@given(st.from_regex(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True))
def test_the_north_american_fast_path_equals_phonenumbers(number: str) -> None:
    assert to_e164(number) == _parsed_e164(number, "US") == number


@pytest.mark.parametrize("number", ["+12125550100", "+18005550199", "+19999999999", "+12002000000"])
def test_the_fast_path_s_edge_numbers_equal_phonenumbers(number: str) -> None:
    assert to_e164(number) == _parsed_e164(number, "US")


def test_the_benchmarks_callers_are_numbers_a_network_assigns_and_take_the_fast_path() -> None:
    from bench.callers import new_caller

    numbers = [new_caller() for _ in range(5000)]
    assert len(set(numbers)) == len(numbers)
    assert all(_NANP_E164.fullmatch(number) for number in numbers)  # as Twilio sends them
    assert all(_parsed_e164(number, "US") == number for number in numbers[::100])


# ---- distinct identities, distinct keys -----------------------------------------------------
def identity(from_: str, call_sid: str) -> tuple[str, str]:
    """Who a webhook's ``From`` and ``CallSid`` name: one E.164 number, one client or SIP identity
    as sent (its scheme in any case), or, for a withheld caller ID, the call itself."""
    caller = identify(from_, call_sid)
    if caller.kind == "number":
        return ("number", caller.key)  # several spellings of one number: one person, on purpose
    if caller.kind in ("client", "sip"):
        return (caller.kind, from_.strip()[len(caller.kind) + 1 :])
    return ("withheld", call_sid)


_RISKY = [*"aA{}()%7BDd@:+#.-_ ", "%7B", "%7D", "%25", "é", "\u0130", "\u212a"]
_NAMES = st.lists(st.sampled_from(_RISKY), max_size=12).map("".join)
_LONG = st.tuples(_NAMES, st.integers(120, 140), st.sampled_from("ab")).map(
    lambda parts: parts[0] + "x" * parts[1] + parts[2]
)
_FROM = st.one_of(
    st.tuples(st.sampled_from(["sip:", "SIP:", "Sip:", "client:", "CLIENT:"]), _NAMES | _LONG).map(
        "".join
    ),
    st.sampled_from(["+14155550123", "+1 (415) 555-0123", "+442079460958", "anonymous", ""]),
    st.text(max_size=20),
)
_CALL_SID = st.one_of(
    st.sampled_from(["CA" + "1" * 32, "CA" + "2" * 32]),
    st.tuples(st.sampled_from(["", "+", "sip:", "call:", "client:"]), _NAMES).map("".join),
).filter(bool)


@settings(max_examples=500, derandomize=True)
@given(st.lists(st.tuples(_FROM, _CALL_SID), min_size=2, max_size=12))
def test_distinct_identities_never_share_a_key(webhooks: list[tuple[str, str]]) -> None:
    keys = Keys("omnivoice")
    by_key: dict[str, tuple[str, str]] = {}
    for from_, call_sid in webhooks:
        key = keys.session(identify(from_, call_sid).key)
        who = identity(from_, call_sid)
        assert by_key.setdefault(key, who) == who, f"{who} and {by_key[key]} share {key}"


@settings(max_examples=300, derandomize=True)
@given(_FROM, _CALL_SID, st.integers(0, 5))
def test_every_key_of_a_caller_is_in_one_cluster_slot(from_: str, call_sid: str, step: int) -> None:
    keys = Keys("omnivoice")
    caller = identify(from_, call_sid).key
    own = [keys.session(caller), keys.reply(caller, call_sid, step), keys.call(caller, call_sid)]
    tag = own[0].split("{", 1)[1].split("}", 1)[0]  # what Redis Cluster hashes
    assert tag and "{" not in tag
    assert {key_slot(key.encode()) for key in own} == {key_slot(tag.encode())}


@settings(max_examples=300, derandomize=True)
@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_numbers_keep_the_keys_they_always_had(number: str) -> None:
    caller = identify(number, "CA" + "1" * 32)
    if caller.kind == "number":
        assert Keys("omnivoice").session(caller.key) == f"omnivoice:{{{caller.key}}}:session"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sip:alice@example.com", "sip:Alice@example.com"),
        ("sip:{alice}@example.com", "sip:(alice)@example.com"),
        ("client:{bob}", "client:(bob)"),
        ("client:a%7Bb", "client:a{b"),
        ("sip:" + "a" * 130 + "1@example.com", "sip:" + "a" * 130 + "2@example.com"),
    ],
)
def test_two_identities_differing_only_so_get_separate_sessions(
    app: Flask, redis_client: redis.Redis, first: str, second: str
) -> None:
    a = dial(app, caller=first)
    a.press("1")  # the first caller moves on to the confirmation code
    b = dial(app, caller=second)
    assert b.last_heard.startswith("Thanks for calling Omnivoice Air.")  # not a "welcome back"
    b.press("0")  # the second caller asks for an agent; the first is untouched
    a.say("A B C 1 2 3")
    assert "OV 101" in a.last_heard
    keys = Keys(prefix_of(redis_client))
    expected = {keys.session(identify(caller, "").key) for caller in (first, second)}
    assert set(session_keys(redis_client)) == expected
    assert len(expected) == 2

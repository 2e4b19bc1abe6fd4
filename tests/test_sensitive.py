"""Sensitive values: sealed at rest, never trusted through a resume code, kept out of logs and events.

Real Redis (every topology), real HTTP through the Twilio front with signed requests, and a real
local back-end for the data dips that echo sensitive values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from context.sealing import Sealer, new_key
from context.session_documents import SEALED_REPLY, SessionCodec
from conversation.events import MemorySink
from ivr import sensitive
from ivr.errors import ConfigError, FlowLoadError
from ivr.flow import load_flow_text
from ivr.session import Session
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_backend import Backend

CALLER = "+14155550123"
PIN = "8642"
DOB = "19791231"
ATTESTED = {"StirVerstat": "TN-Validation-Passed-A"}

PIN_FLOW = """
id: bank
numbers: ["+14155550100"]
resume: {within: 30m, ask: false, codes: true}
sensitive: [pin]
start: pin
nodes:
  pin:
    gather: {prompt: "Enter your PIN."}
    validate: {pattern: "^[0-9]{4}$"}
    save_as: pin
    next: menu
  menu:
    checkpoint: true
    gather: {prompt: "PIN {{ pin }} taken. Press 1 to pay."}
    on: {"1": paid}
  paid:
    say: "Paid with PIN {{ pin }}."
    hangup: true
"""

DIP_FLOW = """
id: dob
numbers: ["+14155550100"]
resume: {within: 30m, ask: false}
sensitive: [dob, arrangement.received.dob]
start: dob
nodes:
  dob:
    gather: {prompt: "Enter your date of birth."}
    save_as: dob
    next: look_up
  look_up:
    http:
      url: "BACKEND/echo"
      method: POST
      json: {dob: "{{ dob }}", plan: monthly}
      save_as: arrangement
    next: confirm
  confirm:
    gather: {prompt: "Plan {{ arrangement.received.plan }} for {{ arrangement.received.dob }}. Press 1."}
    on: {"1": bye}
  bye:
    say: Goodbye.
    hangup: true
"""


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


def raw_keys(redis_client: redis.Redis) -> dict[str, bytes]:
    """Every string and hash value under the test's prefix, as stored."""
    prefix = redis_client.test_prefix  # type: ignore[attr-defined]
    found: dict[str, bytes] = {}
    nodes = (
        redis_client.get_primaries()  # type: ignore[attr-defined]
        if hasattr(redis_client, "get_primaries")
        else [None]
    )
    for node in nodes:
        scan = (
            redis_client.scan_iter(match=f"{prefix}*", target_nodes=node)  # type: ignore[call-arg]
            if node is not None
            else redis_client.scan_iter(match=f"{prefix}*")
        )
        for key in scan:
            name = key.decode() if isinstance(key, bytes) else key
            kind = redis_client.type(name)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "string":
                found[name] = redis_client.get(name) or b""
            elif kind == "hash":
                found[name] = json.dumps(
                    {k.decode(): v.decode() for k, v in redis_client.hgetall(name).items()}
                ).encode()
            elif kind == "stream":
                found[name] = repr(redis_client.xrange(name)).encode()
    return found


def session_hash(redis_client: redis.Redis, caller: str = CALLER) -> dict[str, Any]:
    key = f"{redis_client.test_prefix}:{{{caller}}}:session"  # type: ignore[attr-defined]
    return json.loads(redis_client.hget(key, "doc"))


@pytest.fixture
def pin_app(make_app: Callable[..., Flask], flows_dir: Path) -> Callable[..., Flask]:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "bank.yaml").write_text(PIN_FLOW)
    return make_app


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def dip_app(make_app: Callable[..., Flask], flows_dir: Path, backend: Backend) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "dob.yaml").write_text(DIP_FLOW.replace("BACKEND", backend.url))
    return make_app()


def _code_of(call: Call) -> str:
    spoken = call.last_heard.split("resume code:")[1].split(".")[0]
    return "".join(ch for ch in spoken if ch.isdigit())


# ---- a resume code never counts as attested -------------------------------------------------
def test_an_attested_anonymous_call_gets_no_sensitive_values_through_a_code(
    pin_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    app = pin_app()
    first = dial(app, caller="anonymous")
    first.press("#")  # no code yet
    code = _code_of(first)
    first.press(PIN)
    assert first.last_heard == f"PIN {PIN} taken. Press 1 to pay."
    first.hang_up()

    second = dial(app, caller="anonymous", extra=ATTESTED)
    second.press(code)
    assert "Enter your PIN." in second.last_heard  # asked again: the code vouches for nothing
    assert PIN not in second.last_heard
    stored = session_hash(redis_client, second.call_sid)
    assert "pin" not in stored.get("variables", {})
    assert stored.get("attested") is not True
    second.press("1357")
    assert second.last_heard == "PIN 1357 taken. Press 1 to pay."  # back at the checkpoint


def test_a_code_resume_gets_sensitive_values_back_only_through_the_verify_node(
    pin_app: Callable[..., Flask], flows_dir: Path
) -> None:
    flow = PIN_FLOW.replace("codes: true}", "codes: true, verify: check}") + (
        "  check:\n"
        '    gather: {prompt: "Say the magic word."}\n'
        '    on: {"7": ok}\n'
        "    no_match: {retries: 0, then: pin}\n"
        "  ok:\n"
        "    verified: true\n"
        "    say: Verified.\n"
    )
    (flows_dir / "bank.yaml").write_text(flow)
    app = pin_app()
    first = dial(app, caller="anonymous")
    first.press("#")
    code = _code_of(first)
    first.press(PIN)
    first.hang_up()
    second = dial(app, caller="anonymous", extra=ATTESTED)
    second.press(code)
    assert "Say the magic word." in second.last_heard
    second.press("7")
    assert second.last_heard.startswith(f"Verified. PIN {PIN} taken.")


# ---- sealed at rest ------------------------------------------------------------------------
def test_sensitive_values_are_sealed_in_redis_and_read_back_on_the_next_webhook(
    pin_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    app = pin_app()
    c = dial(app)
    c.press(PIN)
    assert c.last_heard == f"PIN {PIN} taken. Press 1 to pay."  # the TwiML reads it out
    stored = raw_keys(redis_client)
    assert stored, "the call stored nothing"
    for key, value in stored.items():
        assert PIN.encode() not in value, f"{key} holds the PIN in clear"
    doc = session_hash(redis_client)
    assert "sealed" in doc and "pin" not in doc.get("variables", {})
    replies = [v for k, v in stored.items() if ":reply:" in k]
    assert any(v.startswith(SEALED_REPLY.encode()) for v in replies)  # once a secret is held
    c.press("1")
    assert c.last_heard == f"Paid with PIN {PIN}."  # opened again for the engine


def test_a_retried_webhook_gets_the_sealed_reply_back_as_sent(
    pin_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    app = pin_app()
    c = dial(app)
    gather = c.last.find(".//Gather")
    assert gather is not None
    url = f"http://localhost{gather.get('action')}"
    form = {"CallSid": c.call_sid, "From": CALLER, "To": "+14155550100", "Digits": PIN}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    client = app.test_client()
    first, again = (
        client.post(url, data=form, headers={"X-Twilio-Signature": signature}) for _ in range(2)
    )
    assert first.status_code == again.status_code == 200
    assert first.get_data() == again.get_data()  # the cached reply, opened again
    assert f"PIN {PIN} taken".encode() in again.get_data()
    assert all(PIN.encode() not in value for value in raw_keys(redis_client).values())


def test_a_data_dip_that_echoes_a_sensitive_value_is_sealed_by_path(
    dip_app: Flask, redis_client: redis.Redis, backend: Backend
) -> None:
    c = dial(dip_app)
    c.press(DOB)
    assert c.last_heard == f"Plan monthly for {DOB}. Press 1."
    assert backend.requests and json.loads(backend.requests[0]["body"])["dob"] == DOB
    doc = session_hash(redis_client)
    received = doc["variables"]["arrangement"]["received"]
    assert received["plan"] == "monthly" and "dob" not in received  # the rest stays readable
    for key, value in raw_keys(redis_client).items():
        assert DOB.encode() not in value, f"{key} holds the date of birth in clear"
    c.press("1")
    assert c.last_heard == "Goodbye."


def test_sensitive_values_never_reach_logs_or_events(
    make_app: Callable[..., Flask],
    flows_dir: Path,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (flows_dir / "airline.yaml").unlink()
    flow = DIP_FLOW.replace("BACKEND", backend.url).replace(
        "sensitive: [dob, arrangement.received.dob]", "sensitive: [dob, arrangement]"
    )
    (flows_dir / "dob.yaml").write_text(flow)
    sink = MemorySink()
    app = make_app(EVENT_SINKS=(sink,))
    with caplog.at_level(logging.DEBUG):
        c = dial(app)
        c.press(DOB)
        c.hang_up()
    assert sink.events, "no events were recorded"
    for event in sink.events:
        assert DOB not in json.dumps(event.to_dict()), event.name
    for record in caplog.records:
        assert DOB not in record.getMessage(), record.getMessage()


# ---- keys and rotation ---------------------------------------------------------------------
def test_a_rotated_key_still_opens_old_sessions_and_the_next_save_uses_the_new_key(
    pin_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    old, new = new_key(), new_key()
    c = Call(FlaskTransport(pin_app(SENSITIVE_DATA_KEYS=old)), AUTH_TOKEN).dial()
    c.press(PIN)
    c.transport = FlaskTransport(pin_app(SENSITIVE_DATA_KEYS=f"{new},{old}"))
    c.press("1")
    assert c.last_heard == f"Paid with PIN {PIN}."
    sealed = session_hash(redis_client)["sealed"]
    assert Sealer([new.encode()]).open(sealed)  # sealed again with the new key alone


def test_a_session_sealed_with_a_key_no_longer_configured_starts_afresh_without_leaking(
    pin_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    c = Call(FlaskTransport(pin_app(SENSITIVE_DATA_KEYS=new_key())), AUTH_TOKEN).dial()
    c.press(PIN)
    c.hang_up()
    with caplog.at_level(logging.ERROR, logger="omnivoice.calls"):
        back = dial(pin_app(SENSITIVE_DATA_KEYS=new_key()))
    assert back.last_heard == "Enter your PIN."
    assert any("cannot be opened" in r.getMessage() for r in caplog.records)
    assert all(CALLER not in r.getMessage() for r in caplog.records)


def test_a_tampered_sealed_field_is_refused(
    pin_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    app = pin_app()
    c = dial(app)
    c.press(PIN)
    c.hang_up()
    key = f"{redis_client.test_prefix}:{{{CALLER}}}:session"  # type: ignore[attr-defined]
    doc = session_hash(redis_client)
    doc["sealed"] = doc["sealed"][:-6] + (
        "A" * 6 if not doc["sealed"].endswith("A" * 6) else "B" * 6
    )
    redis_client.hset(key, "doc", json.dumps(doc))
    back = dial(app)
    assert back.last_heard == "Enter your PIN."  # nothing garbled comes back


@pytest.mark.parametrize("keys", ["not-a-key", f"{new_key()},short", "x" * 44])
def test_unusable_keys_stop_the_app_without_showing_them(
    pin_app: Callable[..., Flask], keys: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        pin_app(SENSITIVE_DATA_KEYS=keys)
    assert "SENSITIVE_DATA_KEYS" in str(caught.value)
    for part in keys.split(","):
        assert part not in str(caught.value)


def test_keys_commands_make_and_check_keys(pin_app: Callable[..., Flask]) -> None:
    app = pin_app(SENSITIVE_DATA_KEYS=f"{new_key()},{new_key()}")
    runner = app.test_cli_runner()
    made = runner.invoke(args=["keys", "new"])
    assert made.exit_code == 0 and len(made.output.strip()) == 44
    Sealer.from_settings(made.output.strip(), "unused")
    checked = runner.invoke(args=["keys", "check"])
    assert checked.exit_code == 0 and "2 key(s) usable" in checked.output


# ---- the flow names what is sensitive ------------------------------------------------------
def test_a_sensitive_name_no_node_saves_is_an_error_at_its_line() -> None:
    text = PIN_FLOW.replace("sensitive: [pin]", "sensitive: [pn]")
    with pytest.raises(FlowLoadError) as caught:
        load_flow_text(text, "bank.yaml", "bank")
    message = str(caught.value)
    assert "bank.yaml:5:" in message
    assert "'pn'" in message and "Did you mean 'pin'?" in message


# ---- the pure parts ------------------------------------------------------------------------
_names = st.text(alphabet="abcxyz_", min_size=1, max_size=3)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.dictionaries(_names, inner, max_size=3) | st.lists(inner, max_size=2),
    max_leaves=8,
)


@settings(deadline=None, derandomize=True)  # a shared CI machine is slow at times
@given(
    variables=st.dictionaries(_names, _values, max_size=4),
    paths=st.lists(st.lists(_names, min_size=1, max_size=3).map(".".join), max_size=4),
)
def test_take_then_put_gives_the_variables_back_and_leaves_no_secret(
    variables: dict[str, Any], paths: list[str]
) -> None:
    left, taken = sensitive.take(paths, variables)
    assert sensitive.put(left, taken) == variables
    for path in taken:
        assert not sensitive.has(left, path)


def test_codec_seals_only_sessions_with_secrets() -> None:
    codec = SessionCodec(Sealer.ephemeral())
    plain = Session(caller=CALLER, flow_id="f", flow_version="v", call_sid="CA1")
    doc, sealed = codec.encode(plain.evolve(variables={"name": "Ada"}))
    assert not sealed and b"sealed" not in doc
    secret = plain.evolve(sensitive=("pin",), variables={"pin": PIN, "name": "Ada"})
    doc, sealed = codec.encode(secret)
    assert sealed and PIN.encode() not in doc
    assert codec.decode("key", doc) == secret
    assert codec.open_reply(codec.seal_reply("<Response/>")) == "<Response/>"
    assert codec.open_reply(SEALED_REPLY + "garbage") is None

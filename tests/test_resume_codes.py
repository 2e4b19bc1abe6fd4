"""Resume codes and flow versions as objects, on real Redis: limits, lifetimes, publication."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask

from context.keys import Keys
from context.sessions import SessionStore
from conversation.flow_versions import FlowVersions
from conversation.resume_codes import CodeLimits, Redeemed, Refusal, ResumeCodes
from ivr.catalog import Catalog
from ivr.session import Session
from ivr.states import Status
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import prefix_of

NOW = 1_800_000_000.0


@pytest.fixture
def store(redis_client: redis.Redis) -> SessionStore:
    return SessionStore(redis_client, Keys(prefix_of(redis_client)), 3600)


@pytest.fixture
def catalog(flows_dir: Path) -> Catalog:
    flow = flows_dir / "airline.yaml"
    flow.write_text(flow.read_text().replace("  ask: true", "  ask: true\n  codes: true"))
    catalog = Catalog(flows_dir)
    catalog.refresh()
    return catalog


def codes_of(store: SessionStore, catalog: Catalog, **limits: int) -> ResumeCodes:
    return ResumeCodes(store, FlowVersions(catalog, store), lambda: NOW, CodeLimits(**limits))


def parked(store: SessionStore, catalog: Catalog, code: str) -> Session:
    """An interrupted session of a caller without caller ID, holding ``code``."""
    flow = catalog.get("airline")
    assert flow is not None
    session = Session(
        caller="CA" + "a" * 32, flow_id="airline", flow_version=flow.version,
        call_sid="CA" + "a" * 32, node="main_menu", checkpoint="main_menu",
        status=Status.INTERRUPTED, resume_code=code, updated_at=NOW - 5, ended_at=NOW - 5,
    )  # fmt: skip
    assert store.save(session, 0) is not None
    assert store.claim_code(code, session.caller, 600)
    return session


def test_a_source_past_its_limit_is_throttled_and_others_are_not(
    store: SessionStore, catalog: Catalog
) -> None:
    codes = codes_of(store, catalog, per_source=2, floor=100)
    parked(store, catalog, "246810")
    assert codes.redeem("111111", "CAguesser") == Refusal.WRONG
    assert codes.redeem("222222", "CAguesser") == Refusal.WRONG
    assert codes.redeem("246810", "CAguesser") == Refusal.THROTTLED  # right, but too late
    assert isinstance(codes.redeem("246810", "CAowner-again"), Redeemed)


def test_everyone_s_limit_grows_with_the_calls_asked_for_a_code(
    store: SessionStore, catalog: Catalog
) -> None:
    codes = codes_of(store, catalog, per_source=100, floor=2)
    parked(store, catalog, "246810")
    for source in ("CA1", "CA2", "CA3"):
        codes.asked(source)
        assert codes.redeem("000000", source) == Refusal.WRONG
    # 3 wrong codes past a floor of 2, but 4 calls asked: the limit is max(2, 1 x 4) = 4
    codes.asked("CA4")
    assert isinstance(codes.redeem("246810", "CA4"), Redeemed)
    assert codes.redeem("000000", "CA5") == Refusal.WRONG  # the 4th wrong code reaches it
    assert codes.redeem("000000", "CA6") == Refusal.THROTTLED


def test_a_redeemed_code_is_gone_and_a_given_back_one_works_again(
    store: SessionStore, catalog: Catalog, redis_client: redis.Redis
) -> None:
    codes = codes_of(store, catalog)
    parked(store, catalog, "135790")
    found = codes.redeem("135790", "CAnew")
    assert isinstance(found, Redeemed)
    assert codes.redeem("135790", "CAother") == Refusal.WRONG
    codes.give_back("135790", found)
    assert 0 < redis_client.ttl(store.keys.resume_code("135790")) <= 30 * 60
    assert isinstance(codes.redeem("135790", "CAother"), Redeemed)


def test_a_code_lives_for_the_resume_window_after_its_call_ends(
    make_app: Callable[..., Flask], flows_dir: Path, redis_client: redis.Redis
) -> None:
    flow = flows_dir / "airline.yaml"
    flow.write_text(flow.read_text().replace("  ask: true", "  ask: true\n  codes: true"))
    app = make_app()
    c = Call(FlaskTransport(app), AUTH_TOKEN, caller="anonymous").dial()
    c.press("#")
    spoken = c.last_heard.split("resume code:")[1].split(".")[0]
    code = "".join(ch for ch in spoken if ch.isdigit())
    key = f"{prefix_of(redis_client)}:resume-code:{code}"
    assert redis_client.ttl(key) > 4 * 3600  # while the call lasts: window plus the longest call
    c.hang_up()
    assert 30 * 60 - 5 <= redis_client.ttl(key) <= 30 * 60  # the flow's resume window: 30m


def test_a_flow_version_lost_from_redis_is_published_again_after_a_store_failure(
    store: SessionStore, catalog: Catalog, redis_client: redis.Redis
) -> None:
    versions = FlowVersions(catalog, store, republish_every=3600)
    flow = catalog.get("airline")
    assert flow is not None
    pin = versions.pin(flow)
    assert pin.publish and pin.key == store.keys.flow_version(flow.version)
    versions.published(flow)
    assert not versions.pin(flow).publish  # fresh: the next saves only check it is there
    versions.store_failed()  # e.g. Redis restarted empty
    assert versions.pin(flow) == pin


def test_a_flow_version_is_read_back_from_redis_by_another_process(
    store: SessionStore, catalog: Catalog, flows_dir: Path
) -> None:
    flow = catalog.get("airline")
    assert flow is not None
    assert store.publish_flow(store.keys.flow_version(flow.version), flow.source)
    elsewhere = FlowVersions(Catalog(flows_dir / "none"), store)  # knows no flow file
    session = Session(caller="+1", flow_id="airline", flow_version=flow.version, call_sid="CA1")
    found = elsewhere.for_session(session)
    assert found is not None and found.version == flow.version

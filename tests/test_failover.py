"""Failovers under load: a Cluster master and a Sentinel-watched master are killed mid-call.

Each test starts its own topology (they are destroyed), builds the app from a ``REDIS_URL`` as
production does, parks callers mid-flow and keeps calls stepping in threads while one master is
killed by PID. Callers whose sessions live elsewhere must hear nothing unusual; callers of the
failed master hear the spoken fallback (never an HTTP error) until a replica is promoted, then
call back and resume where they were. The number of apologies (each caller of the dead master
calls back every 100 ms, so the count grows with the outage), the slowest apology and the outage
length (kill to the first and to the last caller served again) are printed (``-s``) and recorded
as properties.

Callers of the master that is killed are parked, not stepping, when it dies: Redis replicates
asynchronously, so a write acknowledged in the last milliseconds before a crash may be lost with
the master, and "resumes where it left off" is only well defined for a session the replica had
(the tests wait until the replica's offset matches).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis.cluster import RedisCluster
from redis.crc import key_slot

from context.keys import Keys
from simulator import Call, FlaskTransport
from tests import support_topologies
from tests.conftest import AUTH_TOKEN, REPO, REQUIRE_TOPOLOGIES, app_for_tests
from tests.support_topologies import (
    HOST,
    LocalCluster,
    LocalSentinels,
    cli,
    replicated,
    wait_for,
)
from webhooks.twiml import APOLOGY

FALLBACK = "+14155550999"
PARKED = "confirmation code"  # what a caller parked at the confirmation question hears
RESUMED = "Welcome back. Last time you were giving us your confirmation code"
# One lap of the demo flow that ends where it started: code -> status -> menu -> code.
LAP = [
    ("say", "X Y Z 7 8 9.", "is on time"),
    ("press", "1", "For flight status"),
    ("press", "1", PARKED),
]
RECOVERY_LIMIT = 30.0  # seconds from the kill for every caller to be served again

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _needs_redis_server() -> None:
    if not support_topologies.have_redis_server():
        reason = "redis-server/redis-cli are not installed: no topology to fail over"
        if REQUIRE_TOPOLOGIES:
            pytest.fail(f"{reason} (OMNIVOICE_REQUIRE_TOPOLOGIES=1)")
        pytest.skip(reason)


def build_app(url: str, flows_dir: Path, prefix: str) -> Flask:
    """The app as production builds it: its own client from ``url``, short timeouts.

    The flow takes ``concurrent: takeover``: callers here call back seconds after their last
    webhook, while the parked call does not yet count as gone (its status callback was lost in
    the outage), and the default would keep the redial apart from it (a fresh start, see
    ``tests/test_shared_numbers.py``) until the parked call is overdue.
    """
    shutil.copytree(REPO / "flows", flows_dir)
    flow = flows_dir / "airline.yaml"
    flow.write_text(flow.read_text().replace("  ask: true", "  ask: true\n  concurrent: takeover"))
    return app_for_tests(
        flows_dir,
        REDIS_URL=url,
        REDIS_TIMEOUT=0.5,
        REDIS_KEY_PREFIX=prefix,
        FALLBACK_NUMBER=FALLBACK,
    )


def park(app: Flask, caller: str) -> Call:
    """Dial, ask for flight status, and stop at the confirmation-code question."""
    call = Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial()
    call.press("1")
    assert PARKED in call.last_heard, call.last_heard
    return call


def apologised(call: Call) -> bool:
    return call.last_heard.startswith(APOLOGY)


@dataclass
class Outage:
    """What the callers heard around a kill, gathered from every thread."""

    killed_at: float = 0.0
    killed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    apologies: dict[str, int] = field(default_factory=dict)  # by caller
    recovered_at: dict[str, float] = field(default_factory=dict)  # by caller of the dead master
    resumed: dict[str, str] = field(default_factory=dict)  # what each of them heard on return
    relapses: list[str] = field(default_factory=list)  # apologies after a caller was served again
    errors: list[str] = field(default_factory=list)
    steps: int = 0
    slowest_apology: float = 0.0  # seconds the slowest webhook took to answer with the fallback
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apology(self, caller: str, seconds: float) -> None:
        with self.lock:
            self.apologies[caller] = self.apologies.get(caller, 0) + 1
            self.slowest_apology = max(self.slowest_apology, seconds)

    def stepped(self) -> None:
        with self.lock:
            self.steps += 1

    def fail(self, caller: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{caller}: {type(exc).__name__}: {exc}")

    @property
    def total_apologies(self) -> int:
        return sum(self.apologies.values())

    def lengths(self) -> tuple[float, float]:
        """Seconds from the kill to the first and to the last caller served again."""
        times = [t - self.killed_at for t in self.recovered_at.values()]
        return (min(times), max(times)) if times else (float("nan"), float("nan"))


def take_step(call: Call, lap_index: int, outage: Outage | None = None) -> bool:
    """One step of the lap; ``False`` when the caller heard the apology (counted in ``outage``)."""
    how, what, expected = LAP[lap_index % len(LAP)]
    started = time.monotonic()
    call.say(what) if how == "say" else call.press(what)
    if apologised(call):
        if outage is not None:
            outage.apology(call.caller, time.monotonic() - started)
        return False
    assert expected in call.last_heard, (what, call.last_heard)
    return True


def keep_stepping(call: Call, outage: Outage, lap_index: int = 0) -> None:
    """Laps of the flow until told to stop; an apology here is a relapse, and ends the laps."""
    while not outage.stop.is_set():
        if not take_step(call, lap_index, outage):
            with outage.lock:
                outage.relapses.append(call.caller)
            return
        outage.stepped()
        lap_index += 1


def step_healthy(call: Call, outage: Outage) -> None:
    """A caller whose session lives on a node that stays up."""
    try:
        keep_stepping(call, outage)
    except BaseException as exc:
        outage.fail(call.caller, exc)


def step_through_outage(app: Flask, call: Call, outage: Outage) -> None:
    """A caller of the master that dies: steps once it is dead, calls back until served, resumes
    where it was parked and goes on stepping."""
    try:
        outage.killed.wait()
        if take_step(
            call, 0, outage
        ):  # served already: the promotion beat this caller's first step
            with outage.lock:
                outage.recovered_at[call.caller] = time.monotonic()
                outage.resumed[call.caller] = RESUMED + " (never interrupted)"
            keep_stepping(call, outage, 1)
            return
        back = redial_until_resumed(app, call.caller, outage)
        heard = back.last_heard
        back.say("continue please")  # take the offer: back at the question it was parked on
        assert PARKED in back.last_heard, back.last_heard
        with outage.lock:
            outage.resumed[call.caller] = heard
        keep_stepping(back, outage)  # the stored intent (status) is intact: "is on time"
    except BaseException as exc:
        outage.fail(call.caller, exc)


def redial_until_resumed(app: Flask, caller: str, outage: Outage) -> Call:
    """Call back every 100 ms; each apology counts; return the first call that is served."""
    deadline = outage.killed_at + RECOVERY_LIMIT
    while time.monotonic() < deadline:
        started = time.monotonic()
        back = Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial()
        if not apologised(back):
            with outage.lock:
                outage.recovered_at.setdefault(caller, time.monotonic())
            return back
        outage.apology(caller, time.monotonic() - started)
        time.sleep(0.1)
    raise AssertionError(f"{caller} was not served within {RECOVERY_LIMIT} s of the kill")


def run_outage(
    app: Flask,
    healthy: dict[str, Call],
    doomed: dict[str, Call],
    kill: Callable[[], None],
    settle: Callable[[], None] = lambda: None,
) -> Outage:
    """Step ``healthy`` calls throughout; kill; step ``doomed`` calls through the outage."""
    outage = Outage()
    threads = [
        threading.Thread(target=step_healthy, args=(c, outage), daemon=True)
        for c in healthy.values()
    ] + [
        threading.Thread(target=step_through_outage, args=(app, c, outage), daemon=True)
        for c in doomed.values()
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # traffic flowing before the crash
    kill()
    outage.killed_at = time.monotonic()
    outage.killed.set()
    deadline = outage.killed_at + RECOVERY_LIMIT + 5
    while time.monotonic() < deadline and len(outage.resumed) < len(doomed) and not outage.errors:
        time.sleep(0.05)
    settle()
    time.sleep(1.0)  # the healthy callers step on the new layout too
    outage.stop.set()
    for thread in threads:
        thread.join(timeout=RECOVERY_LIMIT)
    return outage


def report(
    name: str, outage: Outage, record_property: Callable[[str, object], None], **extra: Any
) -> None:
    first, last = outage.lengths()
    facts = {
        "apologies": outage.total_apologies,
        "callers_apologised_to": len(outage.apologies),
        "slowest_apology_s": round(outage.slowest_apology, 3),
        "outage_first_served_s": round(first, 2),
        "outage_last_served_s": round(last, 2),
        "steps_served": outage.steps,
        "relapses": len(outage.relapses),
        **extra,
    }
    for key, value in facts.items():
        record_property(key, value)
    print(f"\n{name} failover: " + ", ".join(f"{k}={v}" for k, v in facts.items()))


# ---- Cluster -------------------------------------------------------------------------------
@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    started = support_topologies.start_cluster()
    yield started
    started.stop()


def test_a_cluster_master_dies_and_only_its_callers_notice(
    cluster: LocalCluster, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    prefix = f"failover-{uuid.uuid4().hex[:8]}"
    app = build_app(cluster.url, tmp_path / "flows", prefix)
    keys = Keys(prefix)
    masters = cluster.masters()
    assert len(masters) == 3

    def master_of(caller: str) -> int:
        slot = key_slot(keys.session(caller).encode())
        return next(port for port, (first, last) in masters.items() if first <= slot <= last)

    callers = [f"+1415555{2000 + n:04d}" for n in range(24)]
    by_master: dict[int, list[str]] = {}
    for caller in callers:
        by_master.setdefault(master_of(caller), []).append(caller)
    assert len(by_master) == 3, "the callers' sessions should spread over all three shards"
    victim = max(by_master, key=lambda port: len(by_master[port]))

    calls = {caller: park(app, caller) for caller in callers}
    wait_for("the replica to have every session", lambda: replicated(victim), timeout=5)
    doomed = {c: call for c, call in calls.items() if c in by_master[victim]}
    healthy = {c: call for c, call in calls.items() if c not in doomed}
    during: list[tuple[int, str]] = []

    def kill() -> None:
        cluster.servers.kill(victim)

    def settle() -> None:
        response = app.test_client().get("/healthz")
        during.append((response.status_code, response.get_data(as_text=True)))

    outage = run_outage(app, healthy, doomed, kill, settle)
    report(
        "cluster",
        outage,
        record_property,
        callers=len(callers),
        callers_on_killed_master=len(doomed),
    )
    assert outage.errors == []
    assert outage.slowest_apology < 2.0  # the fallback comes well within Twilio's patience
    assert {c: n for c, n in outage.apologies.items() if c in healthy} == {}
    assert outage.relapses == []
    assert set(outage.resumed) == set(doomed)
    assert all(heard.startswith(RESUMED) for heard in outage.resumed.values()), outage.resumed
    inspector = RedisCluster(host=HOST, port=next(p for p in masters if p != victim))
    try:
        for caller in doomed:  # the session the promoted replica holds is the caller's
            assert inspector.hget(keys.session(caller), "doc") is not None
    finally:
        inspector.close()
    status, lines = during[0]
    assert status == 200, lines  # the promoted replica answers for the shard
    assert lines.count("redis: ok: cluster master ") == 3, lines


# ---- Sentinel ------------------------------------------------------------------------------
@pytest.fixture
def sentinels() -> Iterator[LocalSentinels]:
    started = support_topologies.start_sentinels()
    yield started
    started.stop()


def test_sentinel_failover_is_followed_and_parked_callers_resume(
    sentinels: LocalSentinels,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable[[str, object], None],
) -> None:
    prefix = f"failover-{uuid.uuid4().hex[:8]}"
    app = build_app(sentinels.url, tmp_path / "flows", prefix)
    callers = [f"+1415555{3000 + n:04d}" for n in range(10)]
    calls = {caller: park(app, caller) for caller in callers}
    wait_for("the replica to have every session", lambda: replicated(sentinels.master), timeout=5)
    old_master = sentinels.master
    rejoined: list[int] = []

    def kill() -> None:
        sentinels.servers.kill(old_master)

    def settle() -> None:
        # The old master comes back: the Sentinels make it a replica of the new one. A client
        # that still wrote to it would get READONLY; none may reach a caller.
        sentinels.servers.restart(old_master)
        rejoined.append(old_master)

    with caplog.at_level(logging.INFO):
        outage = run_outage(app, {}, calls, kill, settle)
    new_master = sentinels.master_port()
    report(
        "sentinel",
        outage,
        record_property,
        callers=len(callers),
        old_master=old_master,
        new_master=new_master,
    )
    assert outage.errors == []
    assert outage.slowest_apology < 2.0
    assert outage.relapses == []  # not even while the old master came back as a replica
    assert new_master is not None and new_master != old_master
    assert set(outage.resumed) == set(callers)
    assert all(heard.startswith(RESUMED) for heard in outage.resumed.values()), outage.resumed
    assert outage.total_apologies >= len(callers)  # each heard the spoken fallback, not an error
    escaped = [r for r in caplog.records if "ReadOnlyError" in r.getMessage() + str(r.exc_info)]
    assert escaped == []
    unexpected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unexpected")]
    assert unexpected == []
    # After the old master rejoined as a replica, calls still go to the new master.
    assert rejoined == [old_master]
    support_topologies.wait_for(
        "the old master to replicate the new one",
        lambda: (
            support_topologies.fields(cli(old_master, "INFO", "replication")).get("role") == "slave"
        ),
        timeout=60.0,  # Sentinel turns it into a replica on its own schedule: slow on a busy box
    )
    for caller in callers[:3]:
        again = Call(FlaskTransport(app), AUTH_TOKEN, caller=caller).dial()
        assert not apologised(again), again.last_heard
    status = app.test_client().get("/healthz")
    assert status.status_code == 200, status.get_data(as_text=True)
    assert f"at {HOST}:{new_master} answers as role:master" in status.get_data(as_text=True)

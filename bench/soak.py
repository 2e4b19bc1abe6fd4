"""Soak test: hundreds of concurrent simulated calls walking the demo flow against gunicorn.

``python -m bench.soak --seconds 60 --calls 200`` starts the real app under gunicorn (same worker
settings as the webhook benchmark) on real Redis with a private key prefix, then runs ``--calls``
threads, each one caller after another placing a :class:`simulator.Call` over HTTP. Callers answer
whatever they are asked with random choices (keys, speech, silence, valid and unknown
confirmation codes), think between answers, and sometimes drop mid-call (the status callback says
``completed``) and call straight back, which exercises resume. When time is up, calls still in
progress are left as they are.

Reported: webhooks made, errors (anything Twilio could not play, a non-2xx, a timeout, the app's
spoken apology, an error in the server log; 0 required), client-side latency, the resident
memory of each gunicorn worker at the start and end (``VmRSS`` from ``/proc``), and an audit of
Redis: every caller's session must belong to their last call and have the status that call's
ending implies (``completed`` after a hang-up by the flow, ``transferred`` after an agent
handoff, ``interrupted`` after a drop, ``active`` if still in progress), and every call must be in
the CallSid index. Results go to ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from bench import report
from bench.callers import new_call_sid, new_caller
from bench.servers import (
    AUTH_TOKEN,
    REDIS_URL,
    SECRET_KEY,
    WORKER_CLASS,
    Gunicorn,
    WorkerConfig,
    delete_prefix,
    error_lines,
    flows_copy,
    redis_connection,
    sigterm_as_interrupt,
    unique_prefix,
)
from context.keys import Keys
from simulator import Call, HttpTransport
from simulator.call import CallError

APOLOGY = "Sorry, we are having trouble"
ENDINGS = {"hangup": "completed", "enqueue": "transferred", "dial": "transferred"}
CHOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("For flight status", ("1", "2", "1", "2", "status", "change", "0", "9", "")),
    (
        "confirmation code",
        ("A B C 1 2 3", "X Y Z 7 8 9.", "Q R S 4 5 6", "A B C 1 2 3", "N O P 0 0 0", "12#", ""),
    ),
    ("move to another flight", ("1", "2", "yes", "no", "")),
    ("Press 1 for flight", ("1", "2", "two", "5", "")),
    ("anything else", ("1", "2", "menu", "")),
    ("Welcome back", ("1", "2", "continue", "start over", "")),
)
CALLBACK_CHANCE = {"interrupted": 0.7, "transferred": 0.2, "completed": 0.1}
MAX_ANSWERS_PER_CALL = 40
RSS_EVERY = 5.0


class TimedTransport(HttpTransport):
    """HTTP transport that records each webhook's latency and status."""

    def __init__(self, latencies: list[float], statuses: Counter[int]) -> None:
        super().__init__(timeout=15.0)
        self.latencies = latencies
        self.statuses = statuses

    def post(self, url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST and time it."""
        started = time.perf_counter()
        status, body = super().post(url, params, headers)
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] += 1
        return status, body


@dataclass
class Expectation:
    """What a caller's session must look like at the end: the last call and its status."""

    call_sid: str
    status: str
    calls: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """What one caller thread saw."""

    calls: int = 0
    callbacks: int = 0
    drops: int = 0
    endings: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    expected: dict[str, Expectation] = field(default_factory=dict)


class Caller(threading.Thread):
    """One line: places calls one after another until the deadline."""

    def __init__(
        self, index: int, base_url: str, args: argparse.Namespace, stop: threading.Event
    ) -> None:
        super().__init__(name=f"caller-{index}", daemon=True)
        self.rng = random.Random(args.seed * 1000 + index)
        self.base_url = base_url
        self.args = args
        self.stop = stop
        self.deadline = time.monotonic() + args.seconds
        self.tally = Tally()

    def run(self) -> None:
        """Call, maybe drop and call back, until time is up."""
        transport = TimedTransport(self.tally.latencies, self.tally.statuses)
        caller, callback = new_caller(), False
        while not self.over():
            call = Call(transport, AUTH_TOKEN, caller=caller, base_url=self.base_url)
            call.call_sid = new_call_sid()
            try:
                status = self.play(call)
            except (CallError, requests.RequestException, AssertionError) as exc:
                self.tally.errors.append(f"{caller} {call.call_sid}: {type(exc).__name__}: {exc}")
                status = None
            self.note(caller, call.call_sid, status, callback)
            self.tally.calls += 1
            chance = CALLBACK_CHANCE.get(status or "", 0.0)
            callback = self.rng.random() < chance
            if not callback:
                caller = new_caller()
        transport.session.close()

    def over(self) -> bool:
        """True once the deadline passed or the run was interrupted."""
        return self.stop.is_set() or time.monotonic() >= self.deadline

    def note(self, caller: str, call_sid: str, status: str | None, callback: bool) -> None:
        """Record what the caller's session should now hold."""
        self.tally.callbacks += int(callback)
        previous = self.tally.expected.get(caller)
        calls = [*(previous.calls if previous else []), call_sid]
        self.tally.expected[caller] = Expectation(call_sid, status or "unknown", calls)

    def play(self, call: Call) -> str:
        """One call from dial to its end; returns the session status it must leave behind."""
        call.dial()
        self.check(call)
        for _ in range(MAX_ANSWERS_PER_CALL):
            if call.gather is None:
                break
            if self.over():
                return "active"  # still on the line when the soak ends
            time.sleep(self.rng.uniform(self.args.think_min, self.args.think_max))
            if self.rng.random() < self.args.drop:
                return self.drop(call)
            self.answer(call)
            self.check(call)
        else:
            return self.drop(call)
        ending = call.ended or "end-of-document"
        if ending not in ENDINGS:
            raise AssertionError(f"the call ended with {ending}")
        self.tally.endings[ending] += 1
        if call.status_callback("completed") != 204:
            raise AssertionError("the status callback was not accepted")
        return ENDINGS[ending]

    def drop(self, call: Call) -> str:
        """The line drops mid-call: Twilio posts the completed status callback."""
        self.tally.drops += 1
        if call.hang_up("completed") != 204:
            raise AssertionError("the status callback was not accepted")
        return "interrupted"

    def answer(self, call: Call) -> None:
        """A random answer that usually fits the question."""
        heard = call.last_heard
        options: tuple[str, ...] = ("1", "2", "9", "")
        for cue, fitting in CHOICES:
            if cue in heard:
                options = fitting
                break
        choice = self.rng.choice(options)
        if not choice:
            call.silence()
        elif choice.rstrip("#").isdigit():
            call.press(choice.rstrip("#"))
        else:
            call.say(choice)

    def check(self, call: Call) -> None:
        """The app's apology means something failed inside it."""
        if APOLOGY in call.last_heard:
            raise AssertionError(f"the caller heard the apology: {call.last_heard!r}")


def audit(connection: redis.Redis, prefix: str, expected: dict[str, Expectation]) -> dict[str, Any]:
    """Compare every caller's stored session (and every call's marker) with expectations."""
    keys = Keys(prefix)
    found: Counter[str] = Counter()
    problems: list[str] = []
    indexed = 0
    calls = 0
    for caller, want in expected.items():
        pipe = connection.pipeline(transaction=False)
        pipe.hget(keys.session(caller), "doc")
        for call_sid in want.calls:
            pipe.exists(keys.call(caller, call_sid))
        raw, *index = pipe.execute()
        calls += len(want.calls)
        indexed += sum(1 for value in index if value)
        if raw is None:
            problems.append(f"{caller}: no session")
            continue
        doc = json.loads(raw)
        status = doc.get("status", "active")
        found[status] += 1
        if doc.get("call_sid") != want.call_sid or status != want.status:
            problems.append(f"{caller}: stored {doc.get('call_sid')} {status}, expected "
                            f"{want.call_sid} {want.status}")  # fmt: skip
    return {
        "callers": len(expected),
        "calls": calls,
        "sessions_by_status": dict(found),
        "calls_indexed": indexed,
        "mismatches": len(problems) + (calls - indexed),
        "mismatch_examples": problems[:10],
    }


def rss_snapshot(server: Gunicorn, started: float) -> dict[str, Any]:
    """Worker RSS (KiB) now."""
    return {"t_s": round(time.monotonic() - started, 1), "rss_kib": server.worker_rss_kib()}


def drive(server: Gunicorn, args: argparse.Namespace) -> tuple[list[Caller], list[dict[str, Any]]]:
    """Run the callers to the deadline, sampling worker memory; stop them early on Ctrl-C."""
    stop = threading.Event()
    started = time.monotonic()
    samples = [rss_snapshot(server, started)]
    callers = []
    try:
        for index in range(args.calls):
            callers.append(Caller(index, server.base_url, args, stop))
            callers[-1].start()
            time.sleep(args.ramp / max(1, args.calls))
        end = started + args.seconds + args.ramp
        while any(c.is_alive() for c in callers) and time.monotonic() < end + 60:
            time.sleep(0.1)
            if time.monotonic() - started - samples[-1]["t_s"] >= RSS_EVERY:
                samples.append(rss_snapshot(server, started))
    finally:
        stop.set()
        for caller in callers:
            caller.join(timeout=20)
    samples.append(rss_snapshot(server, started))
    return callers, samples


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start gunicorn, soak it, audit Redis, clean up."""
    config = WorkerConfig(args.workers, args.worker_class, args.threads, keep_alive=10)
    connection = redis_connection()
    prefix = unique_prefix("soak")
    with contextlib.ExitStack() as stack:
        stack.callback(connection.close)
        stack.callback(delete_prefix, connection, prefix)
        flows = stack.enter_context(flows_copy())
        server = Gunicorn("soak", "app:app", config)
        server.env = {
            "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": SECRET_KEY, "FLOWS_DIR": flows, "PUBLIC_BASE_URL": server.base_url, "LOG_LEVEL": "INFO",
            "DEMO_API": "1",
        }  # fmt: skip
        stack.enter_context(server)
        print(f"soak: {args.calls} callers for {args.seconds:g}s against {server.base_url} "
              f"({config.describe()})", flush=True)  # fmt: skip
        callers, samples = drive(server, args)
        expected = {k: v for c in callers for k, v in c.tally.expected.items()}
        accounting = audit(connection, prefix, expected)
        server_errors = error_lines(server.log_text(), limit=10)
    return document(args, config, callers, samples, accounting, server_errors)


def document(
    args: argparse.Namespace,
    config: WorkerConfig,
    callers: list[Caller],
    samples: list[dict[str, Any]],
    accounting: dict[str, Any],
    server_errors: list[str],
) -> dict[str, Any]:
    """The results document."""
    tallies = [c.tally for c in callers]
    latencies = [x for t in tallies for x in t.latencies]
    errors = [e for t in tallies for e in t.errors]
    statuses: Counter[int] = sum((t.statuses for t in tallies), Counter())
    endings: Counter[str] = sum((t.endings for t in tallies), Counter())
    warm = samples[1] if len(samples) > 2 else samples[0]
    start_rss, end_rss = sum(warm["rss_kib"].values()), sum(samples[-1]["rss_kib"].values())
    error_count = (
        len(errors)
        + len(server_errors)
        + sum(v for k, v in statuses.items() if k >= 300 and k != 403)
    )
    return {
        "settings": {
            "seconds": args.seconds,
            "calls": args.calls,
            "gunicorn": config.describe(),
            "think_s": [args.think_min, args.think_max],
            "drop_probability_per_answer": args.drop,
            "seed": args.seed,
        },
        "webhooks": len(latencies),
        "webhooks_per_s": round(len(latencies) / args.seconds, 1),
        "latency_ms": {
            "p50": round(report.percentile(latencies, 0.5) * 1000, 2),
            "p99": round(report.percentile(latencies, 0.99) * 1000, 2),
            "max": round(max(latencies, default=0.0) * 1000, 2),
        },
        "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "calls": sum(t.calls for t in tallies),
        "callbacks": sum(t.callbacks for t in tallies),
        "drops": sum(t.drops for t in tallies),
        "endings": dict(endings),
        "errors": error_count,
        "error_examples": errors[:10],
        "server_error_lines": server_errors,
        "worker_rss_kib": {
            "start_after_first_sample": warm["rss_kib"],
            "end": samples[-1]["rss_kib"],
            "start_total": start_rss,
            "end_total": end_rss,
            "growth_kib": end_rss - start_rss,
            "samples": samples,
        },
        "redis_audit": accounting,
        "targets": {
            "errors": report.verdict(error_count == 0),
            "sessions_accounted_for": report.verdict(accounting["mismatches"] == 0),
        },
    }


def print_report(doc: dict[str, Any]) -> None:
    """Summary tables."""
    rss = doc["worker_rss_kib"]
    audit_ = doc["redis_audit"]
    rows = [
        ["webhooks", doc["webhooks"]],
        ["webhooks/s", doc["webhooks_per_s"]],
        ["latency p50 / p99 / max ms",
         f"{doc['latency_ms']['p50']} / {doc['latency_ms']['p99']} / {doc['latency_ms']['max']}"],
        ["calls / callbacks / drops", f"{doc['calls']} / {doc['callbacks']} / {doc['drops']}"],
        ["endings", doc["endings"]],
        ["HTTP statuses", doc["http_statuses"]],
        ["errors", f"{doc['errors']}  [{doc['targets']['errors']}]"],
        ["worker RSS start (KiB)", rss["start_after_first_sample"]],
        ["worker RSS end (KiB)", rss["end"]],
        ["RSS growth, all workers (KiB)", rss["growth_kib"]],
        ["sessions by status", audit_["sessions_by_status"]],
        ["calls indexed / calls", f"{audit_['calls_indexed']} / {audit_['calls']}"],
        ["session mismatches", f"{audit_['mismatches']}  [{doc['targets']['sessions_accounted_for']}]"],
    ]  # fmt: skip
    print(report.table(["measure", "value"], rows))
    for example in doc["error_examples"][:5] + doc["server_error_lines"][:5]:
        print("  error:", example)
    for example in audit_["mismatch_examples"][:5]:
        print("  mismatch:", example)


def main(argv: list[str] | None = None) -> int:
    """Soak, print, write ``bench/results/soak.json``; exit 1 on any error or mismatch."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--calls", type=int, default=200, help="concurrent callers")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to start all callers")
    parser.add_argument("--think-min", type=float, default=0.2)
    parser.add_argument("--think-max", type=float, default=1.0)
    parser.add_argument("--drop", type=float, default=0.05, help="chance to drop before an answer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default=WORKER_CLASS)
    parser.add_argument("--threads", type=int, default=4, help="gthread only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", default="soak")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt():
        doc = run(args)
    print_report(doc)
    print(f"\nwritten: {report.write(args.output, doc)}")
    failed = (
        doc["targets"]["errors"] == "FAIL" or doc["targets"]["sessions_accounted_for"] == "FAIL"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

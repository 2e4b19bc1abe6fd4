"""Webhook throughput and latency: Omnivoice (``app:app``) against a reference handler.

``python -m bench.webhooks`` starts two gunicorn servers with the same workers on free loopback
ports: the reference (``--reference flask``, :mod:`bench.reference_flask`: a naive Flask view
doing form parse, Redis GET, ``<Gather>``, Redis SET; or ``--reference wsgi``,
:mod:`bench.reference_app`: the framework-free floor, which also checks the signature with one
HMAC and answers a constant ``<Gather>``) and the real app on real Redis under a private key
prefix, serving a private copy of ``flows/``. It measures the load generator's ceiling against
:mod:`bench.trivial_server`, warms both servers up, then runs alternating rounds of one scenario
(``--scenario``):

- ``answer``: the calls the rounds need are dialled first (:class:`bench.callers.Dialer`), then
  each connection answers gathers on its own calls (:class:`bench.callers.GatherWalker`): every
  measured app request is a signed ``POST /voice/answer`` that checks the signature, loads the
  session, steps the engine, saves and renders a gather.
- ``incoming``: every measured request is a signed ``POST /voice`` for a new CallSid and a new
  caller (:class:`bench.callers.Dialer`), a real first turn: flow lookup by the called number, a
  fresh session, the main menu, a save.

It prints req/s, p50 and p99 for both, the app/reference ratios with PASS/FAIL against the
targets (the naive Flask view: app >= 1.0x req/s and <= 1.0x p99; the floor: app >= 0.85x req/s),
and writes ``bench/results/webhooks_<reference>[_incoming].json``. Keys and servers are cleaned up
however the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import time
from collections import deque
from typing import Any

import redis

from bench import loadgen, report
from bench.callers import (
    GATHER_INPUTS,
    Dialer,
    GatherWalker,
    PreparedCall,
    Signer,
    SigningProbe,
    new_call_sid,
    new_caller,
)
from bench.servers import (
    AUTH_TOKEN,
    HOST,
    REDIS_URL,
    SECRET_KEY,
    WORKER_CLASS,
    Gunicorn,
    WorkerConfig,
    delete_prefix,
    error_lines,
    flows_copy,
    free_port,
    redis_connection,
    sigterm_as_interrupt,
    unique_prefix,
)

REFERENCES = {"flask": "bench.reference_flask:app", "wsgi": "bench.reference_app:app"}
THROUGHPUT_TARGET = 1.0  # app req/s >= 1.0 x the naive Flask view
P99_TARGET = 1.0  # app p99 <= 1.0 x the naive Flask view
FLOOR_TARGET = 0.85  # app req/s >= 0.85 x the framework-free floor
SCENARIOS = {
    "answer": "signed POST /voice/answer on the demo flow's main-menu and confirmation gathers; "
    "every request advances its call one step (see bench/callers.py)",
    "incoming": "signed POST /voice, each request a new CallSid and caller: flow lookup, fresh "
    "session, main-menu gather, save",
}
CALLS_MARGIN = 2.0
STEPS_PER_CALL = len(GATHER_INPUTS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up per server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default=WORKER_CLASS)
    parser.add_argument("--threads", type=int, default=4, help="gthread only")
    parser.add_argument(
        "--requests-per-connection",
        type=int,
        default=20,
        help="open a new connection after this many requests (spreads load over workers)",
    )
    parser.add_argument("--app-log-level", default="INFO", help="LOG_LEVEL of the app")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument(
        "--reference",
        choices=sorted(REFERENCES),
        default="flask",
        help="flask: a naive Flask view doing GET + <Gather> + SET (the framework the app runs "
        "on); wsgi: the same without any framework (the floor)",
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="answer",
        help="answer: POST /voice/answer steps on prepared calls; incoming: POST /voice, each "
        "request a new call",
    )
    parser.add_argument("--output", default=None, help="results file name (no .json)")
    return parser.parse_args(argv)


def measure_ceiling(connections: int, seconds: float, per_connection: int) -> loadgen.LoadResult:
    """The generator's own limit: the walker's per-request work against a do-nothing server."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.trivial_server", str(port)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("the trivial server did not start")
        signer = Signer(f"http://{HOST}:{port}", AUTH_TOKEN)
        scripts: list[loadgen.Script] = [SigningProbe(signer) for _ in range(connections)]
        return loadgen.run(
            "generator ceiling",
            HOST,
            port,
            scripts,
            seconds,
            warmup=0.5,
            requests_per_connection=per_connection,
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def walkers(
    server: Gunicorn, pool: deque[PreparedCall], connections: int, scenario: str
) -> tuple[list[GatherWalker], list[loadgen.Script]]:
    """One script per connection: walkers taking their calls from one shared pool, or dialers."""
    signer = Signer(server.base_url, AUTH_TOKEN)
    if scenario == "incoming":
        return [], [Dialer(signer, _Discarded()) for _ in range(connections)]
    made = [GatherWalker(signer, pool) for _ in range(connections)]
    return made, list(made)


class _Discarded(list[PreparedCall]):
    """Where dialers of the incoming scenario put their calls: nowhere (no call is walked on)."""

    def append(self, call: PreparedCall) -> None:
        """Forget ``call``."""


def prepare_calls(server: Gunicorn, count: int, connections: int) -> list[PreparedCall]:
    """Dial ``count`` calls on ``server``; each session then waits at the main menu."""
    prepared: list[PreparedCall] = []
    signer = Signer(server.base_url, AUTH_TOKEN)
    scripts: list[loadgen.Script] = [Dialer(signer, prepared) for _ in range(connections)]
    result = loadgen.run("prepare", HOST, server.port, scripts, seconds=600.0, max_requests=count)
    if result.errors:
        raise RuntimeError(f"dialling prepared calls failed: {result.error_examples}")
    return prepared


def redis_cpu(connection: redis.Redis) -> float:
    """Redis server CPU seconds so far (user + system)."""
    info = connection.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(
    server: Gunicorn,
    pool: deque[PreparedCall],
    args: argparse.Namespace,
    seconds: float,
    warmup: float,
    label: str,
    connection: redis.Redis,
) -> dict[str, Any]:
    """One measured run on ``server``, with the CPU its workers and Redis used."""
    made, scripts = walkers(server, pool, args.connections, args.scenario)
    redis_before, workers_before = redis_cpu(connection), server.worker_cpu()
    result = loadgen.run(
        label, HOST, server.port, scripts, seconds, warmup,
        requests_per_connection=args.requests_per_connection,
    )  # fmt: skip
    share = seconds / (seconds + warmup)  # CPU is read around warm-up and window together
    redis_seconds = (redis_cpu(connection) - redis_before) * share
    workers = {
        pid: (used - workers_before.get(pid, 0.0)) * share
        for pid, used in server.worker_cpu().items()
    }
    requests = max(1, result.requests)
    summary: dict[str, Any] = result.summary()
    summary["inline_dials"] = sum(w.inline_dials for w in made)
    summary["worker_cpu_pct"] = [round(100 * used / seconds, 1) for used in workers.values()]
    summary["worker_cpu_ms_per_request"] = round(1000 * sum(workers.values()) / requests, 3)
    summary["redis_cpu_us_per_request"] = round(1e6 * redis_seconds / requests, 1)
    summary["error_examples"] = result.error_examples
    summary["_latencies"] = result.latencies
    return summary


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """All rounds of one server together."""
    latencies = [x for run in runs for x in run["_latencies"]]
    seconds = sum(run["seconds"] for run in runs)
    rates = sorted(run["req_per_s"] for run in runs)
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / seconds, 1),
        "median_round_req_per_s": rates[len(rates) // 2],
        "p50_ms": round(report.percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(report.percentile(latencies, 0.99) * 1000, 3),
        "errors": sum(run["errors"] for run in runs),
        "inline_dials": sum(run["inline_dials"] for run in runs),
        "worker_cpu_ms_per_request": round(
            sum(r["worker_cpu_ms_per_request"] * r["requests"] for r in runs) / len(latencies), 3
        ),
        "redis_cpu_us_per_request": round(
            sum(r["redis_cpu_us_per_request"] * r["requests"] for r in runs) / len(latencies), 1
        ),
    }


def calls_needed(rate: float, args: argparse.Namespace) -> int:
    """How many calls the rounds will use at ``rate`` requests per second, with a margin."""
    return math.ceil(rate * args.seconds * args.rounds * CALLS_MARGIN / STEPS_PER_CALL) + (
        4 * args.connections
    )


def synthetic_pool(count: int) -> deque[PreparedCall]:
    """Calls for the reference app, which keeps no call state worth preparing."""
    return deque(PreparedCall(new_call_sid(), new_caller(), 0) for _ in range(count))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    config = WorkerConfig(args.workers, args.worker_class, args.threads)
    connection = redis_connection()
    app_prefix, ref_prefix = unique_prefix("app"), unique_prefix("ref")
    with contextlib.ExitStack() as stack:
        stack.callback(connection.close)
        stack.callback(delete_prefix, connection, ref_prefix)
        stack.callback(delete_prefix, connection, app_prefix)
        flows = stack.enter_context(flows_copy())
        ceiling = measure_ceiling(
            args.connections, args.ceiling_seconds, args.requests_per_connection
        )
        print(f"generator ceiling: {ceiling.rate:,.0f} req/s on a do-nothing server", flush=True)
        reference = stack.enter_context(
            Gunicorn(
                "reference",
                REFERENCES[args.reference],
                config,
                {
                    "REDIS_URL": REDIS_URL,
                    "REDIS_KEY_PREFIX": ref_prefix,
                    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                },
            )
        )
        app = Gunicorn("app", "app:app", config, {})
        app.env = {
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": app_prefix,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "FLOWS_DIR": flows,
            "PUBLIC_BASE_URL": app.base_url,
            "LOG_LEVEL": args.app_log_level,
            "DEMO_API": "1",
        }
        stack.enter_context(app)
        print(f"servers: {config.describe()} each; reference {reference.base_url}, "
              f"app {app.base_url}", flush=True)  # fmt: skip

        n = args.connections
        warm_ref = measure(reference, deque(), args, args.warmup, 0, "warm-up", connection)
        warm_app = measure(app, deque(), args, args.warmup, 0, "warm-up", connection)
        started = time.perf_counter()
        prepared: list[PreparedCall] = []
        if args.scenario == "answer":
            prepared = prepare_calls(app, calls_needed(warm_app["req_per_s"], args), n)
        print(f"warm-up: reference {warm_ref['req_per_s']:,.0f} req/s, app "
              f"{warm_app['req_per_s']:,.0f} req/s; dialled {len(prepared)} calls in "
              f"{time.perf_counter() - started:.1f}s", flush=True)  # fmt: skip
        app_pool = deque(prepared)
        ref_pool = synthetic_pool(calls_needed(warm_ref["req_per_s"], args))

        runs: dict[str, list[dict[str, Any]]] = {"reference": [], "app": []}
        for index in range(args.rounds):
            order = ("reference", "app") if index % 2 == 0 else ("app", "reference")
            for side in order:
                server, pool = (reference, ref_pool) if side == "reference" else (app, app_pool)
                summary = measure(server, pool, args, args.seconds, 0.5, side, connection)
                summary["round"] = index + 1
                runs[side].append(summary)
                print(f"round {index + 1} {side:9s}: {summary['req_per_s']:8,.1f} req/s  "
                      f"p50 {summary['p50_ms']:.2f} ms  p99 {summary['p99_ms']:.2f} ms  "
                      f"errors {summary['errors']}  worker CPU {summary['worker_cpu_pct']}%  "
                      f"{summary['worker_cpu_ms_per_request']:.2f} ms/req", flush=True)  # fmt: skip
        server_errors = error_lines(app.log_text())

    return document(args, config, ceiling, warm_ref, warm_app, runs, len(prepared), server_errors)


def document(
    args: argparse.Namespace,
    config: WorkerConfig,
    ceiling: loadgen.LoadResult,
    warm_ref: dict[str, Any],
    warm_app: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    prepared: int,
    server_errors: list[str],
) -> dict[str, Any]:
    """The results document: settings, ceiling, every round, pooled numbers, ratios, verdicts."""
    ref, app = pooled(runs["reference"]), pooled(runs["app"])
    throughput_ratio = app["req_per_s"] / ref["req_per_s"] if ref["req_per_s"] else math.nan
    p99_ratio = app["p99_ms"] / ref["p99_ms"] if ref["p99_ms"] else math.nan
    errors_target = {
        "target": "0",
        "result": report.verdict(ref["errors"] == 0 and app["errors"] == 0),
    }
    targets: dict[str, dict[str, str]]
    if args.reference == "wsgi":  # the floor: a share of it is the target, latency is reported
        targets = {
            "throughput": {
                "target": f">= {FLOOR_TARGET}x floor",
                "result": report.verdict(throughput_ratio >= FLOOR_TARGET),
            },
            "p99": {"target": "(reported)", "result": "-"},
            "errors": errors_target,
        }
    else:
        targets = {
            "throughput": {
                "target": f">= {THROUGHPUT_TARGET}x reference",
                "result": report.verdict(throughput_ratio >= THROUGHPUT_TARGET),
            },
            "p99": {
                "target": f"<= {P99_TARGET}x reference",
                "result": report.verdict(p99_ratio <= P99_TARGET),
            },
            "errors": errors_target,
        }
    for side in runs.values():
        for run_ in side:
            run_.pop("_latencies", None)
    for warm in (warm_ref, warm_app):
        warm.pop("_latencies", None)
    return {
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "connections": args.connections,
            "requests_per_connection": args.requests_per_connection,
            "gunicorn": config.describe(),
            "app_log_level": args.app_log_level,
            "reference": f"{args.reference} ({REFERENCES[args.reference]})",
            "prepared_calls": prepared,
            "scenario": args.scenario,
            "app_request": SCENARIOS[args.scenario],
        },
        "generator_ceiling": ceiling.summary(),
        "warmup": {"reference": warm_ref, "app": warm_app},
        "rounds": runs,
        "reference": ref,
        "app": app,
        "ratios": {
            "throughput_app_over_reference": round(throughput_ratio, 3),
            "p99_app_over_reference": round(p99_ratio, 3),
            "worker_cpu_per_request_app_over_reference": round(
                app["worker_cpu_ms_per_request"] / ref["worker_cpu_ms_per_request"], 3
            ),
        },
        "targets": targets,
        "app_error_log_lines": server_errors,
    }


def print_report(doc: dict[str, Any]) -> None:
    """Tables: the pooled numbers of both servers, the ratios and the verdicts."""
    ref, app = doc["reference"], doc["app"]
    print()
    ceiling = doc["generator_ceiling"]
    print(report.table(
        ["server", "req/s", "p50 ms", "p99 ms", "requests", "errors", "worker CPU ms/req"],
        [
            ["generator ceiling", ceiling["req_per_s"], ceiling["p50_ms"], ceiling["p99_ms"],
             ceiling["requests"], ceiling["errors"], "-"],
            ["reference", ref["req_per_s"], ref["p50_ms"], ref["p99_ms"], ref["requests"],
             ref["errors"], ref["worker_cpu_ms_per_request"]],
            ["app", app["req_per_s"], app["p50_ms"], app["p99_ms"], app["requests"],
             app["errors"], app["worker_cpu_ms_per_request"]],
        ],
    ))  # fmt: skip
    print()
    ratios, targets = doc["ratios"], doc["targets"]
    print(report.table(
        ["measure", "app / reference", "target", "result"],
        [
            ["throughput", ratios["throughput_app_over_reference"],
             targets["throughput"]["target"], targets["throughput"]["result"]],
            ["p99 latency", ratios["p99_app_over_reference"], targets["p99"]["target"],
             targets["p99"]["result"]],
            ["errors", f"{app['errors']} / {ref['errors']}", "0", targets["errors"]["result"]],
            ["worker CPU per request", ratios["worker_cpu_per_request_app_over_reference"],
             "(diagnostic)", "-"],
        ],
    ))  # fmt: skip
    if doc["settings"]["reference"].startswith("wsgi"):
        print(f"\nfloor ratio ({doc['settings']['scenario']}): app / framework-free floor = "
              f"{ratios['throughput_app_over_reference']} req/s, "
              f"{ratios['worker_cpu_per_request_app_over_reference']} worker CPU per request")  # fmt: skip


def result_name(reference: str, scenario: str) -> str:
    """The results file of one reference and scenario: ``webhooks_wsgi_incoming``, ..."""
    return f"webhooks_{reference}" + ("" if scenario == "answer" else f"_{scenario}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print tables, write ``bench/results/<output>.json``."""
    args = parse_args(argv)
    with sigterm_as_interrupt():
        doc = run(args)
    print_report(doc)
    path = report.write(args.output or result_name(args.reference, args.scenario), doc)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Webhooks with customer history on against off, and the history writer's lag, in one run.

``python -m bench.history`` creates a PostgreSQL schema of its own (``--database``, default
database ``test`` on 127.0.0.1:5432; the URL carries ``?options=-csearch_path%3D<schema>``),
migrates it with ``flask --app app db upgrade``, and starts two gunicorn servers of the app
with the same workers (the Procfile's worker class, :func:`bench.slow_clients.procfile_model`)
and the same settings, each under a private Redis key prefix:

- **off**: nobody reads its event stream (the events are appended with every save, as always,
  and left there).
- **on**: a ``flask --app app worker`` process (the Procfile's ``worker:`` line) records its
  event stream in the schema. The worker is paused (``SIGSTOP``) while the off server is
  measured, so an off round runs with no writer on the machine at all, and continued
  (``SIGCONT``) for the on rounds.

Both servers are driven by the webhook benchmark's call script (``bench.webhooks``, scenario
``answer``: each connection answers gathers on calls dialled beforehand, every request a signed
``POST /voice/answer`` that steps its call), in alternating rounds (off, on, on, off, ...).
Before the first round, and after every on round, the benchmark waits until every stream entry
of the on server is in SQL, so each on round starts with the writer caught up and an off round
never overlaps the writer finishing an on round's events.

**Writer lag, measured from outside.** Nothing is added to the product's schema. While the on
server is measured (and until the writer has caught up), a thread polls
``SELECT id, stream_id, extract(epoch from at) FROM events WHERE id > <last id seen>`` every
``--poll`` seconds (25 ms). A row first seen by the query that started at ``t_i`` was committed
after the previous query started (``t_(i-1)``: that snapshot did not hold it) and no later than
``t_i`` (this snapshot did), so ``t_i - at`` is an upper bound of its lag (event time to commit)
that overstates it by less than one poll interval; ``t_(i-1) - at`` is reported as the lower
bound. The target is judged on the upper bound. ``at`` is the event's own time, set by the
web worker when its turn ran (seconds, the event document's ``at`` and the ``events.at``
column); both processes read the same wall clock. One writer commits its batches one after
another and ids come from one sequence, so ``id > last`` misses no row (every row is checked
against the stream at the end anyway). The lag target applies to events whose ``at`` lies in an
on round; the events of the warm-up and the dialling before the rounds (a burst) are reported apart.

**Completeness.** At the end every entry of the on server's stream shards (``XRANGE``) is
compared with the ``events`` rows: the counts, the stream ids missing from SQL, the rows whose
stream id is not in the stream, and the stream ids that occur more than once.

Writes ``bench/results/history.json``; the schema, the keys and every process are removed
however the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import redis
import sqlalchemy as sa

from bench import report
from bench.callers import PreparedCall
from bench.servers import (
    AUTH_TOKEN,
    REDIS_URL,
    REPO,
    SECRET_KEY,
    Gunicorn,
    WorkerConfig,
    cpu_seconds,
    delete_prefix,
    error_lines,
    flows_copy,
    redis_connection,
    sigterm_as_interrupt,
    unique_prefix,
)
from bench.slow_clients import procfile_model
from bench.webhooks import calls_needed, measure, measure_ceiling, pooled, prepare_calls

DATABASE = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
THROUGHPUT_TARGET = 0.95  # on / off req/s
P99_TARGET = 1.05  # on / off p99
LAG_TARGET = 1.0  # seconds, p99 of event time -> commit
SHARDS = 8  # EVENT_STREAM_SHARDS: the app's default, the same for servers and writer
CATCH_UP_TIMEOUT = 120.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--requests-per-connection", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--poll", type=float, default=0.025, help="seconds between SQL polls")
    parser.add_argument("--ceiling-seconds", type=float, default=2.0)
    parser.add_argument("--app-log-level", default="INFO", help="LOG_LEVEL of servers and writer")
    parser.add_argument("--database", default=DATABASE, help="PostgreSQL URL (a schema is made)")
    parser.add_argument("--output", default="history", help="results file name (no .json)")
    args = parser.parse_args(argv)
    args.scenario = "answer"  # what bench.webhooks.measure reads: the webhook benchmark's script
    return args


# ---- PostgreSQL ---------------------------------------------------------------------------------
@contextlib.contextmanager
def private_schema(url: str) -> Iterator[str]:
    """A fresh schema on ``url``'s database for this run; yields a URL that uses only it."""
    schema = f"bench_history_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise SystemExit(f"PostgreSQL at {url} does not answer: {exc}") from None
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def flask_command(*args: str) -> list[str]:
    """``python -m flask --app app ARGS`` as a command line, run from the repository."""
    return [sys.executable, "-m", "flask", "--app", "app", *args]


def migrate(env: dict[str, str]) -> str:
    """``flask --app app db upgrade`` on the run's schema; its output."""
    done = subprocess.run(
        flask_command("db", "upgrade"), cwd=REPO, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"db upgrade failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Writer:
    """The ``flask --app app worker`` process, in its own process group; paused and continued."""

    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self) -> Writer:
        """Start the writer and wait until it says it runs."""
        descriptor, name = tempfile.mkstemp(prefix="bench-history-writer-", suffix=".log")
        self.log = Path(name)
        self.process = subprocess.Popen(
            flask_command("worker"), cwd=REPO,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=descriptor, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        os.close(descriptor)
        deadline = time.monotonic() + 30
        while "history writer" not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the history writer did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def pause(self) -> None:
        """Stop the process where it is (it uses no CPU until :meth:`resume`)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused writer go on."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def cpu(self) -> float:
        """CPU seconds the writer used so far."""
        return cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def log_text(self) -> str:
        """What the writer printed and logged so far."""
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (it finishes its batch and exits), then SIGKILL of its group if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# ---- watching the events table ------------------------------------------------------------------
@dataclass(frozen=True)
class Sighting:
    """One event row as the poller first saw it: its event time and the commit's bounds."""

    stream_id: str
    at: float
    after: float  # the previous poll started then and did not see the row
    by: float  # this poll started then and saw it


@dataclass
class Poller:
    """A thread that polls the ``events`` table for new rows while :attr:`active` is set."""

    url: str
    every: float
    active: threading.Event = field(default_factory=threading.Event)
    sightings: list[Sighting] = field(default_factory=list)
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Poller:
        """Start polling (it waits while not :attr:`active`)."""
        self._thread = threading.Thread(target=self._run, name="events-poller", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        query = sa.text(
            "SELECT id, stream_id, extract(epoch from at) FROM events WHERE id > :last ORDER BY id"
        )
        last, previous = 0, time.time()
        try:
            with engine.connect() as connection:
                while not self._stop.is_set():
                    if not self.active.is_set():
                        self.active.wait(0.1)
                        previous = time.time()  # nothing commits while paused
                        continue
                    started = time.time()
                    rows = connection.execute(query, {"last": last}).all()
                    self.polls += 1
                    for row_id, stream_id, at in rows:
                        self.sightings.append(Sighting(stream_id, float(at), previous, started))
                        last = max(last, int(row_id))
                    previous = started
                    self._stop.wait(self.every)
        finally:
            engine.dispose()

    def seen(self) -> int:
        """How many rows were seen so far."""
        return len(self.sightings)

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self.active.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process on this machine (other users' queries
    included: a diagnostic, not a measure of the writer alone)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
    return total


def stream_entries(connection: redis.Redis, prefix: str) -> dict[str, float]:
    """Every entry of ``prefix``'s stream shards: its SSE id (the ``stream_id`` the writer stores)
    and the event's ``at``."""
    found: dict[str, float] = {}
    for shard in range(SHARDS):
        key, start = f"{prefix}:events:{shard}", "-"
        while True:
            batch = cast(
                list[tuple[bytes, dict[bytes, bytes]]], connection.xrange(key, start, count=5000)
            )
            for entry_id, fields in batch:
                document = orjson.loads(fields[b"e"])
                found[f"{shard}-{entry_id.decode()}"] = float(document.get("at") or 0)
            if len(batch) < 5000:
                break
            start = "(" + batch[-1][0].decode()
    return found


def stream_length(connection: redis.Redis, prefix: str) -> int:
    """Entries in ``prefix``'s stream shards now."""
    return sum(int(connection.xlen(f"{prefix}:events:{shard}")) for shard in range(SHARDS))


def catch_up(poller: Poller, connection: redis.Redis, prefix: str) -> float:
    """Wait until the poller has seen as many rows as the stream holds; seconds waited."""
    started = time.perf_counter()
    while poller.seen() < stream_length(connection, prefix):
        if time.perf_counter() - started > CATCH_UP_TIMEOUT:
            raise RuntimeError(
                f"the writer did not catch up in {CATCH_UP_TIMEOUT:g}s: {poller.seen()} rows, "
                f"{stream_length(connection, prefix)} stream entries"
            )
        time.sleep(0.05)
    return time.perf_counter() - started


def audit(url: str, entries: dict[str, float]) -> dict[str, Any]:
    """Every stream entry in SQL once, and nothing else; ``at`` as the stream has it."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT stream_id, extract(epoch from at) FROM events")
            ).all()
    finally:
        engine.dispose()
    ids = [stream_id for stream_id, _at in rows]
    distinct = set(ids)
    at_drift = max((abs(float(at) - entries[s]) for s, at in rows if s in entries), default=0.0)
    return {
        "stream_entries": len(entries),
        "event_rows": len(ids),
        "missing_from_sql": len(set(entries) - distinct),
        "not_in_stream": len(distinct - set(entries)),
        "duplicate_rows": len(ids) - len(distinct),
        "max_at_difference_s": round(at_drift, 6),
    }


def lag_summary(sightings: list[Sighting]) -> dict[str, Any]:
    """Percentiles of the upper and lower bounds of event time -> commit, in ms."""
    upper = [s.by - s.at for s in sightings]
    lower = [max(0.0, s.after - s.at) for s in sightings]

    def ms(samples: list[float], fraction: float) -> float:
        return round(report.percentile(samples, fraction) * 1000, 1)

    return {
        "events": len(sightings),
        "upper_p50_ms": ms(upper, 0.50),
        "upper_p99_ms": ms(upper, 0.99),
        "upper_max_ms": round(max(upper, default=math.nan) * 1000, 1),
        "lower_p50_ms": ms(lower, 0.50),
        "lower_p99_ms": ms(lower, 0.99),
    }


# ---- the run ------------------------------------------------------------------------------------
def server_env(server: Gunicorn, prefix: str, flows: str, url: str, level: str) -> dict[str, str]:
    """The app's settings: the webhook benchmark's, plus the history database."""
    return {
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "FLOWS_DIR": flows,
        "PUBLIC_BASE_URL": server.base_url,
        "LOG_LEVEL": level,
        "DEMO_API": "1",
        "DATABASE_URL": url,
        "EVENT_STREAM_SHARDS": str(SHARDS),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    config = procfile_model(args.workers)
    connection = redis_connection()
    prefixes = {"off": unique_prefix("hist-off"), "on": unique_prefix("hist-on")}
    with contextlib.ExitStack() as stack:
        stack.callback(connection.close)
        for prefix in prefixes.values():
            stack.callback(delete_prefix, connection, prefix)
        url = stack.enter_context(private_schema(args.database))
        flows = stack.enter_context(flows_copy())
        ceiling = measure_ceiling(
            args.connections, args.ceiling_seconds, args.requests_per_connection
        )
        print(f"generator ceiling: {ceiling.rate:,.0f} req/s on a do-nothing server", flush=True)
        servers: dict[str, Gunicorn] = {}
        for side, prefix in prefixes.items():
            server = Gunicorn(f"history-{side}", "app:app", config, {})
            server.env = server_env(server, prefix, flows, url, args.app_log_level)
            servers[side] = server
        writer_env = dict(servers["on"].env)  # the on server's settings: its prefix, its schema
        migrated = migrate(writer_env)
        print(f"schema: {url.rsplit('%3D', 1)[1]} ({migrated})", flush=True)
        for server in servers.values():
            stack.enter_context(server)
        writer = Writer(writer_env).start()
        stack.callback(writer.stop)
        poller = Poller(url, args.poll).start()
        stack.callback(poller.stop)
        print(f"servers: {config.describe()} each; off {servers['off'].base_url}, "
              f"on {servers['on'].base_url}; history writer running", flush=True)  # fmt: skip

        poller.active.set()
        warm = {
            side: measure(servers[side], deque(), args, args.warmup, 0, "warm-up", connection)
            for side in ("off", "on")
        }
        pools: dict[str, deque[PreparedCall]] = {}
        for side in ("off", "on"):
            count = calls_needed(warm[side]["req_per_s"], args)
            pools[side] = deque(prepare_calls(servers[side], count, args.connections))
        waited = catch_up(poller, connection, prefixes["on"])
        before_rounds = len(poller.sightings)
        print(f"warm-up: off {warm['off']['req_per_s']:,.0f} req/s, on "
              f"{warm['on']['req_per_s']:,.0f} req/s; dialled {len(pools['off'])} + "
              f"{len(pools['on'])} calls; writer caught up {waited:.1f}s after",
              flush=True)  # fmt: skip

        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        windows: list[tuple[float, float]] = []
        for index in range(args.rounds):
            order = ("off", "on") if index % 2 == 0 else ("on", "off")
            for side in order:
                if side == "off":
                    writer.pause()
                    poller.active.clear()
                else:
                    writer.resume()
                    poller.active.set()
                events_before = stream_length(connection, prefixes[side])
                writer_before, postgres_before = writer.cpu(), postgres_cpu()
                opened = time.time()
                summary = measure(servers[side], pools[side], args, args.seconds, 0.5, side,
                                  connection)  # fmt: skip
                closed = time.time()
                # CPU over the round itself; the writer's catching up afterwards is not in it
                summary["postgres_cpu_pct"] = round(
                    100 * (postgres_cpu() - postgres_before) / (closed - opened), 1
                )
                summary["writer_cpu_pct"] = round(
                    100 * (writer.cpu() - writer_before) / (closed - opened), 1
                )
                summary["round"], summary["wall_s"] = index + 1, round(closed - opened, 3)
                summary["events"] = stream_length(connection, prefixes[side]) - events_before
                summary["events_per_s"] = round(summary["events"] / (closed - opened), 1)
                if side == "on":
                    windows.append((opened, closed))
                    summary["writer_catch_up_s"] = round(catch_up(poller, connection,
                                                                  prefixes["on"]), 3)  # fmt: skip
                runs[side].append(summary)
                print(f"round {index + 1} {side:3s}: {summary['req_per_s']:8,.1f} req/s  "
                      f"p50 {summary['p50_ms']:.2f} ms  p99 {summary['p99_ms']:.2f} ms  "
                      f"errors {summary['errors']}  events {summary['events_per_s']:,.0f}/s  "
                      f"worker CPU {summary['worker_cpu_pct']}%  "
                      f"PostgreSQL CPU {summary['postgres_cpu_pct']}%  "
                      f"writer CPU {summary['writer_cpu_pct']}%"
                      + (f", caught up "
                         f"{summary['writer_catch_up_s']}s after" if side == "on" else ""),
                      flush=True)  # fmt: skip
        writer.resume()
        poller.active.set()
        catch_up(poller, connection, prefixes["on"])
        poller.stop()
        checked = audit(url, stream_entries(connection, prefixes["on"]))
        logs = {
            "on_server": error_lines(servers["on"].log_text()),
            "off_server": error_lines(servers["off"].log_text()),
            "writer": error_lines(writer.log_text()),
        }
        in_rounds = [s for s in poller.sightings if any(a <= s.at <= b for a, b in windows)]
        lag = {
            "rounds": lag_summary(in_rounds),
            "warmup_and_dialling": lag_summary(poller.sightings[:before_rounds]),
            "poll_interval_ms": round(1000 * args.poll, 1),
            "polls": poller.polls,
        }
    return document(args, config, ceiling, warm, runs, lag, checked, logs)


def document(
    args: argparse.Namespace,
    config: WorkerConfig,
    ceiling: Any,
    warm: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    lag: dict[str, Any],
    checked: dict[str, Any],
    logs: dict[str, list[str]],
) -> dict[str, Any]:
    """The results document: settings, every round, pooled numbers, ratios, lag, verdicts."""
    off, on = pooled(runs["off"]), pooled(runs["on"])
    throughput = on["req_per_s"] / off["req_per_s"] if off["req_per_s"] else math.nan
    p99 = on["p99_ms"] / off["p99_ms"] if off["p99_ms"] else math.nan
    rates = {side: [r["req_per_s"] for r in runs[side]] for side in runs}
    complete = (
        checked["missing_from_sql"] == 0
        and checked["not_in_stream"] == 0
        and checked["duplicate_rows"] == 0
        and checked["event_rows"] == checked["stream_entries"]
    )
    lag_p99 = lag["rounds"]["upper_p99_ms"]
    for side in runs.values():
        for run_ in side:
            run_.pop("_latencies", None)
    for summary in warm.values():
        summary.pop("_latencies", None)
    on_events = sum(r["events"] for r in runs["on"])
    on_seconds = sum(r["wall_s"] for r in runs["on"])
    return {
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "connections": args.connections,
            "requests_per_connection": args.requests_per_connection,
            "gunicorn": config.describe(),
            "app_log_level": args.app_log_level,
            "poll_interval_s": args.poll,
            "database": args.database.split("@")[-1] + " (a schema of the run's own)",
            "app_request": "signed POST /voice/answer on prepared calls (bench.webhooks answer)",
            "writer": "flask --app app worker (paused with SIGSTOP during off rounds)",
        },
        "generator_ceiling": ceiling.summary(),
        "warmup": warm,
        "rounds": runs,
        "off": off,
        "on": on,
        "round_req_per_s_spread": {
            side: round(max(r) / min(r), 3) if r and min(r) else math.nan
            for side, r in rates.items()
        },
        "ratios": {
            "throughput_on_over_off": round(throughput, 3),
            "p99_on_over_off": round(p99, 3),
            "worker_cpu_per_request_on_over_off": round(
                on["worker_cpu_ms_per_request"] / off["worker_cpu_ms_per_request"], 3
            ),
        },
        "event_rate_on_rounds_per_s": round(on_events / on_seconds, 1) if on_seconds else 0.0,
        "writer_cpu_ms_per_event": _per_event(runs["on"], "writer_cpu_pct"),
        "postgres_cpu_ms_per_event_on": _per_event(runs["on"], "postgres_cpu_pct"),
        "writer_lag": lag,
        "completeness": checked,
        "targets": {
            "throughput": {
                "target": f">= {THROUGHPUT_TARGET}x off",
                "result": report.verdict(throughput >= THROUGHPUT_TARGET),
            },
            "p99": {"target": f"<= {P99_TARGET}x off", "result": report.verdict(p99 <= P99_TARGET)},
            "writer_lag_p99": {
                "target": f"< {LAG_TARGET * 1000:g} ms",
                "result": report.verdict(lag_p99 < LAG_TARGET * 1000),
            },
            "every_event_once": {
                "target": "all, no duplicates",
                "result": report.verdict(complete),
            },
            "errors": {
                "target": "0",
                "result": report.verdict(off["errors"] == 0 and on["errors"] == 0),
            },
        },
        "error_log_lines": logs,
    }


def _per_event(rounds: list[dict[str, Any]], share: str) -> float:
    """Milliseconds of CPU per event from each round's CPU share (percent of one core)."""
    events = sum(r["events"] for r in rounds)
    used = sum(r[share] / 100 * r["wall_s"] for r in rounds)
    return round(1000 * used / events, 3) if events else math.nan


def print_report(doc: dict[str, Any]) -> None:
    """Tables: both sides pooled, then the ratios, the lag and the audit against their targets."""
    off, on, ratios, targets = doc["off"], doc["on"], doc["ratios"], doc["targets"]
    print()
    print(report.table(
        ["history", "req/s", "p50 ms", "p99 ms", "requests", "errors", "worker CPU ms/req"],
        [[side, s["req_per_s"], s["p50_ms"], s["p99_ms"], s["requests"], s["errors"],
          s["worker_cpu_ms_per_request"]] for side, s in (("off", off), ("on", on))],
    ))  # fmt: skip
    lag, checked = doc["writer_lag"]["rounds"], doc["completeness"]
    print()
    print(report.table(
        ["measure", "value", "target", "result"],
        [
            ["throughput on / off", ratios["throughput_on_over_off"],
             targets["throughput"]["target"], targets["throughput"]["result"]],
            ["p99 on / off", ratios["p99_on_over_off"], targets["p99"]["target"],
             targets["p99"]["result"]],
            [f"writer lag p99 ({lag['events']} events, {doc['event_rate_on_rounds_per_s']}/s)",
             f"{lag['upper_p99_ms']} ms (>= {lag['lower_p99_ms']} ms)",
             targets["writer_lag_p99"]["target"], targets["writer_lag_p99"]["result"]],
            ["events in SQL / stream entries", f"{checked['event_rows']} / "
             f"{checked['stream_entries']} (missing {checked['missing_from_sql']}, duplicates "
             f"{checked['duplicate_rows']})", targets["every_event_once"]["target"],
             targets["every_event_once"]["result"]],
            ["errors", f"{on['errors']} / {off['errors']}", "0", targets["errors"]["result"]],
        ],
    ))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print tables, write ``bench/results/<output>.json``."""
    args = parse_args(argv)
    with sigterm_as_interrupt():
        doc = run(args)
    print_report(doc)
    print(f"\nwritten: {report.write(args.output, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

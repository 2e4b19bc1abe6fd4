"""Screen-pop latency and webhook throughput with agent consoles connected.

``python -m bench.screen_pop`` starts the app under gunicorn as the Procfile runs it, on real
Redis and a migrated SQLite history, creates an agent with ``flask agents add`` and logs it in.
It then runs alternating rounds of signed ``POST /voice`` webhooks (each a new call,
:class:`bench.callers.Dialer`) with no console connected and with ``--consoles`` of them, each an
open ``GET /agent/events`` stream (Server-Sent Events), all read by one asyncio loop in a
process of its own, so the readers take no CPU from the load generator.

During the console rounds a driver hands a caller to the queue every ``--pop-every`` seconds
(the demo flow: a new call, then ``0`` at the main menu) and notes when that transfer webhook
was sent; each console notes when the ``handoff`` event of that call reached it. Screen-pop
latency is the time from sending the transfer webhook to the event arriving, for every console
and transfer (the transfer webhook's own time included). Both the latency and the webhook
throughput (with consoles over without) are measured in the same run, and written to
``bench/results/screen_pop.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from bench import loadgen, report
from bench.callers import Dialer, PreparedCall, Signer, gather_step, new_call_sid, new_caller
from bench.servers import (
    AUTH_TOKEN,
    HOST,
    REDIS_URL,
    REPO,
    SECRET_KEY,
    Gunicorn,
    delete_prefix,
    error_lines,
    flows_copy,
    redis_connection,
    sigterm_as_interrupt,
    unique_prefix,
)
from bench.slow_clients import procfile_model

LATENCY_TARGET_MS = 300.0
THROUGHPUT_TARGET = 0.95
AGENT, PASSWORD = "bench-agent", "bench-password-0123456789"
_CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=8, help="webhook connections")
    parser.add_argument("--consoles", type=int, default=50, help="open event streams")
    parser.add_argument("--pop-every", type=float, default=0.25, help="seconds between transfers")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests-per-connection", type=int, default=20)
    parser.add_argument("--output", default="screen_pop", help="results file name (no .json)")
    return parser.parse_args(argv)


def _consoles_process(
    port: int, cookie: str, start_id: str, count: int, ready: Any, stop: Any, out: Any
) -> None:
    """``count`` open event streams, read by one asyncio loop in a process of its own (so the
    readers never take CPU or the GIL from the load generator); sends back, per call, the
    ``time.monotonic()`` (system-wide on Linux) at which each console saw its ``handoff``."""
    import asyncio

    seen: dict[str, list[float]] = {}
    failures: list[str] = []

    async def console() -> None:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            query = urllib.parse.urlencode({"last_id": start_id})
            writer.write(
                (
                    f"GET /agent/events?{query} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                    f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
                ).encode()
            )
            status = await reader.readline()
            if b" 200 " not in status:
                failures.append(status.decode(errors="replace").strip())
                return
            while await reader.readline() not in (b"\r\n", b"\n", b""):
                pass  # the headers
            connected.append(1)
            name = b""
            while line := await reader.readline():
                if line.startswith(b"event: "):
                    name = line[7:].strip()
                elif line.startswith(b"data: ") and name == b"handoff":
                    at = time.monotonic()
                    sid = str(json.loads(line[6:]).get("call_sid"))
                    seen.setdefault(sid, []).append(at)
                elif line.strip() == b"":
                    name = b""
        except (OSError, asyncio.IncompleteReadError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    async def main() -> None:
        tasks = [asyncio.create_task(console()) for _ in range(count)]
        while len(connected) < count and not failures:
            await asyncio.sleep(0.05)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()

    connected: list[int] = []
    asyncio.run(main())
    out.send({"seen": seen, "failures": failures[:3], "connected": len(connected)})


class Consoles:
    """The consoles' process: start, wait until every stream is open, stop, collect."""

    def __init__(self, port: int, cookie: str, start_id: str, count: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self.ready, self.stop_flag = context.Event(), context.Event()
        self.receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_consoles_process,
            args=(port, cookie, start_id, count, self.ready, self.stop_flag, send),
            daemon=True,
        )

    def start(self) -> Consoles:
        self.process.start()
        if not self.ready.wait(20):
            raise RuntimeError("the consoles did not all connect")
        return self

    def stop(self) -> dict[str, Any]:
        self.stop_flag.set()
        found: dict[str, Any] = self.receive.recv() if self.receive.poll(10) else {}
        self.process.join(5)
        return found


class Transfers(threading.Thread):
    """Hands a new caller to the queue every ``every`` seconds; notes when each was sent."""

    def __init__(self, signer: Signer, every: float) -> None:
        super().__init__(daemon=True)
        self.signer = signer
        self.every = every
        self.stopping = threading.Event()
        self.sent: dict[str, float] = {}
        self.webhook_seconds: list[float] = []
        self.failures: list[str] = []
        self.counting = threading.Event()

    def run(self) -> None:
        host, port = HOST, int(self.signer.host.rsplit(":", 1)[1])
        while not self.stopping.wait(self.every):
            call = PreparedCall(new_call_sid(), new_caller(), -1)
            try:
                body = _exchange(host, port, self.signer.request("/voice", call, {}))
                step = gather_step(body)
                if step is None:
                    self.failures.append(f"no gather: {body[:120]!r}")
                    continue
                request = self.signer.request(f"/voice/answer?step={step}", call, {"Digits": "0"})
                started = time.monotonic()
                answer = _exchange(host, port, request)
                if self.counting.is_set():
                    self.sent[call.call_sid] = started
                    self.webhook_seconds.append(time.monotonic() - started)
                if b"<Enqueue" not in answer:
                    self.failures.append(f"no transfer: {answer[:120]!r}")
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")


def _exchange(host: str, port: int, request: bytes) -> bytes:
    """One request on a fresh connection; the response body."""
    with socket.create_connection((host, port), timeout=15) as sock:
        head, _, body = request.partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw


def _flask(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=REPO,
        env={**os.environ, **env},
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def log_in(base_url: str) -> str:
    """Log the bench agent in; the session cookie as a ``Cookie`` header value."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base_url}/agent/login", timeout=10).read()
    found = _CSRF.search(page)
    if found is None:
        raise RuntimeError("the login page has no CSRF token")
    form = urllib.parse.urlencode(
        {"name": AGENT, "password": PASSWORD, "csrf_token": found.group(1).decode()}
    ).encode()
    opener.open(f"{base_url}/agent/login", data=form, timeout=10).read()
    cookies = "; ".join(f"{c.name}={c.value}" for c in jar)
    if not cookies:
        raise RuntimeError("logging in gave no session cookie")
    return cookies


@contextlib.contextmanager
def console_server(args: argparse.Namespace) -> Iterator[Gunicorn]:
    """The app under the Procfile's serving model, with a migrated history and one agent."""
    connection = redis_connection()
    prefix = unique_prefix("pop")
    with contextlib.ExitStack() as stack:
        stack.callback(connection.close)
        stack.callback(delete_prefix, connection, prefix)
        flows = stack.enter_context(flows_copy())
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pop-"))
        server = Gunicorn("console", "app:app", procfile_model(args.workers), {})
        server.env = {
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "FLOWS_DIR": flows,
            "PUBLIC_BASE_URL": server.base_url,
            "DATABASE_URL": f"sqlite:///{Path(folder) / 'history.db'}",
            "LOG_LEVEL": "WARNING",
        }
        _flask(server.env, "db", "upgrade")
        _flask(server.env, "agents", "add", AGENT, stdin=f"{PASSWORD}\n")
        yield stack.enter_context(server)


def webhook_round(server: Gunicorn, args: argparse.Namespace, seconds: float, label: str) -> Any:
    signer = Signer(server.base_url, AUTH_TOKEN)
    calls: list[PreparedCall] = []
    scripts: list[loadgen.Script] = [Dialer(signer, calls) for _ in range(args.connections)]
    return loadgen.run(
        label, HOST, server.port, scripts, seconds, warmup=0.5,
        requests_per_connection=args.requests_per_connection,
    )  # fmt: skip


def open_consoles(server: Gunicorn, args: argparse.Namespace) -> Consoles:
    cookie = log_in(server.base_url)
    feed_key = f"{server.env['REDIS_KEY_PREFIX']}:agent-feed"
    connection = redis_connection()
    newest = connection.xrevrange(feed_key, count=1)
    connection.close()
    start = newest[0][0].decode() if newest else "0-0"
    return Consoles(server.port, cookie, start, args.consoles).start()


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {"none": [], "consoles": []}
    latencies: list[float] = []
    missed = 0
    transfer_seconds: list[float] = []
    problems: list[str] = []
    with console_server(args) as server:
        webhook_round(server, args, args.warmup, "warm-up")
        signer = Signer(server.base_url, AUTH_TOKEN)
        for index in range(args.rounds):
            kinds = ("none", "consoles") if index % 2 == 0 else ("consoles", "none")
            for kind in kinds:
                consoles: Consoles | None = None
                seen: dict[str, Any] = {}
                transfers = Transfers(signer, args.pop_every)
                if kind == "consoles":
                    consoles = open_consoles(server, args)
                    transfers.start()
                    time.sleep(0.5)
                    transfers.counting.set()
                try:
                    result = webhook_round(server, args, args.seconds, kind)
                finally:
                    if consoles is not None:
                        transfers.counting.clear()
                        time.sleep(1.0)  # the last transfers' events arrive
                        transfers.stopping.set()
                        transfers.join(5)
                        seen = consoles.stop()
                summary: dict[str, Any] = result.summary()
                summary["round"] = index + 1
                if kind == "consoles":
                    for call_sid, sent in transfers.sent.items():
                        arrived = seen.get("seen", {}).get(call_sid, [])
                        missed += args.consoles - len(arrived)
                        latencies.extend(at - sent for at in arrived)
                    transfer_seconds += transfers.webhook_seconds
                    summary["transfers"] = len(transfers.sent)
                    problems += transfers.failures[:3]
                    problems += seen.get("failures", [])
                rounds[kind].append(summary)
                print(f"round {index + 1} {kind:8s}: {summary['req_per_s']:8,.1f} req/s  "
                      f"p99 {summary['p99_ms']:.2f} ms  errors {summary['errors']}", flush=True)  # fmt: skip
        server_errors = error_lines(server.log_text())
    rate = {kind: _rate(rounds[kind]) for kind in rounds}
    ratio = rate["consoles"] / rate["none"] if rate["none"] else 0.0
    pop = {
        "samples": len(latencies),
        "p50_ms": round(report.percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(report.percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "missed": missed,
        "transfer_webhook_p99_ms": round(report.percentile(transfer_seconds, 0.99) * 1000, 1),
    }
    return {
        "settings": vars(args),
        "gunicorn": procfile_model(args.workers).describe(),
        "rounds": rounds,
        "webhooks_req_per_s": rate,
        "throughput_consoles_over_none": round(ratio, 3),
        "screen_pop": pop,
        "problems": problems,
        "app_error_log_lines": server_errors,
        "targets": {
            "screen_pop_p99": {
                "target": f"< {LATENCY_TARGET_MS:g} ms with {args.consoles} consoles, none missed",
                "result": report.verdict(pop["p99_ms"] < LATENCY_TARGET_MS and missed == 0),
            },
            "throughput_with_consoles": {
                "target": f">= {THROUGHPUT_TARGET}x of none",
                "result": report.verdict(ratio >= THROUGHPUT_TARGET),
            },
        },
    }


def _rate(rounds: list[dict[str, Any]]) -> float:
    seconds = sum(r["seconds"] for r in rounds)
    return sum(r["requests"] for r in rounds) / seconds if seconds else 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the results, write ``bench/results/<output>.json``."""
    args = parse_args(argv)
    with sigterm_as_interrupt():
        doc = run(args)
    pop = doc["screen_pop"]
    print()
    print(report.table(
        ["consoles", "req/s none", "req/s consoles", "ratio", "pop p50 ms", "pop p99 ms",
         "missed", "samples"],
        [[args.consoles, round(doc["webhooks_req_per_s"]["none"], 1),
          round(doc["webhooks_req_per_s"]["consoles"], 1), doc["throughput_consoles_over_none"],
          pop["p50_ms"], pop["p99_ms"], pop["missed"], pop["samples"]]],
    ))  # fmt: skip
    for name, target in doc["targets"].items():
        print(f"{name}: {target['target']}: {target['result']}")
    if doc["problems"]:
        print("problems:", *doc["problems"], sep="\n  ")
    print(f"\nwritten: {report.write(args.output, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

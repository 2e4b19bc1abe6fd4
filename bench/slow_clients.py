"""Webhooks beside slow clients: p99 with 50 connections dripping headers against p99 with none.

``python -m bench.slow_clients`` starts the app under gunicorn once per serving model: the
Procfile's (read from its ``web:`` line) and, for contrast, the gthread model it replaced
(``--worker-class gthread --threads 8``). On each it runs alternating rounds of signed
``POST /voice`` webhooks (each a new call, :class:`bench.callers.Dialer`), with no slow client
connected and with ``--slow`` of them (:class:`SlowClients`: each opens a connection, sends a
request line, then one header line every ``--drip-every`` seconds and never finishes, as a
slow or hostile client does; an agent console's open event stream holds a connection the same
way). A webhook not answered within ``--request-timeout`` counts as an error, at that time.
The result is the ratio of the two p99s per model, both measured in the same run, and
``bench/results/slow_clients.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import loadgen, report
from bench.callers import Dialer, PreparedCall, Signer
from bench.servers import (
    AUTH_TOKEN,
    HOST,
    REDIS_URL,
    REPO,
    SECRET_KEY,
    Gunicorn,
    WorkerConfig,
    delete_prefix,
    error_lines,
    flows_copy,
    redis_connection,
    sigterm_as_interrupt,
    unique_prefix,
)

OLD_MODEL = WorkerConfig(workers=2, worker_class="gthread", threads=8)
P99_TARGET = 1.5  # the chosen model: p99 with slow clients <= 1.5 x p99 without (noise allowed)


def procfile_model(workers: int = 2) -> WorkerConfig:
    """The worker class (and threads) of the Procfile's ``web:`` line, with ``workers`` workers."""
    line = next(
        line.removeprefix("web:").strip()
        for line in (REPO / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    worker_class = re.search(r"--worker-class[= ](\S+)", line)
    threads = re.search(r"--threads[= ](\d+)", line)
    return WorkerConfig(
        workers=workers,
        worker_class=worker_class.group(1) if worker_class else "sync",
        threads=int(threads.group(1)) if threads else 1,
    )


@dataclass
class SlowClients:
    """``count`` connections that each drip one header line every ``every`` seconds, forever.

    Every connection sends ``POST /voice HTTP/1.1`` and a ``Host`` line at once, then a header
    line per period from one thread; the request never ends, so a server that reads it on a
    thread of its own keeps that thread for as long as the client likes. A connection the
    server ends (gunicorn's gevent worker drops a request head still unfinished after
    ``--keep-alive`` seconds) is opened again at once, as a hostile client would, so ``count``
    of them are always there; ``closed`` counts how often the server ended one.
    """

    host: str
    port: int
    count: int = 50
    every: float = 2.0
    closed: int = 0
    dripped: int = 0
    _sockets: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SlowClients:
        """Connect every client and start dripping; returns once each has sent its first line."""
        self._sockets = [self._connect() for _ in range(self.count)]
        self._thread = threading.Thread(target=self._drip, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def _connect(self) -> socket.socket:
        client = socket.create_connection((self.host, self.port), timeout=5)
        client.settimeout(None)  # blocking: a peek with MSG_DONTWAIT then never waits
        client.sendall(f"POST /voice HTTP/1.1\r\nHost: {self.host}\r\n".encode())
        return client

    def _drip(self) -> None:
        line = 0
        while not self._stop.wait(self.every):
            line += 1
            for index, client in enumerate(self._sockets):
                if not self._waiting(client):
                    client.close()
                    self.closed += 1
                    client = self._sockets[index] = self._connect()
                with contextlib.suppress(OSError):  # closed meanwhile: reopened next period
                    client.sendall(f"X-Slow-{line}: {'x' * 16}\r\n".encode())
                    self.dripped += 1

    @staticmethod
    def _waiting(client: socket.socket) -> bool:
        """True while the server has neither answered nor closed ``client``."""
        try:
            client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # nothing to read: the server still waits for the request's end
        except OSError:
            return False
        return False  # an answer (a refusal) or the end of the stream

    def waiting(self) -> int:
        """How many connections the server is waiting on right now."""
        return sum(self._waiting(client) for client in self._sockets)

    def stop(self) -> None:
        """Stop dripping and close every connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5)
        for client in self._sockets:
            with contextlib.suppress(OSError):
                client.close()
        self._sockets.clear()

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind per model")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per server")
    parser.add_argument("--connections", type=int, default=8, help="webhook connections")
    parser.add_argument("--slow", type=int, default=50, help="slow clients in the slow rounds")
    parser.add_argument("--drip-every", type=float, default=2.0, help="seconds between lines")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="a webhook's limit")
    parser.add_argument("--requests-per-connection", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--models", nargs="+", choices=["procfile", "gthread"], default=["procfile", "gthread"]
    )
    parser.add_argument("--output", default="slow_clients", help="results file name (no .json)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def app_server(config: WorkerConfig, name: str) -> Iterator[Gunicorn]:
    """The app under gunicorn with ``config``, on a private key prefix and flows copy."""
    connection = redis_connection()
    prefix = unique_prefix("slow")
    with contextlib.ExitStack() as stack:
        stack.callback(connection.close)
        stack.callback(delete_prefix, connection, prefix)
        flows = stack.enter_context(flows_copy())
        server = Gunicorn(name, "app:app", config, {})
        server.env = {
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "FLOWS_DIR": flows,
            "PUBLIC_BASE_URL": server.base_url,
            "LOG_LEVEL": "WARNING",
        }
        yield stack.enter_context(server)


def webhook_round(
    server: Gunicorn, args: argparse.Namespace, seconds: float, label: str
) -> loadgen.LoadResult:
    """Signed new-call webhooks on ``args.connections`` connections for ``seconds``."""
    signer = Signer(server.base_url, AUTH_TOKEN)
    calls: list[PreparedCall] = []
    scripts: list[loadgen.Script] = [Dialer(signer, calls) for _ in range(args.connections)]
    return loadgen.run(
        label, HOST, server.port, scripts, seconds, warmup=0.5,
        requests_per_connection=args.requests_per_connection,
        request_timeout=args.request_timeout,
    )  # fmt: skip


def measure_model(model: str, config: WorkerConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Alternating rounds without and with slow clients on one serving model."""
    rounds: dict[str, list[dict[str, Any]]] = {"none": [], "slow": []}
    latencies: dict[str, list[float]] = {"none": [], "slow": []}
    with app_server(config, model) as server:
        webhook_round(server, args, args.warmup, "warm-up")
        for index in range(args.rounds):
            kinds = ("none", "slow") if index % 2 == 0 else ("slow", "none")
            for kind in kinds:
                slow: SlowClients | None = None
                if kind == "slow":
                    slow = SlowClients(HOST, server.port, args.slow, args.drip_every).start()
                    time.sleep(args.drip_every + 0.5)  # every client has dripped a line
                try:
                    result = webhook_round(server, args, args.seconds, kind)
                    summary: dict[str, Any] = result.summary()
                    if slow is not None:
                        summary["slow_clients_waiting_at_end"] = slow.waiting()
                        summary["slow_clients_closed_by_server"] = slow.closed
                finally:
                    if slow is not None:
                        slow.stop()
                summary["round"] = index + 1
                summary["error_examples"] = result.error_examples
                rounds[kind].append(summary)
                latencies[kind] += result.latencies
                print(f"{model:8s} round {index + 1} {kind:4s}: {summary['req_per_s']:8,.1f} "
                      f"req/s  p50 {summary['p50_ms']:.2f} ms  p99 {summary['p99_ms']:.2f} ms  "
                      f"errors {summary['errors']}", flush=True)  # fmt: skip
        server_errors = error_lines(server.log_text())
    pooled = {kind: _pooled(rounds[kind], latencies[kind]) for kind in rounds}
    ratio = pooled["slow"]["p99_ms"] / pooled["none"]["p99_ms"]
    return {
        "gunicorn": config.describe(),
        "rounds": rounds,
        "none": pooled["none"],
        "slow": pooled["slow"],
        "p99_slow_over_none": round(ratio, 3),
        "app_error_log_lines": server_errors,
    }


def _pooled(rounds: list[dict[str, Any]], latencies: list[float]) -> dict[str, Any]:
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(report.percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(report.percentile(latencies, 0.99) * 1000, 3),
        "errors": sum(r["errors"] for r in rounds),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every model; returns the results document."""
    configs = {"procfile": procfile_model(args.workers), "gthread": OLD_MODEL}
    models = {name: measure_model(name, configs[name], args) for name in args.models}
    targets: dict[str, dict[str, str]] = {}
    if "procfile" in models:
        chosen = models["procfile"]
        passed = chosen["p99_slow_over_none"] <= P99_TARGET and chosen["slow"]["errors"] == 0
        targets["procfile_p99_slow_over_none"] = {
            "target": f"<= {P99_TARGET}x, 0 errors",
            "result": report.verdict(passed),
        }
    settings = ("seconds", "rounds", "warmup", "connections", "slow", "drip_every",
                "request_timeout", "requests_per_connection", "workers")  # fmt: skip
    return {
        "settings": {key: getattr(args, key) for key in settings},
        "webhook": "signed POST /voice, each request a new CallSid and caller",
        "models": models,
        "targets": targets,
    }


def print_report(doc: dict[str, Any]) -> None:
    """One row per model: p99 without and with slow clients, and their ratio."""
    rows = []
    for name, model in doc["models"].items():
        none, slow = model["none"], model["slow"]
        rows.append([
            f"{name}: {model['gunicorn']}", none["p99_ms"], none["errors"], slow["p99_ms"],
            slow["errors"], model["p99_slow_over_none"], slow["req_per_s"],
        ])  # fmt: skip
    print()
    print(report.table(
        ["model", "p99 ms, none", "errors", f"p99 ms, {doc['settings']['slow']} slow",
         "errors", "slow / none", "req/s, slow"],
        rows,
    ))  # fmt: skip
    for name, target in doc["targets"].items():
        print(f"{name}: {target['target']}: {target['result']}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write ``bench/results/<output>.json``."""
    args = parse_args(argv)
    with sigterm_as_interrupt():
        doc = run(args)
    print_report(doc)
    print(f"\nwritten: {report.write(args.output, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

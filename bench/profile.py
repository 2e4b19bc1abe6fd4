"""Where the app spends its time under load: py-spy on the gunicorn workers during a webhook run.

``python -m bench.profile --seconds 10`` starts the app under gunicorn exactly as
:mod:`bench.webhooks` does, drives it with the same callers (``--scenario answer``: gather
walkers, ``incoming``: a new call per request), and samples every
worker with ``py-spy record --format raw --gil`` (``pip install py-spy``; it needs ptrace
permission): only the thread holding the GIL is sampled, so the numbers show where Python burns
CPU, which is what limits a two-core box; ``--wall`` samples waiting threads too.
It prints the functions with the most samples on their stack (inclusive) and the packages where
the samples end (self time), and stores both in ``bench/results/profile.json``. Sampling slows
the workers, so the throughput printed here is not a benchmark number.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, deque
from pathlib import Path
from typing import Any

from bench import loadgen, report
from bench.callers import PreparedCall
from bench.servers import (
    AUTH_TOKEN,
    HOST,
    REDIS_URL,
    SECRET_KEY,
    WORKER_CLASS,
    Gunicorn,
    WorkerConfig,
    delete_prefix,
    flows_copy,
    redis_connection,
    sigterm_as_interrupt,
    unique_prefix,
)
from bench.webhooks import walkers as webhook_scripts

PLUMBING = (
    "threading.py", "concurrent/futures", "gunicorn/workers", "gunicorn/arbiter", "Flask.__call__",
    "Flask.wsgi_app", "Flask.full_dispatch_request", "Flask.dispatch_request", "gunicorn/app",
    "gunicorn/__main__", "<module>", "runpy.py", "_run_module_as_main", "_run_code",
)  # fmt: skip


def py_spy() -> str:
    """The py-spy executable (next to this Python, else on PATH)."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def stacks(raw: str) -> list[tuple[list[str], int]]:
    """Parse py-spy's raw (collapsed) output into (frames, samples), process frames dropped."""
    parsed = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if frames:
            parsed.append((frames, int(count)))
    return parsed


def package(frame: str) -> str:
    """The package (or app module) a frame ``func (path/file.py)`` belongs to."""
    path = frame.rpartition("(")[2].rstrip(")")
    top = path.split("/", 1)[0]
    if top in ("webhooks", "context", "ivr", "data_dips", "simulator", "app.py"):
        return path  # the app's own modules, one by one
    return top.removesuffix(".py")


def summarise(parsed: list[tuple[list[str], int]], top: int) -> dict[str, Any]:
    """Inclusive samples per function, self samples per package."""
    total = sum(count for _, count in parsed) or 1
    inclusive: Counter[str] = Counter()
    self_by_package: Counter[str] = Counter()
    for frames, count in parsed:
        for frame in set(frames):
            if not any(mark in frame for mark in PLUMBING):
                inclusive[frame] += count
        self_by_package[package(frames[-1])] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": name, "samples": n, "pct": round(100 * n / total, 1)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "inclusive": share(inclusive),
        "self_by_package": share(self_by_package),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the app, load it and sample it."""
    config = WorkerConfig(args.workers, args.worker_class, args.threads)
    connection = redis_connection()
    prefix = unique_prefix("profile")
    with contextlib.ExitStack() as stack:
        stack.callback(connection.close)
        stack.callback(delete_prefix, connection, prefix)
        flows = stack.enter_context(flows_copy())
        raw_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "spy.txt"
        server = Gunicorn("profile", "app:app", config)
        server.env = {
            "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": SECRET_KEY, "FLOWS_DIR": flows, "PUBLIC_BASE_URL": server.base_url, "LOG_LEVEL": args.app_log_level,
        }  # fmt: skip
        stack.enter_context(server)
        assert server.process is not None
        pool: deque[PreparedCall] = deque()
        _, walkers = webhook_scripts(server, pool, args.connections, args.scenario)
        loadgen.run("warm-up", HOST, server.port, walkers, 2.0)
        spy = subprocess.Popen(
            [py_spy(), "record", "--pid", str(server.process.pid), "--subprocesses",
             "--format", "raw", "--nolineno", "--nonblocking", "--rate", str(args.rate),
             "--duration", str(int(args.seconds)), "--output", str(raw_file),
             *([] if args.wall else ["--gil"])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            result = loadgen.run("profiled", HOST, server.port, walkers, args.seconds + 1)
            output = spy.communicate(timeout=args.seconds + 60)[0].decode("utf-8", "replace")
        finally:
            if spy.poll() is None:
                spy.terminate()
                spy.wait(timeout=10)
        if spy.returncode != 0 or not raw_file.exists():
            raise SystemExit(f"py-spy failed:\n{output[-2000:]}")
        parsed = stacks(raw_file.read_text())
    return {
        "settings": {
            "seconds": args.seconds,
            "gunicorn": config.describe(),
            "rate_hz": args.rate,
            "connections": args.connections,
            "scenario": args.scenario,
            "app_log_level": args.app_log_level,
            "gil_only": not args.wall,
        },
        "load_while_sampled": result.summary(),
        **summarise(parsed, args.top),
    }


def print_report(doc: dict[str, Any]) -> None:
    """The hottest functions and packages."""
    print(f"{doc['samples']} samples; load while sampled: "
          f"{doc['load_while_sampled']['req_per_s']} req/s (slowed by sampling)\n")  # fmt: skip
    print(report.table(["inclusive %", "function (module)"],
                       [[r["pct"], r["frame"]] for r in doc["inclusive"]]))  # fmt: skip
    print()
    print(report.table(["self %", "package / app module"],
                       [[r["pct"], r["frame"]] for r in doc["self_by_package"]]))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Profile, print, write ``bench/results/profile.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default=WORKER_CLASS)
    parser.add_argument("--threads", type=int, default=4, help="gthread only")
    parser.add_argument("--app-log-level", default="INFO")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--scenario",
        choices=("answer", "incoming"),
        default="answer",
        help="answer: gather-walking callers on prepared calls; incoming: POST /voice, new calls",
    )
    parser.add_argument(
        "--wall",
        action="store_true",
        help="sample every running thread, not only the one holding the GIL (shows waits on Redis)",
    )
    args = parser.parse_args(argv)
    with sigterm_as_interrupt():
        doc = run(args)
    print_report(doc)
    print(f"\nwritten: {report.write('profile', doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Gunicorn servers for the benchmarks: start on a free loopback port, wait until ready, stop.

:class:`Gunicorn` starts one server in its own process group and stops it (SIGTERM, then SIGKILL of
that group) however the benchmark ends, so an interrupted run never leaves workers behind. It also
reads the resident memory of the workers from ``/proc``. :func:`delete_prefix` removes every Redis
key a run created under its own prefix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
SECRET_KEY = "bench-secret-key-" + "0" * 48  # the app refuses to start without one
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


WORKER_CLASS = "gevent"  # the Procfile's: what production runs


@dataclass(frozen=True)
class WorkerConfig:
    """How gunicorn runs: the same for every server a benchmark compares."""

    workers: int = 2
    worker_class: str = WORKER_CLASS
    threads: int = 4  # gthread only
    keep_alive: int = 5

    def args(self) -> list[str]:
        """Gunicorn's command-line flags for this configuration."""
        return [
            f"--workers={self.workers}",
            f"--worker-class={self.worker_class}",
            f"--threads={self.threads}",
            f"--keep-alive={self.keep_alive}",
            "--backlog=2048",
            "--log-level=warning",
        ]

    def describe(self) -> str:
        """A short human description, e.g. ``2 x gevent`` or ``2 x gthread (4 threads)``."""
        threads = f" ({self.threads} threads)" if self.worker_class == "gthread" else ""
        return f"{self.workers} x {self.worker_class}{threads}"


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def unique_prefix(kind: str) -> str:
    """A Redis key prefix no other run (or test) uses."""
    return f"bench-{kind}-{uuid.uuid4().hex[:10]}"


@dataclass
class Gunicorn:
    """One gunicorn server running ``target`` (``module:app``) on a free loopback port."""

    name: str
    target: str
    config: WorkerConfig
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    health_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> Gunicorn:
        """Start the server and wait until ``health_path`` answers 200."""
        descriptor, log_name = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        self.log = Path(log_name)
        command = [
            sys.executable, "-m", "gunicorn", *self.config.args(),
            f"--bind={HOST}:{self.port}", f"--chdir={REPO}", self.target,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=descriptor,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every worker
        )
        os.close(descriptor)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_text()[-3000:]}")
            if self._healthy() and len(self.worker_pids()) >= self.config.workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready in {READY_TIMEOUT:g}s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + self.health_path, timeout=1) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then kill the process group if it does not go in time."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)

    def log_text(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_bytes().decode("utf-8", "replace")

    def worker_pids(self) -> list[int]:
        """The pids of the gunicorn workers (children of the master process)."""
        if self.process is None:
            return []
        return children(self.process.pid)

    def worker_cpu(self) -> dict[int, float]:
        """CPU seconds used so far by each worker."""
        return {pid: cpu_seconds(pid) for pid in self.worker_pids()}

    def worker_rss_kib(self) -> dict[int, int]:
        """Resident memory (VmRSS, KiB) of each worker."""
        return {pid: rss for pid in self.worker_pids() if (rss := rss_kib(pid)) is not None}

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``, from ``/proc``."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    """``VmRSS`` of a process in KiB, or ``None`` if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


ERROR_MARKS = ('"level": "error"', '"level": "critical"', "traceback (most recent call last)")


def error_lines(log: str, limit: int = 5) -> list[str]:
    """The first ``limit`` lines of a server log that report an error (JSON or plain text)."""
    found = [line[:500] for line in log.splitlines() if any(m in line.lower() for m in ERROR_MARKS)]
    return found[:limit]


def delete_prefix(connection: redis.Redis, prefix: str, limit: int = 5_000_000) -> int:
    """Delete every key under ``prefix:`` (bounded by ``limit``); return how many went."""
    deleted = 0
    batch: list[bytes] = []
    for key in connection.scan_iter(f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(connection.unlink(*batch))
            batch = []
        if deleted + len(batch) >= limit:
            break
    if batch:
        deleted += int(connection.unlink(*batch))
    return deleted


def redis_connection() -> redis.Redis:
    """A plain client on the benchmark Redis."""
    return redis.Redis.from_url(REDIS_URL, socket_timeout=5)


def flows_copy(source: Path = REPO / "flows") -> tempfile.TemporaryDirectory[str]:
    """A private copy of the flows directory, so edits in the working tree do not change a run."""
    directory = tempfile.TemporaryDirectory(prefix="bench-flows-")
    for path in source.glob("*.y*ml"):
        (Path(directory.name) / path.name).write_bytes(path.read_bytes())
    return directory


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks clean up on either."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

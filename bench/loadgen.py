"""A closed-loop HTTP/1.1 load generator: a fixed number of keep-alive connections, one script each.

Each connection runs a :class:`Script`, which names the next request and checks each response, so
a virtual client can follow the state the server hands back (the gather's action URL). Requests
are written as raw bytes on ``asyncio`` streams: the generator is a few microseconds of Python per
request, and :func:`run` reports the CPU it used so a run can show the generator was not the
bottleneck. Latency is measured from the first byte written to the last byte read.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from bench.report import percentile

MAX_ERROR_EXAMPLES = 5
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 15.0  # Twilio's limit for a webhook


class Script(Protocol):
    """What one virtual client sends and how it checks the answers."""

    def next_request(self) -> bytes:
        """The raw bytes of the next HTTP request."""
        ...

    def check(self, status: int, body: bytes) -> str | None:
        """Inspect a response; return an error message, or ``None`` when it is right."""
        ...


@dataclass
class LoadResult:
    """What one load run measured."""

    label: str
    seconds: float
    connections: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    max_requests: int | None = None
    requests_per_connection: int | None = None
    sent: int = 0
    request_timeout: float = REQUEST_TIMEOUT

    @property
    def requests(self) -> int:
        """Requests completed inside the measured window (good or bad)."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float | int | str]:
        """Throughput, latency percentiles (ms), errors and the generator's CPU use."""
        return {
            "label": self.label,
            "seconds": round(self.seconds, 3),
            "connections": self.connections,
            "requests": self.requests,
            "req_per_s": round(self.rate, 1),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 3),
            "p90_ms": round(percentile(self.latencies, 0.90) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 3),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 3),
            "errors": self.errors,
            "generator_cpu_pct_of_one_core": round(100 * self.cpu_seconds / self.seconds, 1)
            if self.seconds
            else 0.0,
        }

    def note_error(self, message: str) -> None:
        """Count an error and keep the first few messages."""
        self.errors += 1
        if len(self.error_examples) < MAX_ERROR_EXAMPLES:
            self.error_examples.append(message)


def post(host: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A keep-alive form POST as raw bytes."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1") + body


def get(host: str, path: str) -> bytes:
    """A keep-alive GET as raw bytes."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"connection" and value.strip().lower() == b"close":
            close = True
        elif lowered == b"transfer-encoding":
            raise ValueError("chunked responses are not supported by this generator")
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _connection(
    host: str, port: int, script: Script, result: LoadResult, start: float, end: float
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    on_connection = 0
    try:
        while time.perf_counter() < end:
            if result.max_requests is not None and result.sent >= result.max_requests:
                break
            if writer is not None and on_connection == result.requests_per_connection:
                writer.close()  # a new connection may land on another worker, like new clients
                writer = None
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), CONNECT_TIMEOUT
                    )
                except (OSError, TimeoutError) as exc:
                    result.note_error(f"connect: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.1)
                    continue
                on_connection = 0
            on_connection += 1
            assert reader is not None and writer is not None
            request = script.next_request()
            result.sent += 1
            sent = time.perf_counter()
            try:
                writer.write(request)
                status, body, close = await asyncio.wait_for(
                    _read_response(reader), result.request_timeout
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                writer.close()
                writer = None
                if time.perf_counter() < end or start <= sent < end:  # failed after being sent
                    result.note_error(f"transport: {type(exc).__name__}: {exc}")
                    result.latencies.append(time.perf_counter() - sent)
                continue
            done = time.perf_counter()
            problem = script.check(status, body)
            if start <= sent and done <= end:
                result.latencies.append(done - sent)
                result.statuses[status] += 1
                if problem is not None:
                    result.note_error(problem)
            if close:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _run(
    host: str, port: int, scripts: list[Script], result: LoadResult, warmup: float
) -> None:
    start = time.perf_counter() + warmup
    end = start + result.seconds
    await asyncio.gather(*(_connection(host, port, s, result, start, end) for s in scripts))


def run(
    label: str,
    host: str,
    port: int,
    scripts: list[Script],
    seconds: float,
    warmup: float = 0.0,
    max_requests: int | None = None,
    requests_per_connection: int | None = None,
    request_timeout: float = REQUEST_TIMEOUT,
) -> LoadResult:
    """Drive ``len(scripts)`` connections for ``warmup + seconds``; measure the last ``seconds``.

    Only requests both sent and answered inside the measured window count (a request that
    fails inside it counts as an error, at the time it failed). With ``max_requests`` the run
    also stops once that many requests were sent; with ``requests_per_connection`` each
    connection is replaced after that many requests; a request not answered within
    ``request_timeout`` seconds fails.
    """
    result = LoadResult(
        label,
        seconds,
        len(scripts),
        max_requests=max_requests,
        requests_per_connection=requests_per_connection,
        request_timeout=request_timeout,
    )
    cpu = time.process_time()
    asyncio.run(_run(host, port, scripts, result, warmup))
    result.cpu_seconds = (time.process_time() - cpu) * seconds / (seconds + warmup)
    return result

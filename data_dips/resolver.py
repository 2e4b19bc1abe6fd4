"""Name lookups for data dips that give up at the dip's deadline.

``getaddrinfo`` takes no timeout: a slow DNS server can hold the thread that calls it for as long
as the system resolver's own retries last (often 10-30 s). :class:`SystemResolver` therefore
runs lookups on a few threads of its own and waits for an answer only until the dip's deadline;
a lookup still running then is left to finish on its thread, which returns to the pool when the
system resolver gives up. The pool is fixed in size, so slow lookups never add threads: when all
of them are busy, further lookups queue and fail at their own deadlines. An address written as
an IP literal needs no lookup and never leaves the calling thread. :class:`StaticResolver` is the
in-memory fake: names from a mapping, nothing else.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

Address = tuple[Any, ...]  # one getaddrinfo entry: (family, type, proto, canonname, sockaddr)
Lookup = Callable[..., list[Address]]

LOOKUP_THREADS = 4


class Resolver(Protocol):
    """Turns a host name into addresses to connect to, within a time limit."""

    def resolve(self, host: str, port: int, timeout: float) -> list[Address]:
        """The stream addresses of ``host``.

        Raises:
            TimeoutError: no answer within ``timeout`` seconds.
            socket.gaierror: the name does not resolve.
        """
        ...


class SystemResolver:
    """The system's ``getaddrinfo``, on a fixed pool of threads, waited for until the deadline."""

    def __init__(self, lookup: Lookup = socket.getaddrinfo, threads: int = LOOKUP_THREADS) -> None:
        self.lookup = lookup
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dip-lookup")

    def resolve(self, host: str, port: int, timeout: float) -> list[Address]:
        """The addresses of ``host``; ``TimeoutError`` once ``timeout`` seconds have passed."""
        if _is_ip(host):
            return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        future = self._pool.submit(self.lookup, host, port, 0, socket.SOCK_STREAM)
        try:
            return future.result(timeout=max(timeout, 0.0))
        except TimeoutError:
            future.cancel()  # still queued: it never runs; running: it ends on its own thread
            raise TimeoutError(f"looking up {host} took more than {timeout:.3g}s") from None

    def close(self) -> None:
        """Stop taking lookups; threads still waiting on the system resolver end on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class StaticResolver:
    """The in-memory fake: every name in ``hosts`` resolves to its IP address, others fail."""

    def __init__(self, hosts: Mapping[str, str]) -> None:
        self.hosts = dict(hosts)

    def resolve(self, host: str, port: int, timeout: float) -> list[Address]:
        """The address ``hosts`` gives ``host`` (an IP literal is its own address)."""
        address = host if _is_ip(host) else self.hosts.get(host)
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not a known name")
        return socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

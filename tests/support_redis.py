"""A Redis client that counts its round trips to the server.

Every request redis-py sends (one command, or a whole pipeline) goes through
``Connection.send_packed_command`` once, so counting those calls counts round trips.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from tests.conftest import REDIS_URL


class CountingConnection(redis.Connection):
    """A connection that adds one to its client's counter per request sent."""

    def __init__(self, *args: Any, counter: RoundTrips, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.counter.add(command)
        super().send_packed_command(command, check_health)


class RoundTrips:
    """How many requests went to Redis, and the first word of each (for failure messages)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[str] = []

    def add(self, command: Any) -> None:
        first = command[0] if isinstance(command, list) and command else command
        words = bytes(first).split(b"\r\n")
        name = words[2].decode(errors="replace") if len(words) > 2 else "?"
        with self._lock:
            self.sent.append(name)

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()

    @property
    def count(self) -> int:
        return len(self.sent)


def counting_client() -> tuple[redis.Redis, RoundTrips]:
    """A client on the test Redis whose requests are counted; close it when done."""
    counter = RoundTrips()
    client = redis.Redis.from_url(
        REDIS_URL,
        socket_timeout=2,
        connection_class=CountingConnection,
        counter=counter,
    )
    client.ping()  # the connection handshake (HELLO, CLIENT SETINFO) is not a webhook's cost
    counter.reset()
    return client, counter

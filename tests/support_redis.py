"""A Redis client that counts its round trips, per node, on any topology.

Every request redis-py sends (one command, or a whole pipeline) to one node goes through
``Connection.send_packed_command`` once, so counting those calls counts round trips; a cluster
pipeline that touches two shards is two. The connection handshake (HELLO, CLIENT SETINFO) is
not counted: a webhook does not pay it, the worker's pooled connection already did.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel, SentinelManagedConnection

from context.redis_client import Topology, topology_of
from context.redis_url import parse_redis_url
from tests.conftest import REDIS_URL


class RoundTrips:
    """Requests sent to Redis: the first word of each (for failure messages) and the node."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[str] = []
        self.nodes: list[str] = []

    def add(self, command: Any, node: str) -> None:
        first = command[0] if isinstance(command, list) and command else command
        words = bytes(first).split(b"\r\n")
        name = words[2].decode(errors="replace") if len(words) > 2 else "?"
        with self._lock:
            self.sent.append(name)
            self.nodes.append(node)

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()
            self.nodes.clear()

    @property
    def count(self) -> int:
        return len(self.sent)

    def nodes_of(self, command: str) -> list[str]:
        """The node each ``command`` request went to, in order."""
        return [node for sent, node in zip(self.sent, self.nodes, strict=True) if sent == command]

    @property
    def per_node(self) -> dict[str, int]:
        """Requests sent to each node (``host:port``)."""
        return dict(Counter(self.nodes))


class _Counting:
    """Mixed into a connection class: count each request, not the handshake."""

    counter: RoundTrips
    host: str
    port: int
    _handshaking = False

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self._handshaking = True
        try:
            super().on_connect_check_health(check_health)  # type: ignore[misc]
        finally:
            self._handshaking = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._handshaking:
            self.counter.add(command, f"{self.host}:{self.port}")
        super().send_packed_command(command, check_health)  # type: ignore[misc]


def _counting(base: type[redis.Connection], counter: RoundTrips) -> type[redis.Connection]:
    return type(f"Counting{base.__name__}", (_Counting, base), {"counter": counter})


def counting_client(like: Any = None) -> tuple[Any, RoundTrips]:
    """A client on the same topology as ``like`` (default the single test Redis), counted.

    ``like`` is a ``redis_client`` fixture value; the new client shares its key prefix. Close
    the client when done.
    """
    counter = RoundTrips()
    url = REDIS_URL if like is None else like.omnivoice_url
    topology = Topology.SINGLE if like is None else topology_of(like)
    target = parse_redis_url(url)
    client: Any
    if topology is Topology.CLUSTER:
        host, port = target.nodes[0]
        client = RedisCluster.from_url(  # the URL form: only it gives nodes a connection class
            f"redis://{host}:{port}",
            socket_timeout=2,
            connection_class=_counting(redis.Connection, counter),
        )
        client.ping(target_nodes=RedisCluster.ALL_NODES)
    elif topology is Topology.SENTINEL:
        assert target.service is not None
        client = Sentinel(list(target.nodes), socket_timeout=2).master_for(
            target.service,
            socket_timeout=2,
            connection_class=_counting(SentinelManagedConnection, counter),
        )
        client.ping()
    else:
        client = redis.Redis.from_url(
            url, socket_timeout=2, connection_class=_counting(redis.Connection, counter)
        )
        client.ping()
    if like is not None:
        client.test_prefix = like.test_prefix
    counter.reset()
    return client, counter

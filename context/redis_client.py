"""Connecting to Redis (one server, a Cluster or a Sentinel-watched master), or to a stand-in.

With ``REDIS_URL`` set (see :mod:`context.redis_url` for its forms), a real client with short
timeouts is made: a webhook is dead air for the caller, so Redis trouble must surface in well
under a second (and become a graceful fallback), not after Twilio's 15-second limit. Nothing
connects until the first command, so the app, ``flask flows validate`` and the simulator start
with Redis down. Without a URL, :mod:`fakeredis` (with Lua support) serves one process; that is
fine for a demo and loudly wrong for production.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from context.redis_url import RedisTarget, Topology, parse_redis_url

log = logging.getLogger(__name__)

# The errors that mean "the store is unavailable" (one list, in context.redis_errors), under the
# name the session store and the event stream import.

EMBEDDED_WARNING = (
    "REDIS_URL is not set: sessions live in an in-process fakeredis. They are NOT shared between "
    "workers and NOT durable; run one worker, and set REDIS_URL for anything but a demo."
)

__all__ = ["LazyCluster", "Topology", "cluster_of", "connect", "socket_timeout_of", "topology_of"]


def connect(url: str | None, timeout: float = 0.5, dev_mode: bool = True) -> redis.Redis:
    """A Redis client for ``url``, or the embedded stand-in when ``url`` is empty.

    For ``redis+cluster://`` the client is a :class:`LazyCluster`, which has the command API of
    :class:`redis.cluster.RedisCluster` (not a subclass of :class:`redis.Redis`, whatever the
    annotation says: the session store uses only the commands both have).

    Outside dev mode the stand-in is an error worth shouting about (each gunicorn worker would
    keep its own sessions); the app still starts, so designers' CLI commands work without Redis,
    but ``/healthz`` reports it unfit to serve.

    Raises:
        ConfigError: ``url`` is malformed (the message names ``REDIS_URL``).
    """
    if not url:
        import fakeredis

        if dev_mode:
            log.warning(EMBEDDED_WARNING)
        else:
            log.error("%s Set REDIS_URL, or OMNIVOICE_DEV=1 for a demo.", EMBEDDED_WARNING)
        return fakeredis.FakeRedis()
    target = parse_redis_url(url)
    if target.topology is Topology.CLUSTER:
        return cast(
            "redis.Redis", LazyCluster(lambda: _cluster(target, timeout), target.masked, timeout)
        )
    if target.topology is Topology.SENTINEL:
        return _sentinel_master(target, timeout)
    # One immediate retry heals a connection Redis dropped (a restart); more would only
    # lengthen the silence before the caller's fallback. No health-check PINGs: they would add
    # a round trip to the first webhook after an idle spell.
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=_one_retry()
    )


def _one_retry() -> Retry:
    return Retry(NoBackoff(), 1)


def _cluster(target: RedisTarget, timeout: float) -> RedisCluster:
    """A connected cluster client, set to give up fast.

    One retry after the client re-reads the slot map (a shard that just failed over answers
    it); ``require_full_coverage=False`` keeps the healthy shards serving while one shard has
    no master. Each node's own connections never retry: the cluster client does, knowing the
    layout.
    """
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_one_retry(),
        require_full_coverage=False,
    )


def _sentinel_master(target: RedisTarget, timeout: float) -> redis.Redis:
    """A client of the master the Sentinels name; it asks them again after a failover.

    Each Sentinel is asked once, never retried: the next Sentinel in the list is the retry.
    """
    sentinels = Sentinel(
        list(target.nodes),
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        },
    )
    assert target.service is not None  # parse_redis_url requires it
    return sentinels.master_for(
        target.service,
        db=target.db,
        username=target.username,
        password=target.password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_one_retry(),
    )


class LazyCluster:
    """A :class:`RedisCluster` built at its first command (its constructor contacts the seeds).

    Every attribute is the built client's. If no seed answers (or none knows a master), the
    command raises
    :class:`redis.ConnectionError` (a store outage, like any other) and the next command tries
    again.
    """

    def __init__(
        self, build: Callable[[], RedisCluster], seeds: str, timeout: float | None = None
    ) -> None:
        self._build = build
        self.timeout = timeout  # each node's socket timeout, known before the client is built
        self._seeds = seeds
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> RedisCluster:
        """The cluster client, built now if it was not yet."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._build()
                    # IndexError: redis-py's way of saying the layout has no master at all
                    except (RedisClusterException, RedisError, OSError, IndexError) as exc:
                        raise redis.ConnectionError(
                            f"no seed node of {self._seeds} gave a usable cluster layout: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
        return self._client

    @property
    def built(self) -> bool:
        """Whether the client exists yet (nothing connected before that)."""
        return self._client is not None

    def close(self) -> None:
        """Close the client's connections, if it was ever built."""
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f"LazyCluster({self._seeds}, built={self.built})"


def topology_of(client: object) -> Topology:
    """Whether ``client`` talks to one server, a cluster, or a master found through Sentinels."""
    if isinstance(client, LazyCluster | RedisCluster):
        return Topology.CLUSTER
    if isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool):
        return Topology.SENTINEL
    return Topology.SINGLE


def cluster_of(client: object) -> RedisCluster:
    """The :class:`RedisCluster` behind ``client`` (building a :class:`LazyCluster`)."""
    if isinstance(client, LazyCluster):
        return client.client
    return cast("RedisCluster", client)


def socket_timeout_of(client: object) -> float | None:
    """How long ``client`` waits for a reply before giving up (``None``: forever, or unknown)."""
    if isinstance(client, LazyCluster):
        return client.timeout
    if isinstance(client, RedisCluster):
        kwargs: dict[str, Any] = client.get_connection_kwargs()
    else:
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None) or {}
    timeout = kwargs.get("socket_timeout")
    return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None

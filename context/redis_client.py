"""Connecting to Redis, or to an in-process stand-in for demos.

With ``REDIS_URL`` set, a real client with short timeouts is made: a webhook is dead air for the
caller, so Redis trouble must surface in well under a second (and become a graceful fallback),
not after Twilio's 15-second limit. Without it, :mod:`fakeredis` (with Lua support) serves one
process; that is fine for a demo and loudly wrong for production.
"""

from __future__ import annotations

import logging

import redis
from redis import exceptions as errors
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# What "the store is unavailable" looks like from redis-py: no answer, a cluster that is down or
# failing over, a replica that was a master a moment ago, a server out of memory. Each becomes
# the caller's spoken fallback (and a "store unavailable" log line), never an unexpected failure.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    errors.ConnectionError,  # includes sentinel's MasterNotFoundError
    errors.TimeoutError,
    ConnectionError,
    OSError,
    errors.ClusterError,  # ClusterDownError, MasterDownError
    errors.TryAgainError,
    errors.ReadOnlyError,
    errors.OutOfMemoryError,
    errors.BusyLoadingError,
    errors.SlotNotCoveredError,
    errors.RedisClusterException,  # no seed node of a cluster answered
)

EMBEDDED_WARNING = (
    "REDIS_URL is not set: sessions live in an in-process fakeredis. They are NOT shared between "
    "workers and NOT durable; run one worker, and set REDIS_URL for anything but a demo."
)


def connect(url: str | None, timeout: float = 0.5, dev_mode: bool = True) -> redis.Redis:
    """A Redis client for ``url``, or the embedded stand-in when ``url`` is empty.

    Outside dev mode the stand-in is an error worth shouting about (each gunicorn worker would
    keep its own sessions); the app still starts, so designers' CLI commands work without Redis,
    but ``/healthz`` reports it unfit to serve.
    """
    if not url:
        import fakeredis

        if dev_mode:
            log.warning(EMBEDDED_WARNING)
        else:
            log.error("%s Set REDIS_URL, or OMNIVOICE_DEV=1 for a demo.", EMBEDDED_WARNING)
        return fakeredis.FakeRedis()
    # One immediate retry heals a connection Redis dropped (a restart); more would only
    # lengthen the silence before the caller's fallback. No health-check PINGs: they would add
    # a round trip to the first webhook after an idle spell.
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )

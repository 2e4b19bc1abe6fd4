"""The Dramatiq broker ``QUEUE_URL`` names: Redis (one server or Sentinel), RabbitMQ, or in-process.

- ``redis://``, ``rediss://``, ``redis+sentinel://h:p,h:p/SERVICE``: a :class:`RedisBroker` on a
  client made by :func:`context.redis_client.connect` (the same URL forms as ``REDIS_URL``). Its
  keys live under ``{REDIS_KEY_PREFIX}:jobs``.
- ``amqp://`` / ``amqps://``: a :class:`RabbitmqBroker`; the choice where sessions run on a Redis
  Cluster.
- ``redis+cluster://`` is refused: Dramatiq's Redis scripts touch keys in several slots.
- Unset: the sessions' Redis when it is not a cluster (``REDIS_URL``, or the client the app was
  given); in dev mode with no Redis at all, a :class:`StubBroker` served by a worker thread in
  the web process (the embedded demo). With neither, there is no queue: messages stay in the
  event stream, unsent, and the start-up log says so.

Nothing here connects: Redis and RabbitMQ are reached at the first message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dramatiq import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from context.redis_client import Topology, connect, topology_of
from context.redis_url import masked_url, parse_redis_url
from ivr.errors import ConfigError

log = logging.getLogger(__name__)

SETTING = "QUEUE_URL"
REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel")
AMQP_SCHEMES = ("amqp", "amqps")
HEARTBEAT_TIMEOUT_MS = 60_000  # a Redis worker silent this long is dead: its messages go back
NOT_CLUSTER_SAFE = (
    "the job queue's Redis scripts touch keys in several slots, so they cannot run on a Redis "
    "Cluster; use RabbitMQ (amqp://user:pass@host:5672/) or a separate Redis (redis://...)."
)
NO_QUEUE = (
    "no job queue: QUEUE_URL is not set and the sessions' Redis is a cluster (or there is none); "
    "texts and emails stay in the event stream unsent until QUEUE_URL names RabbitMQ or a Redis."
)


@dataclass(frozen=True)
class QueueTarget:
    """What kind of broker to build, and where it is (``url`` ``None``: the sessions' Redis)."""

    kind: str  # "redis", "rabbitmq", "stub"
    url: str | None = None

    @property
    def masked(self) -> str:
        """Where the queue is, fit for a log line."""
        return (
            masked_url(self.url)
            if self.url
            else "the sessions' Redis"
            if self.kind == "redis"
            else "this process"
        )


def check_queue_url(raw: str | None) -> QueueTarget | None:
    """The broker ``QUEUE_URL`` names, or ``None`` when it is unset.

    Raises:
        ConfigError: an unknown scheme, a Redis Cluster, or a URL that does not parse.
    """
    url = (raw or "").strip()
    if not url:
        return None
    scheme = url.partition("://")[0].lower()
    if scheme == "redis+cluster":
        raise ConfigError(SETTING, masked_url(url), NOT_CLUSTER_SAFE)
    if scheme in REDIS_SCHEMES:
        try:
            parse_redis_url(url)
        except ConfigError as exc:
            raise ConfigError(SETTING, masked_url(url), exc.reason) from None
        return QueueTarget("redis", url)
    if scheme in AMQP_SCHEMES:
        if not urlsplit(url).hostname:
            raise ConfigError(
                SETTING, masked_url(url), "it names no host, as in amqp://host:5672/."
            )
        return QueueTarget("rabbitmq", url)
    raise ConfigError(
        SETTING,
        masked_url(url),
        "it must be a Redis URL (redis://, rediss://, redis+sentinel://) or a RabbitMQ URL "
        "(amqp://, amqps://).",
    )


def target_of(config: dict[str, Any] | Any, sessions_redis: Any) -> QueueTarget | None:
    """The queue to use under ``config`` beside the sessions' Redis client ``sessions_redis``."""
    explicit = check_queue_url(config.get("QUEUE_URL"))
    if explicit is not None:
        return explicit
    if sessions_redis is not None and topology_of(sessions_redis) is not Topology.CLUSTER:
        given = config.get("REDIS_CLIENT") is not None or bool(config.get("REDIS_URL"))
        if given:
            return QueueTarget("redis", None)
    if config.get("DEV_MODE"):
        return QueueTarget("stub", None)
    return None


def build_broker(
    target: QueueTarget,
    sessions_redis: Any,
    prefix: str,
    *,
    heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
    maintenance_chance: int | None = None,
    redis_timeout: float = 5.0,
) -> Broker:
    """A broker for ``target`` (nothing connects yet), with the current-message middleware."""
    broker: Broker
    if target.kind == "redis":
        client = sessions_redis
        if target.url is not None:
            # The worker blocks on the queue for seconds: a longer socket timeout than a webhook's.
            client = connect(target.url, timeout=redis_timeout, dev_mode=False)
        extra = {} if maintenance_chance is None else {"maintenance_chance": maintenance_chance}
        broker = RedisBroker(
            client=client,
            namespace=f"{prefix}:jobs",
            heartbeat_timeout=heartbeat_timeout_ms,
            **extra,
        )
    elif target.kind == "rabbitmq":
        broker = RabbitmqBroker(url=target.url, confirm_delivery=True)
    else:
        broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    return broker

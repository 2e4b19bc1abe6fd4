"""What ``/healthz`` checks: that the session store really serves, and that flows can serve.

Each check is one line, ``name: ok|FAIL: detail``, so an operator reads at once what failed.
The store is checked for what can really go wrong, per topology: a single server must answer
PING and accept a write; on a Cluster every master must be reachable, report
``cluster_state:ok`` and accept a write to one of its own slots; with Sentinel, the master the
Sentinels name must answer, say ``role:master`` and accept a write. A write refused (OOM,
READONLY) is a failure. The writes are a short-TTL key under the configured prefix. Flows: at
least one must serve; each refused file gets a ``degraded:`` line with its path, its first
problem and, when it had loaded before, the version that still serves in its place. A consumer
of the event stream (the history writer, the handoff webhook, the outbox relay of texts and
emails) more than a minute behind gets a ``degraded:`` line too. The answer is 503 when a check
fails, else 200 (with the ``degraded:`` lines, if any).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from context.event_stream import EventStream
from context.keys import Keys
from context.redis_client import Topology, cluster_of, topology_of
from context.redis_errors import is_store_unavailable
from ivr.catalog import Catalog

HEALTH_TTL_MS = 10_000
CONSUMER_LAG = 60.0  # seconds a consumer of the event stream may be behind before it is said
MESSAGE_LIMIT = 200
_SLOT_SEARCH = 100_000  # tags tried to find a key in a master's slots (a few hundred suffice)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        if self.name == "degraded":
            return f"degraded: {self.detail}"
        return f"{self.name}: {'ok' if self.ok else 'FAIL'}: {self.detail}"


@dataclass(frozen=True)
class Report:
    """Every check, and the HTTP status they add up to."""

    checks: list[Check]

    @property
    def status(self) -> int:
        return 200 if all(c.ok for c in self.checks) else 503

    @property
    def text(self) -> str:
        return "".join(f"{c}\n" for c in self.checks)


def report(
    connection: Any,
    keys: Keys,
    catalog: Catalog,
    unshared: bool = False,
    stream: EventStream | None = None,
    consumers: Mapping[str, str] | None = None,
) -> Report:
    """Run every check. ``unshared``: the store is the in-process stand-in, unfit to serve;
    ``consumers`` (group → what it is) are the event stream's consumers to report on."""
    if unshared:
        store = [
            Check(
                "redis",
                False,
                "no REDIS_URL: sessions are not shared or durable (set OMNIVOICE_DEV=1 for a demo)",
            )
        ]
    else:
        store = check_store(connection, keys)
    behind = check_consumers(stream, consumers) if stream is not None and consumers else []
    return Report([*store, *check_flows(catalog), *behind])


def check_consumers(stream: EventStream, consumers: Mapping[str, str]) -> list[Check]:
    """A ``degraded:`` line for each consumer of the event stream that is more than
    :data:`CONSUMER_LAG` seconds behind (its worker stopped, or what it writes to is down).
    Webhooks do not wait on consumers, so this never fails the check; nor does Redis being
    down, which the store's line says already."""
    try:
        ages = stream.behind(list(consumers))
    except Exception:  # the store's check reports Redis; this line has nothing to add
        return []
    return [
        Check(
            "degraded",
            True,
            f"the {consumers[group]} is {age:.0f} s behind on the event stream (is "
            "`flask --app app worker` running, and what it writes to answering?)",
        )
        for group, age in ages.items()
        if age > CONSUMER_LAG
    ]


def check_store(connection: Any, keys: Keys) -> list[Check]:
    """The store's lines, for the topology of ``connection``."""
    topology = topology_of(connection)
    try:
        if topology is Topology.CLUSTER:
            return _cluster(cluster_of(connection), keys)
        if topology is Topology.SENTINEL:
            return [_sentinel(connection, keys)]
        return [_single(connection, keys)]
    except Exception as exc:  # a health check reports every failure, it never raises
        return [Check("redis", False, f"{topology} store: {_failure(exc)}")]


def _single(connection: Any, keys: Keys) -> Check:
    where = _address(connection)
    connection.ping()
    connection.set(keys.health("single"), "1", px=HEALTH_TTL_MS)
    return Check("redis", True, f"single server {where} answers PING and accepts writes")


def _sentinel(connection: Any, keys: Keys) -> Check:
    pool = connection.connection_pool
    host, port = pool.get_master_address()  # asks the Sentinels (MasterNotFoundError if none)
    where = f"sentinel master {pool.service_name!r} at {host}:{port}"
    try:
        role = _fields(connection.execute_command("INFO", "replication")).get("role")
        if role != "master":
            return Check("redis", False, f"{where} says role:{role}, not role:master")
        connection.set(keys.health("sentinel"), "1", px=HEALTH_TTL_MS)
    except Exception as exc:
        return Check("redis", False, f"{where}: {_failure(exc)}")
    return Check("redis", True, f"{where} answers as role:master and accepts writes")


def _cluster(cluster: RedisCluster, keys: Keys) -> list[Check]:
    cluster.nodes_manager.initialize()  # read the layout now: a failover may have changed it
    checks = [_cluster_master(cluster, node, keys) for node in cluster.get_primaries()]
    return checks or [Check("redis", False, "cluster has no master")]


def _cluster_master(cluster: RedisCluster, node: ClusterNode, keys: Keys) -> Check:
    where = f"cluster master {node.name}"
    try:
        client = node.redis_connection or cluster.get_redis_connection(node)
        state = _fields(client.execute_command("CLUSTER INFO")).get("cluster_state")
        if state != "ok":
            return Check("redis", False, f"{where} reports cluster_state:{state}")
        client.set(_key_on(cluster, node, keys), "1", px=HEALTH_TTL_MS)
    except Exception as exc:
        return Check("redis", False, f"{where}: {_failure(exc)}")
    return Check("redis", True, f"{where} is reachable, cluster_state:ok, accepts writes")


def _key_on(cluster: RedisCluster, node: ClusterNode, keys: Keys) -> str:
    """A health key whose slot ``node`` serves."""
    for n in range(_SLOT_SEARCH):
        key = keys.health(str(n))
        owner = cluster.nodes_manager.slots_cache.get(key_slot(key.encode()))
        if owner and owner[0].name == node.name:
            return key
    raise LookupError(f"no slot of {node.name} found")


def check_flows(catalog: Catalog) -> list[Check]:
    """One line for the flows that serve, and a ``degraded:`` line per refused file."""
    serving = catalog.flows()
    refused = catalog.refused()
    if serving:
        lines = [Check("flows", True, f"{len(serving)} flow(s) serving")]
    else:
        lines = [Check("flows", False, f"no flow can serve ({len(refused)} file(s) refused)")]
    by_path = {flow.path: flow for flow in serving}
    for path, problem in refused.items():
        kept = by_path.get(str(path))
        still = f" (its last good version {kept.version} still serves)" if kept else ""
        lines.append(Check("degraded", True, f"refused: {problem}{still}"))
    return lines


def _failure(exc: BaseException) -> str:
    kind = "unavailable" if is_store_unavailable(exc) else "failed"
    text = str(exc)  # redis-py puts whole client reprs in some messages: keep the line short
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return f"{kind}: {type(exc).__name__}: {text}"


def _address(connection: Any) -> str:
    kwargs = getattr(getattr(connection, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}" if kwargs else "(in-process)"


def _fields(reply: Any) -> dict[str, str]:
    """``name:value`` lines of an INFO-style reply (redis-py may have parsed it already)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    pairs = (line.strip().partition(":") for line in text.splitlines())
    return {name: value for name, sep, value in pairs if sep}

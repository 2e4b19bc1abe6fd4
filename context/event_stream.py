"""The event stream: every event a saved turn recorded, in Redis Streams, for other processes.

The history writer and the agent console read it with consumer groups (``XREADGROUP``), so each
consumer gets every entry, a crashed one finds its unacknowledged entries again, and an entry id
doubles as a Server-Sent Events id (``<shard>-<entry id>``) to resume a stream from.

The stream is sharded by caller (``omnivoice:events:0`` .. ``:N-1``): one caller's events stay in
order in one shard, and no single key (on Redis Cluster, no single node) takes every webhook's
writes. Each shard is capped (``XADD MAXLEN ~``) and expires when nothing was written to it for
``ttl`` seconds, like every key Omnivoice writes.

How events get here depends on the topology (see :meth:`context.sessions.SessionStore.save`):
on a single Redis or a Sentinel-managed one the save script appends them atomically with the
session (they exist if and only if the save stood, in the same round trip). On Redis Cluster the
shard lives in another slot than the caller's session, so the store appends them right after the
save stood (:meth:`EventStream.append`); a process killed between the two loses that turn's
events (the session is saved; the log line was not written either). That window is one round
trip wide; a cluster node that fails in it loses them too, and the loss is logged and counted.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from context.keys import Keys
from context.redis_errors import STORE_UNAVAILABLE, describe

log = logging.getLogger(__name__)
# What appending can fail with: an outage, or a refusal (a stream key that holds another type).
_STREAM_ERRORS: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, redis.ResponseError)

FIELD = "e"  # each entry holds one field: the event's JSON document
DEFAULT_SHARDS = 8
DEFAULT_MAXLEN = 100_000  # entries per shard, approximately (XADD MAXLEN ~)
DEFAULT_TTL = 7 * 86400


@dataclass(frozen=True)
class Entry:
    """One event read back from the stream, with the id to acknowledge it by."""

    shard: int
    id: str
    event: dict[str, Any]

    @property
    def sse_id(self) -> str:
        """The id to give this entry as a Server-Sent Events ``id:``."""
        return f"{self.shard}-{self.id}"


@dataclass(frozen=True)
class Pending:
    """An entry a consumer group was given and has not acknowledged yet."""

    shard: int
    id: str
    consumer: str
    idle_ms: int  # since it was last given to a consumer
    deliveries: int  # how many times it was given (read or claimed)

    @property
    def created_at(self) -> float:
        """When the entry was appended (its id's milliseconds), in epoch seconds."""
        return int(self.id.partition("-")[0]) / 1000


class EventStream:
    """The sharded Redis Stream of events, and its consumer-group reads."""

    def __init__(
        self,
        connection: Any,
        keys: Keys,
        shards: int = DEFAULT_SHARDS,
        maxlen: int = DEFAULT_MAXLEN,
        ttl: int = DEFAULT_TTL,
    ) -> None:
        if shards < 1:
            raise ValueError("the event stream needs at least one shard")
        self.redis = connection
        self.keys = keys
        self.shards = shards
        self.maxlen = maxlen
        self.ttl = ttl

    def shard_of(self, caller: str) -> int:
        """The shard a caller's events go to (stable across processes)."""
        return zlib.crc32(caller.encode("utf-8")) % self.shards

    def key_for(self, caller: str) -> str:
        """The stream key of a caller's shard."""
        return self.keys.events(self.shard_of(caller))

    @staticmethod
    def encode(event: Mapping[str, Any]) -> bytes:
        """An event as the bytes stored in its entry."""
        return orjson.dumps(event, default=str)

    def append(self, caller: str, events: Sequence[bytes]) -> bool:
        """Append encoded ``events`` of one caller (the Cluster path); ``False`` if Redis failed."""
        if not events:
            return True
        key = self.key_for(caller)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(key, {FIELD: event}, maxlen=self.maxlen, approximate=True)
                pipe.expire(key, self.ttl)
                pipe.execute()
        except _STREAM_ERRORS as exc:  # the save stood: never raise
            log.error(
                "lost %d event(s): the event stream did not answer: %s", len(events), describe(exc)
            )
            return False
        return True

    # ---- consumers ------------------------------------------------------------------------
    def behind(self, groups: Sequence[str], now: float | None = None) -> dict[str, float]:
        """How far each of ``groups`` is behind: the age in seconds of the oldest entry it has
        not been given yet, on any shard (0 when it is caught up), by the stream's ids against
        ``now`` (this box's clock). A group that exists on no shard (its consumer never ran) is
        left out. Two round trips on one Redis; on a Cluster, one command per shard and group.

        Raises:
            redis.RedisError: Redis did not answer.
        """
        now_ms = int((time.time() if now is None else now) * 1000)
        wanted = set(groups)
        keys = [self.keys.events(shard) for shard in range(self.shards)]
        found = self._each([("xinfo_groups", (key,), {}) for key in keys])
        given: list[tuple[str, str, str]] = []  # key, group, the last id it was given
        for key, infos in zip(keys, found, strict=True):
            if isinstance(infos, Exception):
                continue  # a shard that does not exist yet: nothing on it to be behind on
            for info in infos:
                name = _text(info.get("name"))
                if name in wanted:
                    given.append((key, name, _text(info.get("last-delivered-id")) or "0-0"))
        ages = dict.fromkeys(sorted({name for _, name, _ in given}), 0.0)
        nexts = self._each(
            [("xrange", (key,), {"min": f"({last}", "count": 1}) for key, _, last in given]
        )
        for (_, name, _), entries in zip(given, nexts, strict=True):
            if entries and not isinstance(entries, Exception):
                created_ms = int(_text(entries[0][0]).split("-", 1)[0])
                ages[name] = max(ages[name], max(0, now_ms - created_ms) / 1000)
        return ages

    def _each(self, commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        """Run ``commands`` (name, args, kwargs); a command's error is its result. One round
        trip on one Redis; one per command on a Cluster (its keys sit on several nodes)."""
        if not commands:
            return []
        if isinstance(self.redis, RedisCluster):
            results: list[Any] = []
            for name, args, kwargs in commands:
                try:
                    results.append(getattr(self.redis, name)(*args, **kwargs))
                except redis.ResponseError as exc:
                    results.append(exc)
            return results
        with self.redis.pipeline(transaction=False) as pipe:
            for name, args, kwargs in commands:
                getattr(pipe, name)(*args, **kwargs)
            return list(pipe.execute(raise_on_error=False))

    def ensure_group(self, group: str, start: str = "0") -> None:
        """Create consumer group ``group`` on every shard (and the shard), if missing."""
        for shard in range(self.shards):
            try:
                self.redis.xgroup_create(self.keys.events(shard), group, id=start, mkstream=True)
            except Exception as exc:  # redis.ResponseError BUSYGROUP: it exists already
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(
        self, group: str, consumer: str, count: int = 100, pending: bool = False
    ) -> list[Entry]:
        """New entries for ``consumer`` of ``group`` across all shards (its pending ones with
        ``pending``), without blocking: one XREADGROUP per shard, all in one round trip."""
        start = "0" if pending else ">"
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                pipe.xreadgroup(group, consumer, {self.keys.events(shard): start}, count=count)
            replies = pipe.execute()
        entries: list[Entry] = []
        for shard, reply in enumerate(replies):
            for _stream, items in reply or []:
                entries.extend(_entries(shard, items))
        return entries

    def claim(self, group: str, consumer: str, min_idle_ms: int, count: int = 100) -> list[Entry]:
        """Entries other consumers of ``group`` read but left unacknowledged for ``min_idle_ms``
        (a crashed reader's), now ``consumer``'s (``XAUTOCLAIM`` per shard, one round trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                key = self.keys.events(shard)
                pipe.xautoclaim(key, group, consumer, min_idle_ms, "0-0", count=count)
            replies = pipe.execute()
        entries: list[Entry] = []
        for shard, reply in enumerate(replies):
            entries.extend(_entries(shard, reply[1] if reply else []))
        return entries

    def pending(self, group: str, min_idle_ms: int = 0, count: int = 100) -> list[Pending]:
        """Entries of ``group`` read but not acknowledged (by any consumer) for at least
        ``min_idle_ms``, with how often each was delivered (``XPENDING`` per shard, one round
        trip): what a consumer that retries with a growing pause looks at."""
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                key = self.keys.events(shard)
                pipe.xpending_range(key, group, "-", "+", count, idle=min_idle_ms or None)
            replies = pipe.execute()
        return [
            Pending(
                shard,
                _text(item["message_id"]),
                _text(item["consumer"]),
                int(item["time_since_delivered"]),
                int(item["times_delivered"]),
            )
            for shard, reply in enumerate(replies)
            for item in reply or []
        ]

    def claim_ids(
        self, group: str, consumer: str, min_idle_ms: int, pending: Sequence[Pending]
    ) -> list[Entry]:
        """The ``pending`` entries still idle for ``min_idle_ms``, now ``consumer``'s (``XCLAIM``
        per shard, one round trip). An entry another consumer took meanwhile is not returned,
        nor one trimmed from the stream (Redis drops it from the pending list)."""
        by_shard = _ids_by_shard(pending)
        if not by_shard:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.xclaim(self.keys.events(shard), group, consumer, min_idle_ms, ids)
            replies = pipe.execute()
        entries: list[Entry] = []
        for shard, reply in zip(by_shard, replies, strict=True):
            entries.extend(_entries(shard, reply))
        return entries

    def keep(self, group: str, consumer: str, entries: Sequence[Entry]) -> None:
        """Reset the idle time of ``entries`` (still being handled by ``consumer``), so no other
        consumer takes them for a crashed one's (``XCLAIM JUSTID``, one round trip)."""
        by_shard = _ids_by_shard(entries)
        if not by_shard:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.xclaim(self.keys.events(shard), group, consumer, 0, ids, justid=True)
            pipe.execute()

    def ack(self, group: str, entries: Sequence[Entry]) -> int:
        """Acknowledge ``entries`` (after they were handled); the number acknowledged."""
        shards = sorted({entry.shard for entry in entries})
        if not shards:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                ids = [entry.id for entry in entries if entry.shard == shard]
                pipe.xack(self.keys.events(shard), group, *ids)
            return sum(int(done) for done in pipe.execute())

    def since(self, sse_id: str, count: int = 100) -> list[Entry]:
        """Entries of ``sse_id``'s shard after it (an SSE client reconnecting with
        ``Last-Event-ID``)."""
        shard_text, _, entry_id = sse_id.partition("-")
        shard = int(shard_text)
        if not 0 <= shard < self.shards or not entry_id:
            raise ValueError(f"not an event id of this stream: {sse_id!r}")
        reply = self.redis.xrange(self.keys.events(shard), min=f"({entry_id}", count=count)
        return [
            Entry(shard, _text(entry_id), orjson.loads(fields.get(FIELD.encode()) or b"{}"))
            for entry_id, fields in reply
        ]


def _ids_by_shard(entries: Sequence[Entry | Pending]) -> dict[int, list[str]]:
    by_shard: dict[int, list[str]] = {}
    for entry in entries:
        by_shard.setdefault(entry.shard, []).append(entry.id)
    return by_shard


def _entries(shard: int, items: Any) -> list[Entry]:
    """The entries of one shard's reply (an entry without our field, or deleted, is skipped)."""
    found = []
    for entry_id, fields in items or []:
        raw = (fields or {}).get(FIELD.encode()) or (fields or {}).get(FIELD)
        if raw is not None:
            found.append(Entry(shard, _text(entry_id), orjson.loads(raw)))
    return found


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)

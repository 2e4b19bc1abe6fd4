"""The agents' live feed: one capped Redis Stream of what the console shows, replayable by id.

Handoffs (with their bundle), queue positions, transfer results, call endings of transferred
callers, callback requests and what agents do (take a call, write a note) are appended here
after the save that recorded them stood. A console's Server-Sent Events stream reads it with
``XREAD BLOCK`` from the id it last saw, and that id is the SSE ``id:``, so a browser that
reconnects with ``Last-Event-ID`` gets exactly what it missed (Redis pub/sub would drop it).

Every entry is one event document of the event schema (``conversation.events``), already
masked: nothing sensitive is ever written here. The stream is a single key (it takes a few
entries per transfer, not every webhook's events), so it works alike on a single Redis,
Sentinel and Cluster; it is capped (``MAXLEN ~``) and expires when idle for ``ttl``.

Blocking reads go through ``reader``: a client of their own whose socket timeout is long (the
app makes one for ``REDIS_URL``), so an idle console costs one read every few seconds, not
several a second; the webhooks' client keeps its short timeout (a caller must never wait on a
dead Redis). :meth:`AgentFeed.read` blocks for less than the reader's timeout (at most
:data:`LONGEST_BLOCK_MS`), and callers loop. A blocked read holds one pooled connection of the
reader and no thread of its own beyond its caller.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from context.keys import Keys
from context.redis_client import socket_timeout_of
from context.redis_errors import STORE_UNAVAILABLE, describe

log = logging.getLogger(__name__)

FIELD = "e"
DEFAULT_MAXLEN = 10_000
DEFAULT_TTL = 7 * 86400
LONGEST_BLOCK_MS = 10_000  # below the console's 15 s heartbeat, so a quiet stream still beats
_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")


@dataclass(frozen=True)
class FeedEntry:
    """One feed entry: its stream id (the SSE ``id:``) and its event document."""

    id: str
    event: dict[str, Any]


def is_entry_id(value: str) -> bool:
    """Whether ``value`` is a stream entry id (``<ms>-<seq>``), as a ``Last-Event-ID`` must be."""
    return bool(_ID.fullmatch(value))


class AgentFeed:
    """Append to and read the agents' feed."""

    def __init__(
        self,
        connection: Any,
        keys: Keys,
        maxlen: int = DEFAULT_MAXLEN,
        ttl: int = DEFAULT_TTL,
        reader: Any = None,
    ) -> None:
        self.redis = connection
        self.reader = reader if reader is not None else connection
        self.keys = keys
        self.key = keys.agent_feed()
        self.maxlen = maxlen
        self.ttl = ttl
        timeout = socket_timeout_of(self.reader)
        # Block for less than the socket timeout, so a quiet feed is not mistaken for a dead Redis.
        self.block_ms = max(50, min(LONGEST_BLOCK_MS, int((timeout or 1.0) * 600)))

    @staticmethod
    def encode(event: Mapping[str, Any]) -> bytes:
        """An event document as stored in an entry."""
        return orjson.dumps(event, default=str)

    def add(self, pipe: Any, events: Sequence[Mapping[str, Any]]) -> None:
        """Queue the appends of ``events`` (and the key's TTL) on ``pipe``."""
        for event in events:
            pipe.xadd(self.key, {FIELD: self.encode(event)}, maxlen=self.maxlen, approximate=True)
        pipe.expire(self.key, self.ttl)

    def append(self, events: Sequence[Mapping[str, Any]]) -> bool:
        """Append ``events`` in one round trip; ``False`` (logged) if Redis failed."""
        if not events:
            return True
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                self.add(pipe, events)
                pipe.execute()
        except STORE_UNAVAILABLE as exc:
            log.error("the agents' feed lost %d event(s): %s", len(events), describe(exc))
            return False
        return True

    def read(
        self, after: str, count: int = 100, block: bool = True, longest: float | None = None
    ) -> list[FeedEntry]:
        """Entries after id ``after`` (``"$"``: only new ones), waiting up to ``block_ms`` (or
        ``longest`` seconds, if shorter: a stream's heartbeat, which is also how soon it notices
        a client that left).

        Raises:
            redis errors: Redis did not answer (the caller retries or ends the stream).
        """
        wait = (
            self.block_ms if longest is None else max(10, min(self.block_ms, int(longest * 1000)))
        )
        reply = self.reader.xread({self.key: after}, count=count, block=wait if block else None)
        entries: list[FeedEntry] = []
        for _stream, items in reply or []:
            entries.extend(_entries(items))
        return entries

    def since(self, seconds_ago: float, now: float, count: int = 1000) -> list[FeedEntry]:
        """Entries of the last ``seconds_ago`` seconds (ids are Redis milliseconds), oldest first;
        the newest ``count`` of them when there are more (a busy hour must not hide new callers)."""
        start = max(0, int((now - seconds_ago) * 1000))
        newest = self.redis.xrevrange(self.key, max="+", min=f"{start}-0", count=count)
        return _entries(list(reversed(newest or [])))

    def after(self, entry_id: str, count: int = 1000) -> list[FeedEntry]:
        """Entries after ``entry_id`` without waiting (a reconnect's replay), oldest first."""
        return _entries(self.redis.xrange(self.key, min=f"({entry_id}", count=count))

    def last_id(self) -> str:
        """The id of the newest entry, ``"0-0"`` when the feed is empty."""
        newest = self.redis.xrevrange(self.key, count=1)
        return _text(newest[0][0]) if newest else "0-0"


def _entries(items: Any) -> list[FeedEntry]:
    found = []
    for entry_id, fields in items or []:
        raw = (fields or {}).get(FIELD.encode()) or (fields or {}).get(FIELD)
        if raw is not None:
            found.append(FeedEntry(_text(entry_id), orjson.loads(raw)))
    return found


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)

"""The console's Server-Sent Events stream: the agents' feed, live and replayable by id.

Each feed entry is sent as ``id: <stream id>``, ``event: <name>``, ``data: <json>``. The stream
starts after the id the browser names: its ``Last-Event-ID`` header on a reconnect, else the
``last_id`` the page was drawn at; so what happened while it was away is replayed first, then
new entries follow as Redis gives them (``XREAD BLOCK``, in short blocks). A quiet stream sends a
``: keepalive`` comment every ``heartbeat`` seconds, which keeps proxies from closing it and is
how a closed browser tab is noticed (the write fails and the server closes the generator). When
Redis does not answer, the stream sends comments only, waits a little and tries again from the
same id, so nothing is lost or doubled. The generator holds no thread and no connection of its
own: each read borrows a pooled connection for one block and gives it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import orjson

from context.agent_feed import AgentFeed, FeedEntry, is_entry_id
from context.redis_errors import STORE_UNAVAILABLE, describe

log = logging.getLogger("omnivoice.console")

RETRY_MS = 2000
BACKOFF_SECONDS = 1.0
REPLAY_PAGE = 1000


def start_id(header: str | None, query: str | None) -> str | None:
    """Where a stream starts: the valid one of ``Last-Event-ID`` then ``?last_id=``, else None."""
    for candidate in (header, query):
        if candidate and is_entry_id(candidate.strip()):
            return candidate.strip()
    return None


def newer(first: str, second: str) -> str:
    """The later of two stream ids."""

    def parts(value: str) -> tuple[int, int]:
        ms, _, seq = value.partition("-")
        return int(ms), int(seq or 0)

    return first if parts(first) >= parts(second) else second


def message(entry: FeedEntry) -> str:
    """One feed entry as an SSE message."""
    name = str(entry.event.get("name") or "message")
    data = orjson.dumps(entry.event, default=str).decode()
    return f"id: {entry.id}\nevent: {name}\ndata: {data}\n\n"


def stream(
    feed: AgentFeed,
    start: str | None,
    heartbeat: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    allowed: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """The SSE text of the feed after ``start`` (``None``: from now), until the client leaves.

    ``allowed`` says whether the agent may still watch (not disabled since the stream opened);
    it is asked at most once a ``heartbeat``, and the stream ends once it says no.
    """
    yield f"retry: {RETRY_MS}\n\n"
    last = start
    replaying = start is not None  # XREAD from an id returns what is already there at once too
    beat_at = clock() + heartbeat
    check_at = clock() + heartbeat
    while True:
        try:
            if last is None:
                last = feed.last_id()
                continue
            if replaying:
                entries = feed.after(last, REPLAY_PAGE)
                replaying = len(entries) == REPLAY_PAGE
            else:
                entries = feed.read(last, block=True, longest=heartbeat)
        except STORE_UNAVAILABLE as exc:
            log.warning("the console's live stream waits for Redis: %s", describe(exc))
            yield ": waiting for the store\n\n"
            sleep(BACKOFF_SECONDS)
            beat_at = clock() + heartbeat
            continue
        if allowed is not None and clock() >= check_at:
            if not allowed():
                return
            check_at = clock() + heartbeat
        for entry in entries:
            last = entry.id
            yield message(entry)
        if entries:
            beat_at = clock() + heartbeat
        elif clock() >= beat_at:
            yield ": keepalive\n\n"
            beat_at = clock() + heartbeat

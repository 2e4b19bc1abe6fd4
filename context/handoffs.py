"""Handoff bundles in Redis: by handoff id and by CallSid, for a while (``ttl``).

A bundle (see ``docs/handoff-bundle.schema.json`` and :mod:`ivr.handoff`) is what an agent
gets when a caller is handed over: who they are, how sure we are, what they did and said. It is
kept under two keys so the integration API can find it either way (``GET /api/handoffs/<id>``,
``GET /api/calls/<CallSid>/handoff``: a call's latest handoff), and is written with the agents'
feed entries that announce it, in one round trip, after the save of the transferring turn
stood. Bundles hold masked values only: a ``sensitive`` value never reaches them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from context.agent_feed import AgentFeed
from context.keys import Keys
from context.redis_errors import STORE_UNAVAILABLE, describe
from ivr.errors import StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_TTL = 7 * 86400


class HandoffStore:
    """Store and find handoff bundles."""

    def __init__(self, connection: Any, keys: Keys, feed: AgentFeed, ttl: int = DEFAULT_TTL):
        self.redis = connection
        self.keys = keys
        self.feed = feed
        self.ttl = ttl

    def publish(
        self, bundles: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Keep ``bundles`` and append ``events`` to the feed, in one round trip.

        Never raises (the transfer already happened): a failure is logged and ``False``.
        """
        if not bundles and not events:
            return True
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for bundle in bundles:
                    encoded = orjson.dumps(bundle, default=str)
                    pipe.set(self.keys.handoff(str(bundle["id"])), encoded, ex=self.ttl)
                    pipe.set(self.keys.call_handoff(str(bundle["call_sid"])), encoded, ex=self.ttl)
                if events:
                    self.feed.add(pipe, events)
                pipe.execute()
        except STORE_UNAVAILABLE as exc:
            log.error(
                "could not publish %d handoff(s) and %d feed event(s): %s",
                len(bundles),
                len(events),
                describe(exc),
            )
            return False
        return True

    def get(self, handoff_id: str) -> dict[str, Any] | None:
        """The bundle of ``handoff_id``, ``None`` if unknown or expired.

        Raises:
            StoreUnavailable: Redis did not answer.
        """
        return self._read(self.keys.handoff(handoff_id))

    def for_call(self, call_sid: str) -> dict[str, Any] | None:
        """The latest bundle of call ``call_sid``, ``None`` if it was never handed over.

        Raises:
            StoreUnavailable: Redis did not answer.
        """
        return self._read(self.keys.call_handoff(call_sid))

    def for_calls(self, call_sids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The latest bundles of ``call_sids`` (those handed over), in one round trip.

        Raises:
            StoreUnavailable: Redis did not answer.
        """
        if not call_sids:
            return {}
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for call_sid in call_sids:
                    pipe.get(self.keys.call_handoff(call_sid))
                replies = pipe.execute()
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"reading handoff bundles: {describe(exc)}") from None
        found = {}
        for call_sid, raw in zip(call_sids, replies, strict=True):
            value = orjson.loads(raw) if raw is not None else None
            if isinstance(value, dict):
                found[call_sid] = value
        return found

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self.redis.get(key)
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"reading a handoff bundle: {describe(exc)}") from None
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None

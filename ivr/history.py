"""What a flow knows of the caller's history: ``customer`` and ``history`` in templates.

Built from the customer card (see :mod:`context.history.card`) that came with the session, so
reading it costs no round trip. The contact in progress is never part of it: ``last_contact``
is the one before this call.

- ``customer.name``, ``customer.language``, ``customer.time_zone``: ``None`` when unknown.
- ``history.last_contact``: ``channel``, ``at`` (epoch seconds), ``ago`` (seconds), ``outcome``,
  ``summary``, ``flow``, ``topic`` and ``node`` of the latest earlier contact, or ``None``.
- ``history.contacts_within('24h')``: how many earlier contacts began within that duration.
- ``history.open_conversation``: ``topic``, ``status`` and ``last_step`` of the customer's open
  conversation, or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ivr.durations import parse_duration


class History:
    """The caller's earlier contacts, for templates and conditions."""

    def __init__(self, card: Mapping[str, Any], current_sid: str, now: float) -> None:
        contacts = card.get("contacts")
        self._contacts = [
            c
            for c in (contacts if isinstance(contacts, list) else [])
            if isinstance(c, Mapping) and c.get("sid") != current_sid
        ]
        self._now = now
        conversation = card.get("open_conversation")
        self.open_conversation = dict(conversation) if isinstance(conversation, Mapping) else None

    @property
    def last_contact(self) -> dict[str, Any] | None:
        """The latest contact before this one, or ``None``."""
        if not self._contacts:
            return None
        latest = dict(self._contacts[0])
        at = latest.get("at")
        latest["ago"] = self._now - at if isinstance(at, int | float) else None
        return latest

    def contacts_within(self, duration: str | float) -> int:
        """How many earlier contacts began within ``duration`` (``'24h'``, ``'30m'``, seconds)."""
        try:
            seconds = parse_duration(duration)
        except ValueError:
            return 0
        since = self._now - seconds
        return sum(
            1 for c in self._contacts if isinstance(c.get("at"), int | float) and c["at"] >= since
        )

    def __bool__(self) -> bool:
        return bool(self._contacts)


def customer_of(card: Mapping[str, Any]) -> dict[str, Any]:
    """``customer`` for templates: name, language and time zone (``None`` when unknown)."""
    return {key: card.get(key) for key in ("name", "language", "time_zone")}


def scope(card: Mapping[str, Any], current_sid: str, now: float) -> dict[str, Any]:
    """``customer`` and ``history`` for a turn's templates (empty without a card)."""
    if not card:
        return {}
    return {"customer": customer_of(card), "history": History(card, current_sid, now)}

"""Looking for a secret the caller keyed in what the app records, without false alarms.

A short secret (a 4-digit PIN) turns up by chance inside hex ids, hashes and times; the check
looks at texts only, leaving out values that are ids (by their key, or by their shape).
"""

from __future__ import annotations

import re

IDS = {"id", "handoff_id", "call_sid", "conversation", "version", "previous", "sid", "key", "job"}
_ID_SHAPE = re.compile(r"^(?:[A-Z]{2})?[0-9a-f]{16,}$|^\d+-\d+$")


def words_in(value: object) -> list[str]:
    """Every text inside ``value`` except ids and hashes (numbers are times and counts)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() if k not in IDS for t in words_in(v)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in words_in(item)]
    if isinstance(value, str) and not _ID_SHAPE.match(value):
        return [value]
    return []


def mentions(value: object, secret: str) -> bool:
    """True when some text inside ``value`` holds ``secret``."""
    return any(secret in text for text in words_in(value))

"""Durations as designers write them: ``5``, ``5s``, ``500ms``, ``30m``, ``2h`` or ``1m30s``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

DURATION_PATTERN = r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$"


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; a bare number means seconds.

    Raises:
        ValueError: with a sentence a designer can act on.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write e.g. 5s, 500ms or 30m.")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _WHOLE.match(value.strip().replace(" ", "")):
        text = value.strip().replace(" ", "")
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    else:
        raise ValueError(f"{value!r} is not a duration; write e.g. 5s, 500ms or 30m.")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration must be zero or more.")
    return seconds

"""Structured logs: one JSON object per line, with the call's CallSid and a masked caller."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format records as JSON; ``extra`` fields (call_sid, caller, data) become keys."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def _timestamp(self, created: float, msecs: float) -> str:
        second, text = self._second  # one tuple: threads never see a second with another's text
        if int(created) != second:
            second = int(created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode("utf-8")
        except TypeError:  # what orjson will not write (an integer beyond 64 bits) json will
            return json.dumps(entry, default=str)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send Omnivoice's logs to stderr as JSON (``fmt="json"``) or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_omnivoice", False)]
    handler._omnivoice = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())

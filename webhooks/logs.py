"""Structured logs: one JSON object per line, with the call's CallSid and a masked caller.

A record is formatted where it is logged, then written by one writer thread per process, every
:data:`WRITE_EVERY` seconds, all pending lines in one write. Writing each line from the
request's own thread was a third of a new call's CPU under gunicorn: the write releases the
GIL, and on a busy worker every release costs a thread hand-over. Lines still pending when a
worker is killed outright (``SIGKILL``) are lost, at most the last :data:`WRITE_EVERY` seconds;
a normal exit writes them (``atexit``), and a forked process starts its own writer.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import sys
import threading
import time
import weakref
from typing import IO, Any

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


WRITE_EVERY = 0.05  # seconds


class BatchedLines(logging.Handler):
    """Formats each record at once; the process's writer thread writes the lines in batches."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self._lines: collections.deque[str] = collections.deque()
        _HANDLERS.add(self)
        _start_writer()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write every pending line now."""
        with _WRITE_LOCK:
            lines = self._lines
            if not lines:
                return
            batch = [lines.popleft() for _ in range(len(lines))]
            try:
                self.stream.write("\n".join(batch) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: nothing to write to
                pass


_HANDLERS: weakref.WeakSet[BatchedLines] = weakref.WeakSet()
_WRITE_LOCK = threading.Lock()
_writer: threading.Thread | None = None


def flush() -> None:
    """Write every pending log line of this process now."""
    for handler in list(_HANDLERS):
        handler.flush()


def _write_forever() -> None:
    while True:
        time.sleep(WRITE_EVERY)
        flush()


def _start_writer() -> None:
    global _writer
    if _writer is None or not _writer.is_alive():
        _writer = threading.Thread(target=_write_forever, name="omnivoice-log-writer", daemon=True)
        _writer.start()


def _forked() -> None:
    global _writer
    _writer = None  # the parent's writer thread did not come along
    if _HANDLERS:
        _start_writer()


os.register_at_fork(after_in_child=_forked)
atexit.register(flush)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send Omnivoice's logs to stderr as JSON (``fmt="json"``) or plain text.

    No format in the process names a log call's source file and line, so records skip finding
    them (``logging._srcfile = None``, the optimisation the logging documentation describes).
    """
    logging._srcfile = None  # type: ignore[attr-defined]
    handler = BatchedLines(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_omnivoice", False)]:
        old.flush()
    root.handlers = [h for h in root.handlers if not getattr(h, "_omnivoice", False)]
    handler._omnivoice = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())

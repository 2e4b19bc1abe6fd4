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
        extra = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if record.exc_info:
            extra["exc"] = self.formatException(record.exc_info)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), extra)

    def line(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> str:
        """The line of a record made at ``created`` (``time.time()``) with these fields."""
        msecs = (created - int(created)) * 1000  # as LogRecord has it
        entry: dict[str, Any] = {
            "ts": self._timestamp(created, msecs),
            "level": level.lower(),
            "logger": logger,
            "msg": message,
            **extra,
        }
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

    def add(self, line: str) -> None:
        """Queue a line formatted elsewhere (see :class:`QuickInfo`)."""
        self._lines.append(line)

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


class QuickInfo:
    """INFO lines of one logger, the same as ``logger.info(message, extra=extra)`` writes.

    When the only handler such a line would reach is a :class:`BatchedLines` with a
    :class:`JsonFormatter` and no filter (what :func:`configure` installs), the line is made
    from the fields at once, skipping the ``LogRecord``: a log record cost 8.6 us of CPU and
    this 0.7 us (timeit), and the conversation service writes one per event. Anything else on
    the way (another handler, a test's log capture, a filter) gets the record as usual.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def __call__(self, message: str, extra: dict[str, Any]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _sole_lines(logger)
        if handler is None:
            logger.info(message, extra=extra)
            return
        formatter = handler.formatter
        assert isinstance(formatter, JsonFormatter)
        handler.add(formatter.line(time.time(), "info", logger.name, message, extra))


def _sole_lines(logger: logging.Logger) -> BatchedLines | None:
    """The one JSON-lines handler an INFO record of ``logger`` would reach, if that is all."""
    if logger.filters:
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if (
        type(found) is BatchedLines
        and not found.filters
        and found.level <= logging.INFO
        and type(found.formatter) is JsonFormatter
    ):
        return found
    return None


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

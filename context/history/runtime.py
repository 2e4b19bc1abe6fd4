"""The history writer as a running thing: built from the app's settings, run in a thread or a
process of its own, stopped cleanly."""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy import Engine

from context.event_stream import EventStream
from context.history import database
from context.history.writer import HistoryWriter

log = logging.getLogger(__name__)


def consumer_name(role: str) -> str:
    """A consumer name unique to this process (host, pid, role) for the stream's group."""
    return f"{socket.gethostname()}-{os.getpid()}-{role}"


def build(url: str, stream: EventStream, role: str) -> tuple[HistoryWriter, Engine]:
    """A writer for the database at ``url`` reading ``stream``, and its engine."""
    engine = database.open_engine(url)
    return HistoryWriter(stream, database.sessions(engine), consumer_name(role)), engine


class InProcessWriter:
    """The embedded demo's writer: a daemon thread in the web process, on a migrated database."""

    def __init__(self, url: str, stream: EventStream) -> None:
        self.writer, self.engine = build(url, stream, "thread")
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Migrate the database (first start creates it) and start recording."""
        database.upgrade(self.engine)
        self.thread = threading.Thread(
            target=self.writer.run, args=(self.stop,), name="history-writer", daemon=True
        )
        self.thread.start()
        log.info("history writer running in this process")

    def close(self) -> None:
        """Stop recording and release the database."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.engine.dispose()

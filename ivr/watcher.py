"""The flow watcher: one thread per process that refreshes each watched catalog on its period.

Reloading flows used to run inside a webhook, so one caller per worker waited while a changed
file was read and validated (about 0.65 s per MiB). Here the reading happens on a thread of its
own and requests only ever read the maps a refresh swapped in. The thread is a real operating
system thread even where gevent has patched ``threading`` (gunicorn's gevent worker): a parse is
CPU work that never yields, so as a greenlet it would stall every request of the worker until
done, while as a thread it shares the interpreter with them in 5 ms slices. Catalogs are held
weakly, so an app that is dropped (as tests drop theirs) stops being watched; a forked process
starts its own thread, as :mod:`webhooks.logs` does for its writer, and a failing refresh is
logged and tried again on the next period.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import Any

from ivr.catalog import Catalog

log = logging.getLogger(__name__)

TICK = 0.25  # seconds: the longest the thread sleeps, so a newly watched catalog is seen soon


def _native() -> tuple[Callable[..., Any], Callable[[float], None]]:
    """The interpreter's own thread start and sleep, also where gevent has patched them."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency; kept for plain installs
        import _thread

        return _thread.start_new_thread, time.sleep
    return monkey.get_original("_thread", "start_new_thread"), monkey.get_original("time", "sleep")


class _Watched:
    """A catalog (held weakly), its period and when it is due next."""

    def __init__(self, catalog: Catalog, seconds: float) -> None:
        self.catalog = weakref.ref(catalog)
        self.seconds = seconds
        self.due = time.monotonic() + seconds


_WATCHED: list[_Watched] = []
_started_in: int | None = None  # the pid whose thread is running, if any


def watch(catalog: Catalog, seconds: float) -> None:
    """Refresh ``catalog`` every ``seconds`` on this process's watcher thread (started if need be)."""
    if seconds <= 0:
        raise ValueError("a catalog is watched on a positive period")
    _WATCHED.append(_Watched(catalog, seconds))
    _start()


def _start() -> None:
    global _started_in
    if _started_in == os.getpid():
        return
    _started_in = os.getpid()
    start_thread, _ = _native()
    start_thread(_watch_forever, ())


def _watch_forever() -> None:
    _, sleep = _native()
    while True:
        sleep(_due_in())
        _refresh_due()


def _due_in() -> float:
    """Seconds until the next catalog is due, at most :data:`TICK`."""
    now = time.monotonic()
    return max(0.0, min([TICK, *(w.due - now for w in list(_WATCHED))]))


def _refresh_due() -> None:
    for watched in list(_WATCHED):
        catalog = watched.catalog()
        if catalog is None:
            _WATCHED.remove(watched)
            continue
        if time.monotonic() < watched.due:
            continue
        try:
            catalog.refresh()
        except Exception:  # the thread must outlive any one bad refresh; the next one retries
            log.exception("reloading the flows in %s failed", catalog.directory)
        watched.due = time.monotonic() + watched.seconds


def _forked() -> None:
    global _started_in
    _started_in = None  # the parent's thread did not come along, maybe mid-refresh
    for watched in _WATCHED:
        catalog = watched.catalog()
        if catalog is not None:
            catalog.after_fork()
    if _WATCHED:
        _start()


os.register_at_fork(after_in_child=_forked)

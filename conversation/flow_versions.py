"""Which flow version a session runs on, and publishing versions so every process can find them.

A session is pinned to the content hash of the flow it started on. This process knows the
versions it loaded (:class:`~ivr.catalog.Catalog`); any other process finds a version's YAML
published in Redis. A version is published by the first save that uses it in
this process, again every ``republish_every`` seconds, and again straight after the store was
seen failing. On a single or Sentinel-managed Redis that is not what keeps versions safe: every
save checks, inside its script, that its version is in Redis, and is sent again with the YAML
when it is not (a Redis that restarted empty without this process noticing), so no session is
stored pinned to a version other processes cannot read. On Redis Cluster the version lives in
another slot than the session, so publication there is a best-effort write of its own, and a
shard that lost the version without an error being seen gets it back within
``republish_every``.
"""

from __future__ import annotations

import logging
import threading
import time

from context.sessions import FlowPin, SessionStore
from ivr.catalog import Catalog
from ivr.errors import FlowLoadError
from ivr.flow import Flow, load_flow_text
from ivr.session import Session

log = logging.getLogger("omnivoice.flows")

REPUBLISH_SECONDS = 60.0


class FlowVersions:
    """Flow versions by content hash: in memory, else from Redis; and their publication."""

    def __init__(
        self, catalog: Catalog, store: SessionStore, republish_every: float = REPUBLISH_SECONDS
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.republish_every = republish_every
        self._published: dict[str, float] = {}  # version -> monotonic time of its publication
        self._lock = threading.Lock()

    def for_session(self, session: Session) -> Flow | None:
        """The flow version ``session`` runs on, or ``None`` when it can no longer be served."""
        flow = self.catalog.version(session.flow_version)
        if flow is not None:
            return flow
        source = self.store.flow_source(session.flow_version)
        if source is None:
            return None
        try:
            flow = load_flow_text(
                source, f"{session.flow_id}@{session.flow_version}", session.flow_id
            )
        except FlowLoadError as exc:
            log.error("stored flow version %s no longer loads: %s", session.flow_version, exc)
            return None
        if flow.version != session.flow_version:
            return None
        self.catalog.remember(flow)
        return flow

    def pin(self, flow: Flow) -> FlowPin:
        """What the next save on ``flow`` carries about it: its key and YAML, to be published
        with the save if this process has not done so lately."""
        published = self._published.get(flow.version)
        due = published is None or time.monotonic() - published >= self.republish_every
        return FlowPin(self.store.keys.flow_version(flow.version), flow.source, publish=due)

    def published(self, flow: Flow) -> None:
        """Note that a save carrying ``flow``'s publication went through."""
        with self._lock:
            self._published[flow.version] = time.monotonic()

    def store_failed(self) -> None:
        """The store just failed (it may come back empty): publish every version again."""
        with self._lock:
            self._published.clear()

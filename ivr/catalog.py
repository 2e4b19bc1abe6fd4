"""The flows a server can run: every ``*.yaml`` in a directory, reloaded when files change.

Reusable blocks live in its ``blocks/`` folder (see :mod:`ivr.blocks`); a change to any block
reloads every flow, and a block file's own problems are reported with the flows'.

:meth:`Catalog.refresh` does the reading and is called off the request path (at start-up, then
by :mod:`ivr.watcher`'s thread); lookups take no lock and never wait for it, because a refresh
builds new maps and then swaps them in, never editing the ones requests read. A file over the
size limit is refused before it is read. A file that fails to load is reported and its last good
version keeps serving; a flow that claims a number another flow already answers, or reuses
another flow's id, is refused the same way (files already serving win such a clash; among new
files the first by name wins).
Every version loaded stays available by its content hash, so a call keeps running on the version
it started with after the file changes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ivr.errors import FlowLoadError, Problem
from ivr.flow import MAX_FLOW_BYTES, Flow, load_block_text, load_flow_file, read_blocks

log = logging.getLogger(__name__)

FLOW_SUFFIXES = (".yaml", ".yml")


@dataclass
class _Entry:
    stamp: tuple[int, int, int]
    flow: Flow | None  # the last version of the file that loaded
    problems: list[Problem] = field(default_factory=list)
    served: Flow | None = None  # the version that is answering calls, if any


class Catalog:
    """The current flows of a directory, by id and by called number, plus every past version."""

    def __init__(
        self,
        directory: str | Path,
        default_flow: str | None = None,
        max_bytes: int = MAX_FLOW_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.default_flow = default_flow
        self.max_bytes = max_bytes
        self._entries: dict[Path, _Entry] = {}
        self._by_id: dict[str, Flow] = {}
        self._by_number: dict[str, Flow] = {}
        self._versions: dict[str, Flow] = {}
        self._refused: dict[Path, Problem] = {}
        self._lock = threading.Lock()  # one refresh at a time; lookups take no lock
        self._reindex = False
        self._blocks: dict[str, tuple[str, str]] = {}  # blocks/*.yaml: name -> (path, text)
        self._block_problems: list[Problem] = []

    # ---- loading --------------------------------------------------------------------------
    def refresh(self) -> list[Problem]:
        """Reload changed files; return the problems of every file that is currently refused."""
        with self._lock:
            files = self._files()
            changed = False
            blocks = read_blocks(self.directory)
            blocks_changed = blocks != self._blocks
            if blocks_changed:  # every flow may use a changed block: load them all again
                self._blocks = blocks
                self._block_problems = self._check_blocks(blocks)
            for path in files:
                stamp = _stamp(path)
                entry = self._entries.get(path)
                if entry is not None and entry.stamp == stamp and not blocks_changed:
                    continue
                changed = True
                self._load(path, stamp, entry)
            for gone in set(self._entries) - set(files):
                changed = True
                log.warning("flow file %s was removed; its calls finish on their version", gone)
                del self._entries[gone]
            if changed or not self._by_id or self._reindex:
                self._reindex = False
                self._index()
            self._refused = {
                path: e.problems[0] for path, e in sorted(self._entries.items()) if e.problems
            }
            found = [p for e in self._entries.values() for p in e.problems]
            return [*self._block_problems, *(p for p in found if p not in self._block_problems)]

    def _check_blocks(self, blocks: dict[str, tuple[str, str]]) -> list[Problem]:
        """Every block file's own problems (a block no flow uses yet is checked too)."""
        problems: list[Problem] = []
        for name, (path, text) in sorted(blocks.items()):
            try:
                load_block_text(text, path, name)
            except FlowLoadError as exc:
                problems.extend(exc.problems)
                for problem in exc.problems:
                    log.error("%s", problem)
        return problems

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.suffix in FLOW_SUFFIXES)

    def _load(self, path: Path, stamp: tuple[int, int, int], previous: _Entry | None) -> None:
        try:
            flow = load_flow_file(path, self.max_bytes, blocks_from=self._blocks)
        except FlowLoadError as exc:
            kept = previous.flow if previous else None
            for problem in exc.problems:
                log.error("%s", problem)
            if kept is not None:
                log.error("%s refused; still serving version %s", path, kept.version)
            self._entries[path] = _Entry(
                stamp, kept, list(exc.problems), previous.served if previous else None
            )
            return
        except OSError as exc:
            self._entries[path] = _Entry(
                stamp,
                previous.flow if previous else None,
                [Problem(str(path), 1, 1, f"The file cannot be read: {exc.strerror}.")],
                previous.served if previous else None,
            )
            return
        for warning in flow.warnings:
            log.warning("%s", warning)
        self._entries[path] = _Entry(stamp, flow, served=previous.served if previous else None)
        self._versions[flow.version] = flow
        log.info("loaded flow %s version %s from %s", flow.id, flow.version, path)

    def _index(self) -> None:
        """Rebuild the id and number maps; a clash refuses the later file (keeping its last good).

        The versions that are serving keep their ids and numbers; a new or changed version is
        admitted only if it takes nothing another file is serving, so a new file cannot take over
        a number, and a refused change leaves its file serving the version it served before.
        """
        by_id: dict[str, Flow] = {}
        by_number: dict[str, Flow] = {}
        entries = [entry for _path, entry in sorted(self._entries.items())]
        for entry in entries:
            entry.problems = [p for p in entry.problems if not p.message.startswith("Clash:")]
            if entry.served is not None:
                _claim(entry.served, by_id, by_number)
        pending = [e for e in entries if e.flow is not None and e.flow is not e.served]
        clashes: dict[int, list[Problem]] = {}
        while pending:  # admitting one file may free what another one needs
            clashes = {id(e): found for e in pending if (found := _admit(e, by_id, by_number))}
            refused = [e for e in pending if id(e) in clashes]
            if len(refused) == len(pending):
                break
            pending = refused
        for entry in pending:
            entry.problems.extend(clashes[id(entry)])
            for problem in clashes[id(entry)]:
                log.error("%s", problem)
        self._by_id, self._by_number = by_id, by_number

    def after_fork(self) -> None:
        """In a forked child: the parent's refresh may have been cut short by the fork.

        The child gets a lock nobody holds, and its next refresh rebuilds the maps from what
        was loaded, even if no file changed since.
        """
        self._lock = threading.Lock()
        self._reindex = True

    def refused(self) -> dict[Path, Problem]:
        """Each file that is currently refused, with its first problem (as of the last refresh)."""
        return dict(self._refused)

    # ---- lookups --------------------------------------------------------------------------
    def flows(self) -> list[Flow]:
        """The current version of every flow, by id."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    def get(self, flow_id: str) -> Flow | None:
        """The current version of flow ``flow_id``."""
        return self._by_id.get(flow_id)

    def version(self, version: str) -> Flow | None:
        """Any version loaded since start-up (or :meth:`remember`-ed), by content hash."""
        return self._versions.get(version)

    def remember(self, flow: Flow) -> None:
        """Keep ``flow`` available by version (a version loaded from the session store)."""
        self._versions.setdefault(flow.version, flow)

    def for_number(self, number: str | None) -> Flow | None:
        """The flow that answers calls to ``number`` (E.164), else the default flow."""
        if number and number in self._by_number:
            return self._by_number[number]
        return self.default()

    def default(self) -> Flow | None:
        """The default flow: the configured id, else the one marked default, else the only one."""
        if self.default_flow and self.default_flow in self._by_id:
            return self._by_id[self.default_flow]
        marked = [f for f in self.flows() if f.spec.default]
        if marked:
            return marked[0]
        flows = self.flows()
        return flows[0] if len(flows) == 1 else None


def _stamp(path: Path) -> tuple[int, int, int]:
    """What tells a changed file: nanosecond mtime, size and inode (editors replace files)."""
    try:
        info = path.stat()
    except OSError:
        return (0, -1, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _claim(flow: Flow, by_id: dict[str, Flow], by_number: dict[str, Flow]) -> None:
    by_id[flow.id] = flow
    for number in flow.numbers:
        by_number[number] = flow


def _release(flow: Flow, by_id: dict[str, Flow], by_number: dict[str, Flow]) -> None:
    for table, keys in ((by_id, [flow.id]), (by_number, list(flow.numbers))):
        for key in keys:
            if table.get(key) is flow:
                del table[key]


def _admit(entry: _Entry, by_id: dict[str, Flow], by_number: dict[str, Flow]) -> list[Problem]:
    """Serve the entry's latest version unless it clashes; return the clashes (none if served)."""
    assert entry.flow is not None
    if entry.served is not None:
        _release(entry.served, by_id, by_number)
    clashes = _clashes(entry.flow, by_id, by_number)
    if clashes:
        if entry.served is not None:
            _claim(entry.served, by_id, by_number)
        return clashes
    _claim(entry.flow, by_id, by_number)
    entry.served = entry.flow
    return []


def _clashes(flow: Flow, by_id: dict[str, Flow], by_number: dict[str, Flow]) -> list[Problem]:
    problems = []
    if flow.id in by_id:
        other = by_id[flow.id]
        problems.append(
            Problem(flow.path, 1, 1, f"Clash: flow id {flow.id!r} is already used by {other.path}.")
        )
    for number, (line, col) in zip(flow.numbers, flow.number_positions, strict=True):
        if number in by_number:
            other = by_number[number]
            problems.append(
                Problem(
                    flow.path,
                    line,
                    col,
                    f"Clash: {number} is already answered by flow {other.id!r} ({other.path}).",
                )
            )
    default_marked = [f for f in by_id.values() if f.spec.default]
    if flow.spec.default and default_marked:
        problems.append(
            Problem(
                flow.path, 1, 1, f"Clash: flow {default_marked[0].id!r} is already the default."
            )
        )
    return problems

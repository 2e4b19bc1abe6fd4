"""The state of one caller's progress through a flow, as the engine sees it.

A :class:`Session` is an immutable value. The engine returns a new one with every turn; the
``context`` package stores it in Redis as a small JSON document (see :meth:`Session.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from ivr.states import Status, Waiting

SCHEMA_VERSION = 1

TRAIL_LIMIT = 20


class Visit(NamedTuple):
    """One node the caller went through, with what they answered there (if anything).

    A named tuple: a session carries up to :data:`TRAIL_LIMIT` of them, rebuilt on every load.
    """

    node: str
    answer: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Session:
    """One caller's progress: where they are, what they entered, how the call is going."""

    caller: str
    flow_id: str
    flow_version: str
    call_sid: str
    node: str | None = None
    waiting: Waiting | None = None  # None once the session ended
    checkpoint: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    no_input_count: int = 0
    no_match_count: int = 0
    step: int = 0
    status: Status = Status.ACTIVE
    ended_reason: str | None = None
    trail: tuple[Visit, ...] = ()
    started_at: float = 0.0
    updated_at: float = 0.0
    call_status: str | None = None
    ended_at: float | None = None
    attested: bool = False  # this call's caller ID passed STIR/SHAKEN full attestation
    resume_code: str | None = None
    resume_return: str | None = None  # checkpoint to go back to once sensitive data is back
    resume_missing: tuple[str, ...] = ()  # sensitive variables the caller must give again
    held: dict[str, Any] = field(default_factory=dict)  # sensitive values awaiting verification
    handoff: dict[str, Any] = field(default_factory=dict)  # what the agent gets at a transfer
    conversation: str = ""  # one matter across calls: kept by a resume, new for a fresh start
    sensitive: tuple[str, ...] = ()  # the flow version's sensitive paths: stored sealed
    live_until: float | None = None  # the call's next webhook is due by then (ivr.liveness)
    attempts: dict[str, Any] = field(default_factory=dict)  # node -> no_input/no_match counts
    identified: tuple[str, ...] = ()  # how we know who this is: caller_id, stir_a, verified...
    resumes: int = 0  # how many times this conversation was picked up again by a new call
    handoffs: tuple[str, ...] = ()  # this conversation's handoff ids, the latest last
    recordings: dict[str, Any] = field(default_factory=dict)  # node -> url, duration, status...
    messages: dict[str, Any] = field(default_factory=dict)  # key -> status, node (ivr.messages)
    pages: dict[str, Any] = field(default_factory=dict)  # page -> status, links, values (ivr.pages)
    # The customer card read with the session (ivr.history): never stored with it.
    card: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def new(cls, **values: Any) -> Session:
        """A session of ``values`` (``caller``, ``flow_id``, ``flow_version`` and ``call_sid`` at
        least), every other field at its default: the same as ``Session(**values)``, made the
        way :meth:`evolve` makes copies (the dataclass constructor sets the 35 fields of a
        frozen instance one by one: 5.3 us against 1.3 us, on every new call).
        """
        if not _FIELD_SET.issuperset(values) or not values.keys() >= _REQUIRED:
            raise TypeError(
                f"Session.new needs {sorted(_REQUIRED)} and takes only Session's fields, "
                f"not {sorted(values.keys() - _FIELD_SET)}"
            )
        session = object.__new__(cls)
        session.__dict__.update(_IMMUTABLE_DEFAULTS)
        session.__dict__.update(
            variables={}, held={}, handoff={}, attempts={}, recordings={}, messages={}, pages={},
            card={},
        )  # fmt: skip
        session.__dict__.update(values)
        return session

    def evolve(self, **changes: Any) -> Session:
        """Return a copy with ``changes`` applied.

        The engine makes a dozen copies per turn, so this copies the instance dict directly
        rather than through ``dataclasses.replace`` (four times slower); the types are checked
        where sessions come in from outside, in :meth:`from_dict`.
        """
        if not _FIELD_SET.issuperset(changes):
            raise TypeError(f"Session has no field(s) {sorted(changes.keys() - _FIELD_SET)}")
        clone = object.__new__(Session)
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(changes)
        return clone

    def visited(self, visit: Visit, **changes: Any) -> Session:
        """Return a copy with ``visit`` appended to the (bounded) trail and ``changes`` applied."""
        return self.evolve(trail=(*self.trail, visit)[-TRAIL_LIMIT:], **changes)

    def call_ended(self, call_status: str, at: float) -> Session:
        """Record that the call ended; a session still in self-service becomes interrupted."""
        if self.status == Status.ACTIVE:
            where = self.node or "the start"
            return self.evolve(
                status=Status.INTERRUPTED,
                ended_reason=f"call {call_status} at {where}",
                call_status=call_status,
                ended_at=at,
            )
        return self.evolve(call_status=call_status, ended_at=self.ended_at or at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without fields at their defaults (sessions stay well under 2 KB)."""
        data = {}
        values = self.__dict__
        for name in _STORED_NAMES:
            value = values[name]
            if name in _REQUIRED or value != _DEFAULTS[name]:
                data[name] = list(value) if isinstance(value, tuple) else value
        if self.trail:
            data["trail"] = [_compact_visit(v) for v in self.trail]
        data["schema"] = SCHEMA_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """Rebuild a session from :meth:`to_dict` output; raises ``ValueError`` if it is not one.

        Every field is type-checked (the document comes from outside the process), and the
        instance is then filled directly, as :meth:`evolve` does: this runs on every webhook.
        """
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            raise ValueError("not a session document of a known schema version")
        unknown = data.keys() - _DOCUMENT_KEYS
        missing = _REQUIRED - data.keys()
        if unknown or missing:
            raise ValueError(
                f"session fields do not match: unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        values = {
            name: data[name] if name in data else _fresh_default(name) for name in _FIELD_NAMES
        }
        values["trail"] = _trail(values["trail"])
        for name in ("resume_missing", "sensitive", "identified", "handoffs"):
            names = values[name]
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"session {name} is malformed")
            values[name] = tuple(names)
        for name, value in values.items():
            if not isinstance(value, _TYPES[name]) or (value.__class__ is bool) != (
                name == "attested"
            ):
                # The type, never the value: a field may hold what the caller keyed.
                raise ValueError(f"session field {name} has the wrong type: {type(value).__name__}")
        try:
            values["status"] = Status(values["status"])
            if values["waiting"] is not None:
                values["waiting"] = Waiting(values["waiting"])
        except ValueError:
            raise ValueError(
                f"session has an unknown status or waiting state: {values['status']!r:.20}, "
                f"{values['waiting']!r:.20}"
            ) from None
        session = object.__new__(cls)
        session.__dict__.update(values)
        return session


def _trail(raw: Any) -> tuple[Visit, ...]:
    """The trail of a stored document: lists of one to three strings (or nulls)."""
    if not isinstance(raw, list | tuple):
        raise ValueError("session trail is malformed")
    visits = []
    for item in raw:
        if (
            not isinstance(item, list | tuple)
            or not 1 <= len(item) <= 3
            or not isinstance(item[0], str)
            or not all(part is None or isinstance(part, str) for part in item)
        ):
            raise ValueError("session trail is malformed")
        visits.append(Visit(*item))
    return tuple(visits)


def _fresh_default(name: str) -> Any:
    default = _DEFAULTS[name]
    return {} if default == {} else default  # never share one mutable dict between sessions


_REQUIRED = {"caller", "flow_id", "flow_version", "call_sid"}
_DEFAULTS: dict[str, Any] = {
    "node": None, "waiting": None, "checkpoint": None, "variables": {}, "no_input_count": 0,
    "no_match_count": 0, "step": 0, "status": Status.ACTIVE, "ended_reason": None, "trail": (),
    "started_at": 0.0, "updated_at": 0.0, "call_status": None, "ended_at": None,
    "attested": False, "resume_code": None, "resume_return": None, "resume_missing": (),
    "held": {}, "handoff": {}, "conversation": "", "sensitive": (), "live_until": None,
    "attempts": {}, "identified": (), "resumes": 0, "handoffs": (), "card": {},
    "recordings": {}, "messages": {}, "pages": {},
}  # fmt: skip


def _compact_visit(visit: Visit) -> list[str | None]:
    items = [visit.node, visit.answer, visit.outcome]
    while items[-1] is None:
        items.pop()
    return items


_IMMUTABLE_DEFAULTS = {name: value for name, value in _DEFAULTS.items() if value != {}}
_FIELD_NAMES = tuple(f.name for f in fields(Session))
_FIELD_SET = frozenset(_FIELD_NAMES)
_TRANSIENT = frozenset({"card"})  # read beside the session, never part of its document
_STORED_NAMES = tuple(name for name in _FIELD_NAMES if name not in _TRANSIENT)
_DOCUMENT_KEYS = (_FIELD_SET - _TRANSIENT) | {"schema"}
_NUMBER = (int, float)
_TEXT = (str,)
_MAYBE_TEXT = (str, type(None))
_TYPES: dict[str, tuple[type, ...]] = {
    "caller": _TEXT, "flow_id": _TEXT, "flow_version": _TEXT, "call_sid": _TEXT,
    "node": _MAYBE_TEXT, "waiting": _MAYBE_TEXT, "checkpoint": _MAYBE_TEXT, "variables": (dict,),
    "no_input_count": (int,), "no_match_count": (int,), "step": (int,), "status": _TEXT,
    "ended_reason": _MAYBE_TEXT, "trail": (tuple,), "started_at": _NUMBER, "updated_at": _NUMBER,
    "call_status": _MAYBE_TEXT, "ended_at": (*_NUMBER, type(None)), "attested": (bool,),
    "resume_code": _MAYBE_TEXT, "resume_return": _MAYBE_TEXT, "resume_missing": (tuple,),
    "held": (dict,), "handoff": (dict,), "conversation": _TEXT, "sensitive": (tuple,),
    "live_until": (*_NUMBER, type(None)), "attempts": (dict,), "identified": (tuple,),
    "resumes": (int,), "handoffs": (tuple,), "card": (dict,), "recordings": (dict,),
    "messages": (dict,), "pages": (dict,),
}  # fmt: skip

"""The one exception hierarchy of Omnivoice.

::

    OmnivoiceError
    ├── Refused                   an agent's or API client's request was not done (status, why)
    ├── ConfigError               a setting from the environment is missing or unusable
    ├── FlowError                 a flow definition is unusable
    │   └── FlowLoadError         YAML or schema problems, each with file:line:col
    ├── EngineError               a flow could not be stepped (loop guard, bad state)
    │   └── UnknownNodeError      a session points at a node the flow version lacks
    └── StoreError                session storage failed          (raised by ``context``)
        ├── StoreUnavailable      Redis did not answer in time
        ├── SessionCorrupt        a stored session document could not be decoded
        └── SessionContention     concurrent requests kept winning the race for a session

Every exception carries the context needed to act on it; webhooks turn any of them into a short
apology for the caller and a route to a person, never an HTTP 500.
"""

from __future__ import annotations

from dataclasses import dataclass


class OmnivoiceError(Exception):
    """Base class of every error Omnivoice raises on purpose."""


class Refused(OmnivoiceError):
    """Something asked of the app (by an agent, an API client) was not done: ``message`` says
    why, for the person who asked, and ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Problem:
    """One finding about a flow file, located at ``path:line:col`` (1-based)."""

    path: str
    line: int
    col: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message}"


class ConfigError(OmnivoiceError):
    """A setting is missing or unusable; the app refuses to start rather than misbehave later.

    ``name`` is the environment variable, ``value`` what it held (``None`` when it is unset) and
    ``reason`` a sentence saying what it must be.
    """

    def __init__(self, name: str, value: str | None, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        shown = f"{name} is not set" if value is None else f"{name}={value!r} is not usable"
        super().__init__(f"{shown}: {reason}")


class FlowError(OmnivoiceError):
    """A flow definition cannot be used."""


class FlowLoadError(FlowError):
    """A flow file failed to parse or validate; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EngineError(OmnivoiceError):
    """A flow could not be stepped."""


class UnknownNodeError(EngineError):
    """A session refers to a node that the flow version does not have."""

    def __init__(self, flow_id: str, node: str) -> None:
        self.flow_id = flow_id
        self.node = node
        super().__init__(f"Flow {flow_id!r} has no node named {node!r}.")


class StoreError(OmnivoiceError):
    """Session storage failed."""


class StoreUnavailable(StoreError):
    """The session store (Redis) did not answer in time."""


class SessionCorrupt(StoreError):
    """A stored session document could not be decoded."""

    def __init__(self, key: str, reason: str, own: bool = False) -> None:
        self.key = key  # masked: fit for logs
        self.reason = reason
        self.own = own  # the call's own set-aside session, not the caller's
        super().__init__(f"Session {key!r} is corrupt: {reason}")


class SessionContention(StoreError):
    """Concurrent requests kept saving one session first; this request gave up."""

    def __init__(self, call_sid: str) -> None:
        self.call_sid = call_sid
        super().__init__(f"Call {call_sid} lost the race for its session several times.")

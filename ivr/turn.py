"""What the engine consumes (events) and produces (a :class:`Turn`).

Events are what the caller (or a data dip) did; a Turn is what the caller should hear and do
next, the data dip to run before the reply (if any), side effects for the shell, and the new
session. Actions are channel-neutral: ``webhooks.twiml`` renders them as TwiML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivr.session import Session


# ---- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """The caller's reply to a gather: keypad digits and/or recognised speech, or nothing."""

    digits: str | None = None
    speech: str | None = None
    confidence: float | None = None
    at: float = 0.0


@dataclass(frozen=True)
class FetchResult:
    """The outcome of a data dip the previous Turn asked for."""

    ok: bool
    status: int | None = None
    data: Any = None
    error: str | None = None
    at: float = 0.0


Event = Answer | FetchResult


# ---- actions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Say:
    """Speak text; ``personal`` when the text was made for this caller (never cached)."""

    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1
    personal: bool = False


@dataclass(frozen=True)
class Play:
    """Play audio from a URL; ``personal`` when the URL was made for this caller."""

    url: str
    loop: int = 1
    personal: bool = False


@dataclass(frozen=True)
class Pause:
    """Silence, in whole seconds."""

    seconds: int


Speech = Say | Play | Pause


@dataclass(frozen=True)
class Gather:
    """Ask and wait for the caller; ``prompt`` is played while listening (barge-in allowed)."""

    prompt: tuple[Speech, ...]
    input: tuple[str, ...] = ("dtmf",)
    num_digits: int | None = None
    finish_on_key: str | None = None
    timeout: int = 5
    speech_timeout: str | None = None
    hints: tuple[str, ...] = ()
    language: str | None = None


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to a person, with what is already known about them."""

    queue: str | None = None
    number: str | None = None
    client: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    timeout: int = 30


@dataclass(frozen=True)
class Hangup:
    """End the call."""


Action = Say | Play | Pause | Gather | Transfer | Hangup


# ---- side effects -------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpRequest:
    """A data dip the shell must run, then report back as a :class:`FetchResult`."""

    url: str
    method: str = "GET"
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 3.0


@dataclass(frozen=True)
class Note:
    """Something worth recording about the call (a structured log line, later history)."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """The engine's answer to one event."""

    session: Session
    actions: tuple[Action, ...] = ()
    fetch: HttpRequest | None = None
    notes: tuple[Note, ...] = ()

    @property
    def waiting_for_input(self) -> bool:
        """True when the caller is being asked something."""
        return any(isinstance(a, Gather) for a in self.actions)

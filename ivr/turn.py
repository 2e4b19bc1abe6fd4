"""What the engine consumes (events) and produces (a :class:`Turn`).

Events are what the caller (or a data dip) did; a Turn is what the caller should hear and do
next, the **effects** the shell must carry out (a data dip before the reply, events to record, a
handoff bundle to publish, a callback to record; messages to send come next), and the new session. Actions are
channel-neutral: a renderer per channel turns them into TwiML (``webhooks.twiml``) or, later, an
SMS text or a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ivr.session import Session
from ivr.states import EventName


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


@dataclass(frozen=True)
class Recorded:
    """A record node's message as Twilio reports it (its ``<Record>`` action): the recording's
    URL and seconds, and the key that ended it (``hangup`` when the caller hung up); no URL
    when nothing was recorded."""

    url: str | None = None
    duration: int = 0
    digits: str | None = None
    at: float = 0.0


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


TransferRoute = Literal["queue", "number", "client", "sip"]


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to a person, with the handoff bundle of what is already known.

    ``flow`` and ``node`` name the transfer node (its hold prompts play while a queued caller
    waits); ``waits`` says the queue has a hold prompt, hold music or a longest wait;
    ``workflow`` routes a queue through TaskRouter. Never cached: the bundle is this caller's.
    """

    route: TransferRoute
    target: str
    handoff_id: str = ""
    bundle: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    timeout: int = 30
    workflow: str | None = None
    flow: str = ""
    node: str = ""
    waits: bool = False

    @property
    def queue(self) -> str | None:
        """The queue's name, for a transfer to a queue."""
        return self.target if self.route == "queue" else None


@dataclass(frozen=True)
class Record:
    """Record the caller's message; its status callback names ``node`` and the ``caller`` key
    (Twilio's recording callbacks carry the CallSid but not who is calling)."""

    node: str
    caller: str
    max_length: int = 120
    finish_on_key: str = "1234567890*#"
    beep: bool = True
    timeout: int = 5
    transcribe: bool = False


@dataclass(frozen=True)
class Hangup:
    """End the call."""


Action = Say | Play | Pause | Gather | Transfer | Record | Hangup


# ---- effects ------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpRequest:
    """A data dip the shell must run, then report back as a :class:`FetchResult`."""

    url: str
    method: str = "GET"
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 3.0
    form: dict[str, str] | None = None  # a form-encoded body, instead of json


@dataclass(frozen=True)
class Note:
    """Record an event: a structured log line, a metric, an entry in the event stream.

    ``data`` must hold no sensitive value in clear: the engine masks what it puts there.
    """

    name: EventName
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttachHandoff:
    """Publish a transfer's handoff bundle (masked) for agents, the API and the history."""

    bundle: Mapping[str, Any]


@dataclass(frozen=True)
class RequestCallback:
    """Record that the caller asked to be called back (it shows in the agent console);
    ``number`` is ``None`` when the caller withheld theirs."""

    number: str | None
    reason: str
    handoff_id: str | None = None


@dataclass(frozen=True)
class PageLink:
    """A signed link to one of the flow's pages, made for one message (see :mod:`ivr.links`).

    ``id`` is derived from the call, step, node and page (a retried webhook makes the same
    link); ``expires`` is the page's lifetime in seconds. The shell issues the link (stores what
    it points at, signs its URL) when it sends the message.
    """

    id: str
    page: str
    expires: int = 3600


@dataclass(frozen=True)
class SendMessage:
    """A text or an email to send off the call's path (the job queue), at most once.

    ``key`` is the idempotency key (derived from the call, step, node and channel: a retried
    webhook or a redelivered job never sends twice). ``body`` is the text (SMS) or the plain
    text body (email); links in ``body`` and ``html`` are marks (:func:`ivr.links.mark`) that
    the sender replaces with the signed URLs of ``links``.
    """

    key: str
    channel: Literal["sms", "email"]
    to: str
    body: str
    node: str
    subject: str | None = None
    html: str | None = None
    links: tuple[PageLink, ...] = ()


Effect = HttpRequest | Note | AttachHandoff | RequestCallback | SendMessage


@dataclass(frozen=True)
class Turn:
    """The engine's answer to one event: what to say and do, the effects, the new session.

    A turn holds at most one :class:`HttpRequest`: the shell runs it before replying and feeds
    the result back with :func:`ivr.engine.step`, which gives the next turn.
    """

    session: Session
    actions: tuple[Action, ...] = ()
    effects: tuple[Effect, ...] = ()

    def evolve(
        self,
        session: Session | None = None,
        actions: tuple[Action, ...] | None = None,
        effects: tuple[Effect, ...] | None = None,
    ) -> Turn:
        """Return a copy with the given parts replaced (a few times per webhook: no
        ``dataclasses.replace``, which costs several times as much)."""
        return Turn(
            self.session if session is None else session,
            self.actions if actions is None else actions,
            self.effects if effects is None else effects,
        )

    def noting(self, *notes: Note, first: bool = False) -> Turn:
        """Return a copy that also records ``notes`` (before the turn's own, with ``first``)."""
        effects = (*notes, *self.effects) if first else (*self.effects, *notes)
        return Turn(self.session, self.actions, effects)

    @property
    def fetch(self) -> HttpRequest | None:
        """The data dip to run before replying, if any."""
        for effect in self.effects:
            if isinstance(effect, HttpRequest):
                return effect
        return None

    @property
    def notes(self) -> tuple[Note, ...]:
        """The events this turn records, in order."""
        return tuple(e for e in self.effects if isinstance(e, Note))

    @property
    def waiting_for_input(self) -> bool:
        """True when the caller is being asked something."""
        return any(isinstance(a, Gather) for a in self.actions)

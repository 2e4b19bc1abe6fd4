"""The board's state: the agents' feed of the last hour, folded into one card per call.

Pure functions of feed entries (no Redis, no Flask), used by the page for its first render; the
page's script applies the same rules to the events the live stream brings. A ``handoff`` opens a
card (the caller is waiting, with the whole bundle); ``queue_waiting`` updates the position and
wait; ``call_taken``, ``transfer_result`` and ``call_ended`` change its state; ``agent_note`` adds a
note; every event of the call goes on the card's live timeline. The supervisor strip's numbers
(callers waiting, longest wait, transfers in the hour) come from the same cards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from context.agent_feed import FeedEntry

WINDOW_SECONDS = 3600
WAITING = "waiting"
CONNECTING = "connecting"
CONNECTED = "connected"
ENDED = "ended"
# A transfer that did not connect leaves the caller with the flow (next step, another queue).
RESULT_STATES = {"connected": CONNECTED, "redirected": "redirected"}


@dataclass
class Card:
    """One call on the board."""

    call_sid: str
    caller: str
    conversation: str = ""
    flow: str | None = None
    version: str | None = None
    handoff_id: str | None = None
    bundle: dict[str, Any] = field(default_factory=dict)
    state: str = WAITING
    since: float = 0.0
    position: int | None = None
    wait_seconds: int | None = None
    taken_by: str | None = None
    result: str | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)  # what became of pages sent
    last_id: str = ""

    @property
    def waiting(self) -> bool:
        """Whether the caller still waits for an agent."""
        return self.state == WAITING

    def wait(self, now: float) -> int:
        """Seconds since the caller was handed over."""
        return max(0, int(now - self.since))


@dataclass(frozen=True)
class Strip:
    """The supervisor strip's numbers."""

    waiting: int
    longest_wait: int
    transfers_hour: int


def fold(entries: Iterable[FeedEntry]) -> dict[str, Card]:
    """The cards of ``entries`` (oldest first), by CallSid; the newest handoff opens a call."""
    cards: dict[str, Card] = {}
    for entry in entries:
        apply(cards, entry)
    return cards


def apply(cards: dict[str, Card], entry: FeedEntry) -> None:
    """Fold one feed entry into ``cards``."""
    event = entry.event
    call_sid = str(event.get("call_sid") or "")
    name = event.get("name")
    data = _mapping(event.get("data"))
    if not call_sid or not isinstance(name, str):
        return
    card = cards.get(call_sid)
    if name == "handoff":
        bundle = _mapping(data.get("bundle"))
        card = _open(event, bundle, card)
        cards[call_sid] = card
    if card is None:
        return  # a call whose handoff is older than the window: nothing to show it on
    card.last_id = entry.id
    card.events.append({"id": entry.id, "name": name, "at": event.get("at"), "data": _brief(data)})
    if name == "queue_waiting":
        card.position = _int(data.get("position"))
        card.wait_seconds = _int(data.get("wait_seconds"))
    elif name == "call_taken":
        card.state = CONNECTING
        card.taken_by = str(data.get("agent") or "") or None
    elif name == "transfer_result":
        card.result = str(data.get("result") or "")
        card.state = RESULT_STATES.get(card.result, card.result or card.state)
    elif name == "call_ended":
        card.state = ENDED
    elif name in PAGE_EVENTS:
        card.pages.append({"at": event.get("at"), "name": name, "text": page_line(name, data)})
    elif name == "recording" and (line := recording_line(data)):
        card.pages.append({"at": event.get("at"), "name": name, "text": line})
    elif name == "agent_note":
        card.notes.append(
            {
                "at": event.get("at"),
                "agent": data.get("agent"),
                "text": data.get("text") or "",
                "disposition": data.get("disposition"),
                "call_sid": call_sid,
            }
        )


PAGE_EVENTS = frozenset(
    {"message_sent", "message_failed", "message_opted_out", "page_opened", "page_submitted"}
)


def page_line(name: str, data: dict[str, Any]) -> str:
    """What a card says of a page sent to the caller: "Caller picked: OV 123 at 9:40"."""
    page = str(data.get("page") or "the page")
    if name == "page_submitted":
        return f"Caller picked: {_picked(data) or page}"
    if name == "page_opened":
        return f"Caller opened {page}"
    channel = "text" if data.get("channel") == "sms" else str(data.get("channel") or "message")
    if name == "message_sent":
        return f"The {channel} was sent"
    if name == "message_opted_out":
        return f"The {channel} was not sent: the number opted out of texts"
    error = str(data.get("error") or data.get("status") or "").strip()
    return f"The {channel} could not be sent" + (f": {error}" if error else "")


def recording_line(data: dict[str, Any]) -> str:
    """What a card says of a record node's message: left (how long), none, or its
    transcription once Twilio sends it; nothing for the other status callbacks."""
    text = data.get("transcription")
    if isinstance(text, str) and text.strip() and data.get("transcription_status") != "failed":
        return f'Voicemail transcribed: "{text.strip()[:300]}"'
    status = data.get("status")
    if status == "recorded":
        seconds = _int(data.get("duration")) or 0
        return f"The caller left a {seconds}-second voicemail"
    if status == "empty":
        return "The caller left no voicemail"
    if status in ("absent", "failed"):
        return "The voicemail could not be kept"
    return ""


def _picked(data: dict[str, Any]) -> str:
    """What a submission chose, in words: its summary or label, its choice's label, else its
    values."""
    for key in ("summary", "label"):
        if isinstance(data.get(key), str) and data[key].strip():
            return str(data[key]).strip()[:200]
    values = _mapping(data.get("values"))
    for key, value in values.items():  # a choice's label (ivr.pages): what the caller saw
        if (key == "label" or key.endswith("_label")) and isinstance(value, str) and value:
            return value.strip()[:200]
    shown = [str(v) for v in values.values() if isinstance(v, str | int | float)]
    return ", ".join(shown)[:200]


def unopened(entries: Iterable[FeedEntry]) -> list[str]:
    """The calls ``entries`` show events of but not their handoff: handed over before the
    entries begin (a caller waiting long in a busy hour), whose bundles :func:`reopened` needs."""
    seen: dict[str, bool] = {}
    for entry in entries:
        call_sid = str(entry.event.get("call_sid") or "")
        if call_sid:
            seen[call_sid] = seen.get(call_sid, False) or entry.event.get("name") == "handoff"
    return [call_sid for call_sid, opened in seen.items() if not opened]


def reopened(bundles: dict[str, dict[str, Any]], entries: list[FeedEntry]) -> list[FeedEntry]:
    """``entries`` after a handoff entry for each call of ``bundles`` (its latest bundle), so
    the fold opens their cards as if the handoff were among them."""
    callers: dict[str, Any] = {}
    for entry in entries:
        callers.setdefault(str(entry.event.get("call_sid") or ""), entry.event.get("caller"))
    opening = []
    for call_sid, bundle in sorted(bundles.items(), key=lambda item: item[1].get("at") or 0):
        flow = _mapping(bundle.get("flow"))
        route = _mapping(bundle.get("route"))
        event = {
            "v": 1, "name": "handoff", "at": bundle.get("at"), "channel": "voice",
            "caller": callers.get(call_sid), "call_sid": call_sid,
            "conversation": bundle.get("conversation"), "flow": flow.get("id"),
            "version": flow.get("version"), "node": None,
            "data": {
                "handoff_id": bundle.get("id"), "route": route.get("kind"),
                "target": route.get("target"), "reason": bundle.get("reason"), "bundle": bundle,
            },
        }  # fmt: skip
        opening.append(FeedEntry("0-0", event))
    return opening + entries


def _open(event: dict[str, Any], bundle: dict[str, Any], old: Card | None) -> Card:
    card = Card(
        call_sid=str(event["call_sid"]),
        caller=str(event.get("caller") or ""),
        conversation=str(event.get("conversation") or ""),
        flow=event.get("flow"),
        version=event.get("version"),
        handoff_id=str(bundle.get("id") or (event.get("data") or {}).get("handoff_id") or ""),
        bundle=bundle,
        since=float(event.get("at") or 0),
    )
    if old is not None:  # a second transfer of the same call: keep what agents already wrote
        card.notes = old.notes
        card.events = old.events
    return card


def _brief(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data for a timeline (the bundle is on the card already)."""
    return {key: value for key, value in data.items() if key != "bundle"}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def strip(cards: Iterable[Card], now: float) -> Strip:
    """The supervisor strip of ``cards`` at ``now``."""
    listed = list(cards)
    waits = [card.wait(now) for card in listed if card.waiting]
    transfers = sum(1 for card in listed for event in card.events if event["name"] == "handoff")
    return Strip(len(waits), max(waits, default=0), transfers)


def ordered(cards: dict[str, Card]) -> list[Card]:
    """Cards to show: waiting callers first (longest wait first), then the newest others."""
    waiting = sorted((c for c in cards.values() if c.waiting), key=lambda c: c.since)
    others = sorted((c for c in cards.values() if not c.waiting), key=lambda c: -c.since)
    return waiting + others


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}

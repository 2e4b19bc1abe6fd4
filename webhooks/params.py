"""The parts of a Twilio voice webhook Omnivoice uses, parsed once at the edge into an
:class:`~conversation.inbound.Inbound`.

Nothing a request carries can make parsing fail: missing or malformed fields become ``None``,
over-long ones are cut, and the caller is normalised to a session key (see
:mod:`context.callers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from context.callers import identify, to_e164
from conversation.inbound import Inbound
from ivr.states import TransferResult
from ivr.turn import Recorded

FULL_ATTESTATION = "TN-Validation-Passed-A"


def parse_call(form: Mapping[str, str], default_region: str = "US", url_root: str = "") -> Inbound:
    """Read a voice webhook's form; missing or odd fields become ``None``, never an error."""
    # A plain dict first (a repeated field keeps its first value, as MultiDict.get does):
    # werkzeug's MultiDict.get raises and catches an HTTP exception for every missing field.
    fields = form if type(form) is dict else dict(form.items())
    get = fields.get
    call_sid = (get("CallSid") or "").strip()[:64]
    # A call we placed: the person is the one called (To); the number is ours (From).
    outbound = (get("Direction") or "").startswith("outbound")
    person, ours = ("To", "From") if outbound else ("From", "To")
    return Inbound(
        contact_id=call_sid,
        caller=identify(get(person), call_sid, default_region),
        to=to_e164(get(ours), default_region),
        digits=_digits(get("Digits")),
        speech=(get("SpeechResult") or "").strip()[:512] or None,
        confidence=_float(get("Confidence")),
        status=(get("CallStatus") or "").strip().lower() or None,
        attested=(get("StirVerstat") or "").strip() == FULL_ATTESTATION,
        url_root=url_root,
        answered_by=(get("AnsweredBy") or "").strip().lower()[:32] or None,
        outbound=outbound,
    )


def _digits(raw: str | None) -> str | None:
    # Keep odd characters: they match no route and fail validation, so they reach no_match.
    if not raw:
        return None
    return raw.strip()[:64] or None


def _float(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None
    if value is None or value != value or not 0.0 <= value <= 1.0:  # NaN or out of range
        return None
    return value


# Twilio's QueueResult (an <Enqueue> action) and DialCallStatus (a <Dial> action), as the flow
# sees them. Anything else (a value Twilio adds later, garbage) is a failed transfer: the flow's
# path for it, never an error.
_QUEUE_RESULTS = {
    "bridged": TransferResult.CONNECTED,
    "bridging-in-process": TransferResult.CONNECTED,
    "hangup": TransferResult.ABANDONED,
    "redirected": TransferResult.REDIRECTED,
    "leave": TransferResult.WAITED_TOO_LONG,
    "queue-full": TransferResult.QUEUE_FULL,
    "error": TransferResult.FAILED,
    "system-error": TransferResult.FAILED,
}
_DIAL_RESULTS = {
    "completed": TransferResult.CONNECTED,
    "answered": TransferResult.CONNECTED,
    "busy": TransferResult.BUSY,
    "no-answer": TransferResult.NO_ANSWER,
    "failed": TransferResult.FAILED,
    "canceled": TransferResult.ABANDONED,
}


def transfer_result(form: Mapping[str, str]) -> TransferResult:
    """How a transfer ended, from its action callback's ``QueueResult`` or ``DialCallStatus``."""
    queue = (form.get("QueueResult") or "").strip().lower()
    if queue:
        return _QUEUE_RESULTS.get(queue, TransferResult.FAILED)
    dial = (form.get("DialCallStatus") or "").strip().lower()
    if dial == "completed" and (form.get("DialBridged") or "").strip().lower() == "false":
        return TransferResult.NO_ANSWER  # the dialled party's leg ended without being bridged
    return _DIAL_RESULTS.get(dial, TransferResult.FAILED)


def queue_state(form: Mapping[str, str]) -> dict[str, int | None]:
    """A queued caller's ``waitUrl`` parameters: position (1 is next), seconds waited, the
    queue's average wait and size; ``None`` where Twilio sent none (TaskRouter sends fewer)."""
    return {
        "position": _whole(form.get("QueuePosition")),
        "wait": _whole(form.get("QueueTime")),
        "average_wait": _whole(form.get("AvgQueueTime")),
        "size": _whole(form.get("CurrentQueueSize")),
    }


MAX_RECORDING_URL = 500
MAX_TRANSCRIPTION = 2000
_RECORDING_STATUSES = frozenset({"in-progress", "completed", "absent", "failed"})


def recorded(form: Mapping[str, str], at: float) -> Recorded:
    """A ``<Record>`` action's message: no URL when Twilio sent none (or not an http one)."""
    url = _recording_link(form.get("RecordingUrl"))
    digits = (form.get("Digits") or "").strip()[:16] or None
    return Recorded(url, _whole(form.get("RecordingDuration")) or 0, digits, at)


def recording_update(form: Mapping[str, str]) -> dict[str, Any]:
    """What a recording status callback or a transcription callback says, for the session.

    Only the fields Twilio sent are returned, so a transcription does not undo the status.
    """
    update: dict[str, Any] = {}
    status = (form.get("RecordingStatus") or "").strip().lower()
    if status:
        update["status"] = status if status in _RECORDING_STATUSES else "failed"
    if url := _recording_link(form.get("RecordingUrl")):
        update["url"] = url
    if (duration := _whole(form.get("RecordingDuration"))) is not None:
        update["duration"] = duration
    if sid := (form.get("RecordingSid") or "").strip()[:64]:
        update["sid"] = sid
    transcription = (form.get("TranscriptionStatus") or "").strip().lower()[:32]
    if transcription:
        update["transcription_status"] = transcription
        text = (form.get("TranscriptionText") or "").strip()[:MAX_TRANSCRIPTION]
        update["transcription"] = text if transcription == "completed" else None
    return update


def _recording_link(raw: str | None) -> str | None:
    url = (raw or "").strip()
    if not url.startswith(("https://", "http://")) or len(url) > MAX_RECORDING_URL:
        return None
    return url


def _whole(raw: str | None) -> int | None:
    try:
        value = int((raw or "").strip())
    except ValueError:
        return None
    return value if 0 <= value < 10**7 else None

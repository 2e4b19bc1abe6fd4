"""The named states of a conversation, in one place: what a session waits for, how it ended, how a
call starts, and the names of the events a turn records.

They are :class:`enum.StrEnum` members, so they are stored in a session document (and written to
the event stream) as their plain text values, and a stored document from before they existed
reads back unchanged. Code compares members, never strings.
"""

from __future__ import annotations

from enum import StrEnum


class Waiting(StrEnum):
    """What a session waits for between two webhooks."""

    INPUT = "input"  # the caller's answer to a node's gather
    FETCH = "fetch"  # a data dip's result (within one webhook)
    RESUME_OFFER = "resume"  # "continue or start over?" of a returning caller
    RESUME_CODE = "resume_code"  # a caller without caller ID keying a resume code
    RECORDING = "recording"  # a record node's message (its <Record> action)
    PAGE = "page"  # a wait_for node: a page's submission, with hold prompts meanwhile


class Status(StrEnum):
    """A session's life: active while the caller is in self-service, then one of the others."""

    ACTIVE = "active"
    COMPLETED = "completed"
    TRANSFERRED = "transferred"
    INTERRUPTED = "interrupted"  # the call ended while the flow was mid-way


class ConcurrentCalls(StrEnum):
    """What a flow does when a call arrives from a number whose previous call is still live."""

    SEPARATE = "separate"  # the new call gets a session of its own; the live call goes on
    TAKEOVER = "takeover"  # the new call resumes the session; the live call is told goodbye


class PlanKind(StrEnum):
    """How a new call starts, decided by :func:`ivr.resume.plan`."""

    FRESH = "fresh"
    SEPARATE = "separate"  # another call from this number is live: start afresh beside it
    OFFER = "offer"  # ask the caller whether to continue
    CONTINUE = "continue"  # put the caller straight back at the checkpoint
    TRANSFERRED = "transferred"  # the caller was with an agent: the flow's transferred node
    ASK_CODE = "ask_code"  # a caller without caller ID: ask for a resume code


class TransferResult(StrEnum):
    """How a transfer ended, from Twilio's ``QueueResult`` or ``DialCallStatus``.

    The first three end the flow's part (a person took the call, the caller hung up, or the call
    was moved to an agent from the console); the others are a :data:`ivr.schema.TransferOutcome`
    the flow routes with ``transfer.on``.
    """

    CONNECTED = "connected"
    ABANDONED = "abandoned"
    REDIRECTED = "redirected"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    QUEUE_FULL = "queue_full"
    WAITED_TOO_LONG = "waited_too_long"
    FAILED = "failed"


class EventName(StrEnum):
    """Every event a turn can record (the ``name`` of the event schema, see README)."""

    # a call begins: "resume_" + the plan kind
    RESUME_FRESH = "resume_fresh"
    RESUME_OFFER = "resume_offer"
    RESUME_CONTINUE = "resume_continue"
    RESUME_TRANSFERRED = "resume_transferred"
    RESUME_ASK_CODE = "resume_ask_code"
    RESUME_SEPARATE = "resume_separate"
    CALL_SUPERSEDED = "call_superseded"
    FLOW_VERSION_GONE = "flow_version_gone"
    UNKNOWN_CALL_RESTARTED = "unknown_call_restarted"
    # resume
    RESUME_OFFERED = "resume_offered"
    RESUME_DECLINED = "resume_declined"
    RESUMED = "resumed"
    TRANSFERRED_CALLER_BACK = "transferred_caller_back"
    SENSITIVE_WITHHELD = "sensitive_withheld"
    SENSITIVE_RECOLLECTED = "sensitive_recollected"
    CALLER_VERIFIED = "caller_verified"
    # resume codes
    RESUME_CODE_ISSUED = "resume_code_issued"
    RESUME_CODE_SKIPPED = "resume_code_skipped"
    RESUME_CODE_WRONG = "resume_code_wrong"
    RESUME_CODE_FAILED = "resume_code_failed"
    RESUME_CODES_THROTTLED = "resume_codes_throttled"
    # the flow
    INPUT = "input"
    NO_INPUT = "no_input"
    NO_MATCH = "no_match"
    NOT_KEYPAD_DIGITS = "not_keypad_digits"
    LOW_CONFIDENCE = "low_confidence"
    HTTP_ERROR = "http_error"
    TEMPLATE_FAILED = "template_failed"
    FALLBACK = "fallback"
    LOOP_GUARD = "loop_guard"
    HANDOFF = "handoff"  # a transfer: its data holds the handoff bundle
    TRANSFER_RESULT = "transfer_result"  # how the transfer ended (connected, no answer, ...)
    QUEUE_WAITING = "queue_waiting"  # a queued caller's position and wait (agents' feed only)
    CALLBACK_REQUESTED = "callback_requested"
    TOPIC = "topic"  # a node's ``topic:``: what the conversation is about
    RECORDING = "recording"  # a record node's message: url, duration, status (and transcription)
    SESSION_ENDED = "session_ended"
    # messages and pages (multimodal)
    MESSAGE_QUEUED = "message_queued"  # a send_sms/send_email: its data holds the sealed job
    MESSAGE_SENT = "message_sent"  # Twilio or the SMTP server took it
    MESSAGE_DELIVERED = "message_delivered"  # Twilio's status callback: delivered (or read)
    MESSAGE_FAILED = "message_failed"  # refused for good, undelivered, or retries ran out
    MESSAGE_OPTED_OUT = "message_opted_out"  # not sent: the number texted STOP
    PAGE_OPENED = "page_opened"
    PAGE_REJECTED = "page_rejected"  # a submission failed the page's checks (fields named)
    PAGE_SUBMITTED = "page_submitted"
    PAGE_NOT_SUBMITTED = "page_not_submitted"  # a wait_for gave up: a key pressed, or timed out
    CALL_REDIRECTED = "call_redirected"  # a live call was moved on by a page's submission
    SMS_RECEIVED = "sms_received"  # an inbound text
    SMS_OPTED_OUT = "sms_opted_out"  # STOP and its synonyms
    SMS_OPTED_IN = "sms_opted_in"  # START and its synonyms
    # reaching out first
    OUTBOUND_REQUESTED = "outbound_requested"  # a call was placed (Twilio took it)
    OUTBOUND_SENT = "outbound_sent"  # a text was sent (Twilio took it)
    OUTBOUND_REFUSED = "outbound_refused"  # consent, quiet hours, pacing or bad input
    OUTBOUND_FAILED = "outbound_failed"  # Twilio refused it
    OUTBOUND_ANSWERED = "outbound_answered"  # the callee (or a machine) answered
    OUTBOUND_UNANSWERED = "outbound_unanswered"  # busy, no answer, failed, canceled
    # agents
    CALL_TAKEN = "call_taken"  # an agent pressed Take call: the caller is being connected
    TAKE_FAILED = "take_failed"  # Twilio refused to move the caller to the agent
    AGENT_NOTE = "agent_note"  # a note and/or disposition, kept in the history
    # the shell
    CALL_ENDED = "call_ended"
    DUPLICATE_WEBHOOK = "duplicate_webhook"
    SUPERSEDED_CALL_FENCED = "superseded_call_fenced"
    SAVE_CONFLICT = "save_conflict"


def start_event(kind: PlanKind) -> EventName:
    """The event that records how a call started."""
    return EventName(f"resume_{kind.value}")

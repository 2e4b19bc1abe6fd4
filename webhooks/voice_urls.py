"""The voice URLs Twilio follows, and how TwiML names them (under the app's mount point).

``/voice`` and ``/voice/status`` are set on the phone number; the others are written into
TwiML: a gather's answer, a transfer's result (``action``), a queued caller's hold loop
(``waitUrl``), the sentence a dialled agent hears before connecting (``<Number url>``), a
record node's message (``<Record action>``) and Twilio's later word on that recording
(``recordingStatusCallback``, ``transcribeCallback``).
Twilio signs each request with the URL as written here, query included, so its parameters
(step, flow, node, handoff id, caller) cannot be changed by anyone without the auth token.
"""

from __future__ import annotations

from urllib.parse import quote

INCOMING_PATH = "/voice"
ANSWER_PATH = "/voice/answer"
STATUS_PATH = "/voice/status"
TRANSFER_PATH = "/voice/transfer"
WAIT_PATH = "/voice/wait"
WHISPER_PATH = "/voice/whisper"
RECORD_PATH = "/voice/record"
RECORDING_PATH = "/voice/recording"


def answer_url(root: str, step: int) -> str:
    """The URL a gather at ``step`` posts its answer to, under the mount point ``root``."""
    return f"{root}{ANSWER_PATH}?step={step}"


def transfer_url(root: str, step: int) -> str:
    """Where Twilio reports how a transfer made at ``step`` ended (QueueResult, DialCallStatus)."""
    return f"{root}{TRANSFER_PATH}?step={step}"


def wait_url(root: str, flow: str, node: str, handoff_id: str) -> str:
    """The hold loop of a caller queued by ``node`` of ``flow``."""
    return f"{root}{WAIT_PATH}?flow={quote(flow)}&node={quote(node)}&h={quote(handoff_id)}"


def record_url(root: str, step: int) -> str:
    """Where a ``<Record>`` made at ``step`` posts its message (RecordingUrl, Digits...)."""
    return f"{root}{RECORD_PATH}?step={step}"


def recording_url(root: str, node: str, caller: str) -> str:
    """Where Twilio reports on the recording of ``node`` later (its status, a transcription);
    ``caller`` is the session's key, which those callbacks do not carry."""
    return f"{root}{RECORDING_PATH}?node={quote(node)}&c={quote(caller)}"


def whisper_url(root: str, handoff_id: str) -> str:
    """What a dialled agent hears about handoff ``handoff_id`` before the caller is connected."""
    return f"{root}{WHISPER_PATH}?h={quote(handoff_id)}"

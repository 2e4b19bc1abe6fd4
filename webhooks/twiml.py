"""The one place TwiML is built, with ``twilio.twiml.voice_response`` (never by string building).

:func:`render` turns the engine's channel-neutral actions into a ``<Response>``. A ``<Gather>`` is
followed by a ``<Redirect>`` to the same answer URL, so silence reaches the flow as a no-input
event instead of falling off the end of the document. Every document leaves through
:func:`document`, which drops the characters XML 1.0 cannot carry (control characters from a
caller's speech, a data dip's JSON or a flow's text; lone surrogates from JSON), so whatever the
input, Twilio gets a document that parses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twilio.twiml.voice_response import Gather as GatherVerb
from twilio.twiml.voice_response import VoiceResponse

from ivr.turn import Action, Gather, Hangup, Pause, Play, Record, Say, Speech, Transfer
from webhooks import twiml_transfers
from webhooks.voice_urls import record_url, recording_url, transfer_url, whisper_url

APOLOGY = "Sorry, we are having trouble right now."
CONNECTING = "Please hold while I connect you to someone who can help."
GOODBYE = "Please call again later. Goodbye."

# What ElementTree writes that XML 1.0 forbids: C0 control characters other than tab, newline and
# carriage return, U+FFFE and U+FFFF, written as they are, and lone surrogates, which UTF-8 cannot
# encode, written as character references (&#55296; to &#57343;). ElementTree escapes every "&" of
# the text it is given, so a "&#" in its output is always one of its own references.
_SUSPECT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|&#5[5-7][0-9]{3};")
_SURROGATE_REFS = range(0xD800, 0xE000)


@dataclass(frozen=True)
class TransferLinks:
    """What a transfer's TwiML needs besides the action: the mount point, the step its result
    comes back naming, and the TaskRouter workflow queues go through (if one is configured)."""

    root: str = ""
    step: int = 0
    workflow_sid: str | None = None


class VoiceRenderer:
    """The voice channel's renderer: TwiML whose gathers post to ``answer_url(root, step)``."""

    def __init__(
        self, answer_url: Callable[[str, int], str], workflow_sid: str | None = None
    ) -> None:
        self.answer_url = answer_url
        self.workflow_sid = workflow_sid

    def render(self, actions: tuple[Action, ...], url_root: str, step: int) -> str:
        """TwiML for ``actions``; the caller's answer comes back naming ``step``."""
        answer = self.answer_url(url_root, step)
        if actions and isinstance(actions[-1], Transfer | Record):  # either ends its turn
            return render(actions, answer, TransferLinks(url_root, step, self.workflow_sid))
        return render(actions, answer)


def render(actions: Iterable[Action], answer_url: str, links: TransferLinks | None = None) -> str:
    """TwiML for ``actions``; gathers post their answer to ``answer_url``.

    Actions are immutable values, so the same actions and URL always give the same document:
    the TwiML of a node whose prompts do not depend on the caller is built once per flow version
    (and step URL) and then reused. Turns with anything made for this caller (a rendered
    template, a resume code, a transfer's context) are rendered every time and never kept.
    """
    frozen = tuple(actions)
    if any(_personal(action) for action in frozen):
        return _render(frozen, answer_url, links or TransferLinks())
    return _render_cached(frozen, answer_url)


def _personal(action: Action) -> bool:
    if isinstance(action, Say | Play):
        return action.personal
    if isinstance(action, Gather):
        return any(_personal(part) for part in action.prompt)
    return isinstance(action, Transfer | Record)


@functools.lru_cache(maxsize=4096)
def _render_cached(actions: tuple[Action, ...], answer_url: str) -> str:
    return _render(actions, answer_url, TransferLinks())


def _render(actions: tuple[Action, ...], answer_url: str, links: TransferLinks) -> str:
    response = VoiceResponse()
    for action in actions:
        if isinstance(action, Gather):
            _gather(response, action, answer_url)
        elif isinstance(action, Transfer):
            twiml_transfers.render(response, action, links.root, links.step, links.workflow_sid)
        elif isinstance(action, Record):
            _record(response, action, links)
        elif isinstance(action, Hangup):
            response.hangup()
        else:
            _speak(response, action)
    return document(response)


def document(response: VoiceResponse) -> str:
    """``response`` as the text of an XML document that parses, whatever its text held.

    Nearly every document is printable throughout (no control character, no non-character)
    and holds no character reference of ElementTree's, which two scans in C tell in about a
    microsecond: a third of one regular-expression search (3 us on a 400-character reply). Only
    a document with a forbidden character is rewritten, without it.
    """
    text = str(response)
    if text.isprintable() and "&#5" not in text:
        return text
    if _SUSPECT.search(text) is None:  # a tab, a newline or other printable-but-allowed text
        return text
    return _SUSPECT.sub(_drop_forbidden, text)


def _drop_forbidden(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 1 or int(found[2:-1]) in _SURROGATE_REFS:
        return ""
    return found  # a character reference to an allowed character (not one ElementTree writes)


def _speak(target: VoiceResponse | GatherVerb, part: Speech) -> None:
    if isinstance(part, Say):
        target.say(part.text, voice=part.voice, language=part.language, loop=_loop(part.loop))
    elif isinstance(part, Play):
        target.play(part.url, loop=_loop(part.loop))
    elif isinstance(part, Pause):
        target.pause(length=part.seconds)


def _loop(count: int) -> int | None:
    return count if count != 1 else None


def _gather(response: VoiceResponse, gather: Gather, answer_url: str) -> None:
    speech = "speech" in gather.input
    verb = response.gather(
        input=" ".join(gather.input),  # a list would be stringified wrongly by the SDK
        action=answer_url,
        method="POST",
        timeout=gather.timeout,
        num_digits=gather.num_digits,
        finish_on_key=gather.finish_on_key,
        speech_timeout=gather.speech_timeout if speech else None,
        hints=",".join(gather.hints) if speech and gather.hints else None,
        language=gather.language if speech else None,
    )
    for part in gather.prompt:
        _speak(verb, part)
    response.redirect(answer_url, method="POST")


def _record(response: VoiceResponse, record: Record, links: TransferLinks) -> None:
    """A ``<Record>`` posting its message to the record URL of the step, and a redirect there:
    Twilio does not post an empty recording but goes on to the next verb."""
    action = record_url(links.root, links.step)
    callback = recording_url(links.root, record.node, record.caller)
    response.record(
        action=action,
        method="POST",
        timeout=record.timeout,
        finish_on_key=record.finish_on_key,
        max_length=record.max_length,
        play_beep=record.beep,
        recording_status_callback=callback,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
        transcribe=True if record.transcribe else None,
        transcribe_callback=callback if record.transcribe else None,
    )
    response.redirect(action, method="POST")


def fallback(
    number: str | None = None,
    queue: str | None = None,
    reason: str = APOLOGY,
    language: str | None = None,
) -> str:
    """What a caller hears when something failed: an apology, then a person, else goodbye
    (the built-in sentences after a flow's own apology only in English)."""
    response = VoiceResponse()
    spoken = {"language": language} if language else {}
    response.say(reason, **spoken)
    english = not language or language.lower().startswith("en")
    if number:
        if english:
            response.say(CONNECTING)
        response.dial(number)
    elif queue:
        if english:
            response.say(CONNECTING)
        response.enqueue(queue)
    else:
        if english:
            response.say(GOODBYE)
        response.hangup()
    return document(response)


HOLD_PAUSE_SECONDS = 20


def hold_loop(parts: Iterable[Speech], music: str | None, leave: bool = False) -> str:
    """One pass of a queued caller's hold loop (``waitUrl``): the prompts, then the music (or
    a pause); with ``leave``, the caller leaves the queue (``<Leave/>``, its longest wait)."""
    response = VoiceResponse()
    if leave:
        response.leave()
        return document(response)
    for part in parts:
        _speak(response, part)
    if music:
        response.play(music)
    else:
        response.pause(length=HOLD_PAUSE_SECONDS)
    return document(response)


def whisper(sentence: str) -> str:
    """What a dialled agent hears before the caller is connected."""
    response = VoiceResponse()
    response.say(sentence)
    return document(response)


def empty() -> str:
    """A document that does nothing (the call is already somewhere else)."""
    return document(VoiceResponse())


def hangup(text: str | None = None) -> str:
    """A short goodbye (or nothing) and a hang-up."""
    response = VoiceResponse()
    if text:
        response.say(text)
    response.hangup()
    return document(response)


AGENT_RING_SECONDS = 20


def take_call(
    root: str, step: int, handoff_id: str, client: str | None = None, phone: str | None = None
) -> str:
    """What a waiting caller is moved to when an agent takes the call from the console.

    The agent's Voice SDK ``client`` (with the handoff id as a ``<Parameter>``) or else their
    ``phone`` (which first hears the whisper of the handoff) is dialled; how it ended goes to the
    transfer URL of the caller's ``step``, as any transfer's result does.
    """
    response = VoiceResponse()
    dial = response.dial(action=transfer_url(root, step), method="POST", timeout=AGENT_RING_SECONDS)
    if client:
        target = dial.client()
        target.identity(client)
        target.parameter(name="handoff_id", value=handoff_id)
    elif phone:
        dial.number(phone, url=whisper_url(root, handoff_id), method="POST")
    else:
        raise ValueError("an agent to dial needs a client identity or a phone number")
    return document(response)

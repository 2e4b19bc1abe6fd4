"""The SMS channel's renderer: what a node says, as the text of a ``<Message>`` reply.

One node, several renderings: the engine's actions are channel-neutral, and a text carries only
words. So every ``<Say>`` is kept (in order, joined by a space), a gather's prompt is kept (it
is the question the caller can answer by texting back), and what cannot be read (``<Play>``,
``<Pause>``) or done by text (a transfer, a recording, a hang-up) is dropped. Replies are built
with ``twilio.twiml.messaging_response`` only; text no XML 1.0 document can carry is removed
first, and a reply is cut to :data:`MAX_REPLY` characters, the most one Twilio message holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from twilio.twiml.messaging_response import MessagingResponse

from ivr.turn import Action, Gather, Say, Speech

MAX_REPLY = 1600  # characters of one Twilio message body
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def text_of(actions: Iterable[Action]) -> str:
    """The words of ``actions``, as one text: Say texts and gather prompts, joined."""
    words: list[str] = []
    for action in actions:
        if isinstance(action, Say):
            words.append(action.text)
        elif isinstance(action, Gather):
            words.extend(_said(action.prompt))
    return " ".join(w.strip() for w in words if w.strip())


def _said(prompt: Iterable[Speech]) -> list[str]:
    return [part.text for part in prompt if isinstance(part, Say)]


def message(text: str | None) -> str:
    """A messaging ``<Response>`` sending ``text`` back (no ``<Message>`` for no text)."""
    response = MessagingResponse()
    body = _FORBIDDEN.sub("", text or "").strip()[:MAX_REPLY]
    if body:
        response.message(body)
    return str(response)


class SmsRenderer:
    """Renders a turn's actions as a messaging reply (the conversation service's Renderer)."""

    def render(self, actions: tuple[Action, ...], url_root: str, step: int) -> str:
        """The ``<Response><Message>`` of what ``actions`` say; the step is not needed: the
        caller's next text is matched against the flow's ``sms.replies``."""
        return message(text_of(actions))

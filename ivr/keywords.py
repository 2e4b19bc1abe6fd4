"""The keywords a text message may be: STOP, START or HELP, with the carriers' synonyms.

Carriers and Twilio's own opt-out handling recognise these words when they are the whole
message, in any case and with spaces around them: ``stop``, ``Stop `` and ``UNSUBSCRIBE`` are
an opt-out, ``stop texting me`` is not (it is an ordinary text, and goes to the flow). The
lists are Twilio's standard ones; :func:`keyword` is pure, so the webhook and the tests share it.
"""

from __future__ import annotations

from enum import StrEnum


class Keyword(StrEnum):
    """What a keyword message asks for."""

    STOP = "stop"  # opt out of texts from this number
    START = "start"  # opt back in
    HELP = "help"  # who is this, and how to stop


_WORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), Keyword.STOP),
    **dict.fromkeys(("START", "YES", "UNSTOP"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}
_LONGEST = max(len(word) for word in _WORDS)
_VALUES = frozenset(word.value for word in Keyword)


def keyword(body: str | None) -> Keyword | None:
    """The keyword ``body`` is (the whole message, any case), or ``None`` for any other text."""
    word = (body or "").strip()
    if not word or len(word) > _LONGEST:
        return None
    return _WORDS.get(word.upper())


def of_opt_out_type(raw: str | None) -> Keyword | None:
    """Twilio's ``OptOutType`` (Advanced Opt-Out: ``STOP``, ``START``, ``HELP``) as a keyword."""
    value = (raw or "").strip().lower()
    return Keyword(value) if value in _VALUES else None

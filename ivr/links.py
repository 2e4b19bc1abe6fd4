"""Links to a flow's pages inside message bodies, as the pure engine sees them.

``{{ link('flights') }}`` in a ``send_sms`` or ``send_email`` body renders to a *mark*
(``[[link:ID]]``): the engine knows which page to link and derives the link's id, but signing a
URL needs the app's secret and its public address, which belong to the shell. The sender
replaces every mark with the signed URL (:func:`fill`) when it sends the message, after it has
issued the link (:mod:`context.links`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping

MARK = "[[link:{id}]]"
_MARKS = re.compile(r"\[\[link:(LK[0-9a-z]{20})\]\]")


def link_id(call_sid: str, step: int, node: str, page: str) -> str:
    """The id of the link to ``page`` that ``node`` makes at ``step`` of a call.

    Derived, not random, so a webhook Twilio retries links the same page with the same id; not
    guessable without the CallSid, and worthless without the URL's signature anyway.
    """
    digest = hashlib.sha256(f"{call_sid}\x00{step}\x00{node}\x00{page}".encode()).hexdigest()
    return f"LK{digest[:20]}"


def mark(link: str) -> str:
    """What ``{{ link(...) }}`` renders to in a message body."""
    return MARK.format(id=link)


def marks(text: str) -> list[str]:
    """The link ids marked in ``text``, in order, each once."""
    return list(dict.fromkeys(_MARKS.findall(text)))


def fill(text: str, urls: Mapping[str, str] | Callable[[str], str]) -> str:
    """``text`` with every mark replaced by its link's URL (``urls``: by id, or a function)."""
    find = urls if callable(urls) else urls.__getitem__
    return _MARKS.sub(lambda match: find(match.group(1)), text)

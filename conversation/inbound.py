"""What a channel hands the conversation service: one inbound contact, parsed once at the edge.

A voice webhook, an incoming SMS, a page submission and an agent's action all become an
:class:`Inbound`: who it is about (the caller key, normalised by :mod:`context.callers`), the
contact it belongs to (a call's CallSid, a message's MessageSid: the scope in which a retried
request gets the reply already sent), what was said or keyed, and where replies' own URLs start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from context.callers import Caller

Channel = Literal["voice", "sms", "web"]


@dataclass(frozen=True)
class Inbound:
    """One inbound contact of a conversation."""

    contact_id: str
    caller: Caller
    to: str | None
    digits: str | None = None
    speech: str | None = None  # what was said (voice) or written (SMS, web)
    confidence: float | None = None
    status: str | None = None  # a delivery or call status callback's status
    attested: bool = False  # the caller ID passed STIR/SHAKEN full attestation
    url_root: str = ""  # what goes before our own paths in the URLs a reply carries
    channel: Channel = "voice"
    answered_by: str | None = None  # an outbound call's answering-machine detection result
    outbound: bool = False  # a contact we started (an outbound call), not the customer

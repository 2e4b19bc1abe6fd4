"""Who is calling: the caller key a session is stored under, normalised once at the edge.

A caller with a usable number is keyed by its E.164 form, so ``+1 (415) 555-0100`` and
``+14155550100`` are the same person. A withheld caller ID (``anonymous``, ``restricted``, the
``+266696687`` placeholder some carriers send, an empty ``From``) cannot be recognised, so the
call's own CallSid is used; an agent app caller keeps its ``client:name`` identity and a SIP
caller its ``sip:`` URI.

Distinct identities always get distinct keys: a ``client:`` or ``sip:`` identity is kept as sent
(only the scheme is lower-cased: it is case-insensitive, a SIP user part is not), one over
:data:`MAX_IDENTITY` characters is cut and followed by ``#`` and the SHA-256 of the whole (longer
than any uncut key, so it equals none), and a CallSid that could pass for another kind of key
(one starting with ``+`` or holding ``:``) is prefixed with ``call:``. Each kind's keys start
differently (``+``, ``client:``, ``sip:``, ``call:`` or neither), so no two kinds share one;
:func:`context.keys.hash_tag` then puts any key in a Redis Cluster hash tag injectively too.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

import phonenumbers

WITHHELD = {
    "", "anonymous", "unknown", "restricted", "private", "blocked", "unavailable",
    "+266696687", "266696687", "+7378742833", "+2562533", "+86282452253", "+8656696",
}  # fmt: skip


@dataclass(frozen=True)
class Caller:
    """A normalised caller: ``key`` stores the session; ``recognised`` is false for CallSid keys."""

    key: str
    recognised: bool
    kind: str  # "number", "client", "sip" or "withheld"


# What Twilio sends for nearly every North American caller, already in E.164: a NANP number whose
# area code and exchange start with 2-9. phonenumbers reads each such string back unchanged (a
# property test holds the two together), and its parse is most of a new caller's webhook cost.
_NANP_E164 = re.compile(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}")


@functools.lru_cache(maxsize=8192)
def to_e164(raw: str | None, default_region: str = "US") -> str | None:
    """``raw`` as an E.164 number, or ``None`` if it is not a possible phone number."""
    if not raw:
        return None
    text = raw.strip()
    if len(text) == 12 and _NANP_E164.fullmatch(text):
        return text
    return _parsed_e164(text, default_region)


def _parsed_e164(text: str, default_region: str) -> str | None:
    """:func:`to_e164` by phonenumbers' parse, for every form of number."""
    if len(text) > 40:
        return None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


MAX_IDENTITY = 128  # characters of a client or SIP identity kept as they are


def identify(from_: str | None, call_sid: str, default_region: str = "US") -> Caller:
    """The :class:`Caller` for a webhook's ``From`` and ``CallSid``."""
    raw = (from_ or "").strip()
    if raw[:7].lower() == "client:" and len(raw) > 7:
        return Caller(_bounded("client:" + raw[7:]), True, "client")
    if raw[:4].lower() == "sip:" and len(raw) > 4:
        return Caller(_bounded("sip:" + raw[4:]), True, "sip")
    if raw.lower() not in WITHHELD:
        number = to_e164(raw, default_region)
        if number is not None and number not in WITHHELD:
            return Caller(number, True, "number")
    if call_sid.startswith("+") or ":" in call_sid:  # never mistaken for a number, SIP or client
        return Caller(f"call:{call_sid}", False, "withheld")
    return Caller(call_sid, False, "withheld")


def _bounded(identity: str) -> str:
    """``identity``, or for a long one its first characters, ``#`` and the SHA-256 of it all."""
    if len(identity) <= MAX_IDENTITY:
        return identity
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{identity[:MAX_IDENTITY]}#{digest}"


def masked(caller_key: str) -> str:
    """A caller key fit for logs: the last four characters only."""
    return f"***{caller_key[-4:]}" if len(caller_key) > 4 else "***"

"""The replies already sent to inbound texts, by MessageSid: a retried webhook is answered
the same, and what the first one recorded is not recorded again.

Twilio retries an SMS webhook that failed or was slow with the same ``MessageSid``. The first
request :meth:`TextReplies.claim`\\ s the text (``SET NX`` with a TTL, and a ``GET`` in the same
round trip); a later copy finds the claim and gets the reply the first one kept
(:meth:`TextReplies.keep`), or an empty reply while the first one is still at work. A request
that fails gives its claim back (:meth:`TextReplies.release`), and one that dies holds it for
a minute only, so Twilio's retry is handled afresh rather than answered with nothing. Replies
are sealed like the session's cached replies (they may carry what the flow said to the caller).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from context.keys import Keys
from context.redis_errors import STORE_UNAVAILABLE, describe
from context.session_documents import SessionCodec
from ivr.errors import StoreUnavailable

REPLY_TTL = 2 * 86400  # Twilio gives up retrying long before
PENDING = "-"  # the claim of a text whose reply is not written yet
PENDING_TTL = 60  # seconds a claim lasts without its reply: past Twilio's 15 s, a crash's end


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: ``first`` (this request handles the text), or the reply kept."""

    first: bool
    reply: str | None = None  # what the first request answered (None: not answered yet)


class TextReplies:
    """Claims inbound texts and keeps their replies in Redis."""

    def __init__(
        self, connection: Any, keys: Keys, codec: SessionCodec, ttl: int = REPLY_TTL
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.codec = codec
        self.ttl = ttl

    def claim(self, caller: str, message_sid: str) -> Claim:
        """Claim the text ``message_sid`` of ``caller``.

        Raises:
            StoreUnavailable: Redis does not answer.
        """
        key = self.keys.text_reply(caller, message_sid)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(key, PENDING, nx=True, ex=PENDING_TTL)
                pipe.get(key)
                claimed, stored = pipe.execute()
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"Redis did not answer a text's claim: {describe(exc)}"
            ) from None
        if claimed:
            return Claim(True)
        text = stored.decode("utf-8") if isinstance(stored, bytes) else stored
        if text is None or text == PENDING:
            return Claim(False)
        return Claim(False, self.codec.open_reply(text))

    def keep(self, caller: str, message_sid: str, reply: str) -> None:
        """Keep the reply sent to ``message_sid``; a failure is only logged by the caller."""
        key = self.keys.text_reply(caller, message_sid)
        try:
            self.redis.set(key, self.codec.seal_reply(reply), ex=self.ttl)
        except STORE_UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis did not keep a text's reply: {describe(exc)}") from None

    def release(self, caller: str, message_sid: str) -> None:
        """Give back the claim of a text that could not be handled (its retry handles it)."""
        with contextlib.suppress(*STORE_UNAVAILABLE):  # else the claim lapses after PENDING_TTL
            self.redis.delete(self.keys.text_reply(caller, message_sid))

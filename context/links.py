"""Signed links to pages: what a link points at (in Redis) and the signature on its URL.

A link's URL is ``{PUBLIC_BASE_URL}/p/{token}``, the token being the link's id signed with a
timestamp by ``itsdangerous`` under ``SECRET_KEY`` (about 50 characters, so a text stays one
segment). :meth:`LinkStore.issue` stores what the link is bound to (the caller's session, the
flow, the page, the conversation) in Redis when the message carrying it is sent;
:meth:`LinkStore.open` checks a token and finds its record:

- a token that does not verify (tampered with, made with another key) raises
  :class:`LinkTampered` (403);
- a token older than its page's ``expires`` raises :class:`LinkExpired` (410) with the record,
  which is kept a week longer than the link works so the "expired" page can offer a new link or
  a call-back to the right person.

Whether the record is for the page asked for, or for the caller's current conversation, is the
page's business (:mod:`pages`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from context.keys import Keys
from ivr.errors import OmnivoiceError, StoreUnavailable

LINK_PATH = "/p/"
KEPT_AFTER_EXPIRY = 7 * 86400  # seconds a link's record outlives the link itself
_SALT = "omnivoice.page-link"


class LinkRefused(OmnivoiceError):
    """A page link that cannot be used."""


class LinkTampered(LinkRefused):
    """The token's signature does not verify: someone changed it, or made it up."""


class LinkExpired(LinkRefused):
    """The link was genuine but is too old; ``record`` says whose it was (if still known)."""

    def __init__(self, message: str, record: LinkRecord | None) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class LinkRecord:
    """What one link is bound to."""

    id: str
    caller: str  # the session's key (the caller's E.164 number, or the call's key)
    flow: str
    page: str
    conversation: str
    call_sid: str  # the call that sent it (the one a submission redirects, while live)
    issued_at: float
    expires: int  # seconds the link works
    via: str = "sms"  # sms, email, agent

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> LinkRecord:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**data)


class LinkStore:
    """Issues and opens page links (records in Redis, URLs signed with the secret key)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, secret_key: str, public_base_url: str
    ) -> None:
        self.redis = client
        self.keys = keys
        self.signer = TimestampSigner(secret_key, salt=_SALT)
        self.base = public_base_url.rstrip("/")

    def url(self, link_id: str) -> str:
        """The URL to put in a message for link ``link_id``."""
        return f"{self.base}{LINK_PATH}{self.signer.sign(link_id).decode()}"

    def issue(self, record: LinkRecord) -> str:
        """Store ``record`` (again, harmlessly, for a retried send) and return the link's URL.

        Raises:
            StoreUnavailable: Redis does not answer (the sender retries later).
        """
        try:
            self.redis.set(
                self.keys.link(record.id), record.to_json(), ex=record.expires + KEPT_AFTER_EXPIRY
            )
        except redis.RedisError as exc:
            raise StoreUnavailable(f"link cannot be stored: {type(exc).__name__}") from exc
        return self.url(record.id)

    def open(self, token: str) -> LinkRecord:
        """The record of a link's token, if the token is genuine and young enough.

        Raises:
            LinkTampered: the signature does not verify, or no such link was ever issued.
            LinkExpired: the link is older than its page allows.
            StoreUnavailable: Redis does not answer.
        """
        try:
            link_id = self.signer.unsign(token).decode()
        except SignatureExpired:  # cannot happen without max_age; kept for clarity
            raise LinkExpired("this link has expired", None) from None
        except BadSignature:
            raise LinkTampered("this link is not one we made") from None
        record = self.find(link_id)
        if record is None:
            raise LinkExpired("this link is no longer known", None)
        try:
            self.signer.unsign(token, max_age=record.expires)
        except SignatureExpired:
            raise LinkExpired("this link has expired", record) from None
        except BadSignature:
            raise LinkTampered("this link is not one we made") from None
        return record

    def find(self, link_id: str) -> LinkRecord | None:
        """The record of ``link_id``, if it is still kept."""
        try:
            raw = self.redis.get(self.keys.link(link_id))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"link cannot be read: {type(exc).__name__}") from exc
        if raw is None:
            return None
        try:
            return LinkRecord.from_json(raw)
        except (orjson.JSONDecodeError, TypeError):
            return None

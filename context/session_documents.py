"""Session documents: how a :class:`~ivr.session.Session` is written to Redis and read back.

A document is the session's JSON (orjson, or json for what only json can write). Its secrets are
not in it: the values at the session's sensitive paths, everything ``held`` for a caller still to
be verified, and any transfer context that names a sensitive path are taken out and stored
together as one sealed field, ``sealed`` (see :mod:`context.sealing`), and put back on reading.
A reply cached for a retried webhook of such a session is sealed too, since the TwiML may read
the values out. A document without secrets costs nothing more than before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from context.sealing import SealBroken, Sealer
from ivr import sensitive
from ivr.errors import SessionCorrupt
from ivr.session import Session

SEALED_FIELD = "sealed"
SEALED_REPLY = "sealed:"  # a reply starting so is sealed; TwiML starts with "<"


class SessionCodec:
    """Encodes and decodes session documents, sealing their sensitive parts with ``sealer``."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    def encode(self, session: Session) -> tuple[bytes, bool]:
        """The document for ``session`` and whether any of it was sealed."""
        data = session.to_dict()
        secrets = _secrets(session, data) if session.sensitive or session.held else None
        if secrets:
            data[SEALED_FIELD] = self.sealer.seal(_dumps(secrets))
        return _dumps(data), bool(secrets)

    def decode(self, safe_key: str, raw: Any) -> Session:
        """The session in document ``raw``; ``safe_key`` (masked) names it in errors.

        Raises:
            SessionCorrupt: the document is not one, or its sealed part cannot be opened.
        """
        try:
            data = _loads(raw)
            if isinstance(data, dict) and SEALED_FIELD in data:
                _put_back(data, _loads(self.sealer.open(data.pop(SEALED_FIELD))))
            return Session.from_dict(data)
        except SealBroken as exc:
            raise SessionCorrupt(safe_key, str(exc)) from None
        except (TypeError, ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is one
            raise SessionCorrupt(safe_key, str(exc)) from None

    def seal_reply(self, reply: str) -> str:
        """``reply`` as stored beside a sealed document."""
        return SEALED_REPLY + self.sealer.seal(reply.encode("utf-8"))

    def open_reply(self, stored: str | None) -> str | None:
        """A cached reply as sent; ``None`` (ask again) if it cannot be opened."""
        if stored is None or not stored.startswith(SEALED_REPLY):
            return stored
        try:
            return self.sealer.open(stored[len(SEALED_REPLY) :]).decode("utf-8")
        except SealBroken:
            return None


def _secrets(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    """Take the secrets out of ``data`` (a session's dict), returning them."""
    secrets: dict[str, Any] = {}
    paths = session.sensitive
    if paths and session.variables:
        left, taken = sensitive.take(paths, session.variables)
        if taken:
            secrets["variables"] = taken
            data["variables"] = left
    if session.held:
        secrets["held"] = data.pop("held")
    if paths and session.handoff:
        named = {
            key: value
            for key, value in session.handoff.items()
            if sensitive.covers(paths, key) or any(p.startswith(key + ".") for p in paths)
        }
        if named:
            secrets["handoff"] = named
            data["handoff"] = {k: v for k, v in session.handoff.items() if k not in named}
    return secrets


def _put_back(data: dict[str, Any], secrets: Any) -> None:
    if not isinstance(secrets, dict):
        raise ValueError("the sealed part of the session is not a map")
    taken = secrets.get("variables") or {}
    if taken:
        data["variables"] = sensitive.put(data.get("variables") or {}, taken)
    if secrets.get("held"):
        data["held"] = secrets["held"]
    if secrets.get("handoff"):
        data["handoff"] = {**(data.get("handoff") or {}), **secrets["handoff"]}


def _dumps(data: Any) -> bytes:
    """JSON; orjson, unless the data holds what only json can write.

    A data dip's result is stored as it came, and json writes what orjson refuses (an integer
    beyond 64 bits, half of a surrogate pair). Such documents start with a space, so they are
    read back by json too, exactly.
    """
    try:
        return orjson.dumps(data, default=str)
    except TypeError:
        return b" " + json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")


def _loads(raw: Any) -> Any:
    if raw[:1] in (b" ", " "):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # a document json wrote (before orjson was used)
        return json.loads(raw)

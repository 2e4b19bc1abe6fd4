"""Outbound grants: what an outbound call is to run, carried in its own webhook URL.

Placing a call hands Twilio our ``/voice/outbound?t=...`` URL. The token is signed and expires
(itsdangerous with ``SECRET_KEY``), so nobody can start a flow with variables of their choosing,
and it is redeemed once (a Redis ``SET NX`` under its id), so a replayed URL starts nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import redis
from itsdangerous import BadSignature, URLSafeTimedSerializer

from context.keys import Keys

TOKEN_TTL = 3600  # an outbound call that is not answered within an hour starts nothing


@dataclass(frozen=True)
class Grant:
    """One outbound contact: the flow to run with its variables, and why we reach out."""

    flow: str
    to: str
    purpose: str
    variables: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: secrets.token_hex(12))


class OutboundTokens:
    """Signs grants into URL tokens and redeems each token once."""

    def __init__(self, secret_key: str, connection: redis.Redis, keys: Keys) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="omnivoice-outbound")
        self.redis = connection
        self.keys = keys

    def sign(self, grant: Grant) -> str:
        """The token for ``grant``."""
        return self.serializer.dumps(
            {"id": grant.id, "flow": grant.flow, "to": grant.to, "purpose": grant.purpose,
             "vars": grant.variables}
        )  # fmt: skip

    def redeem(self, token: str, call_sid: str) -> Grant | None:
        """The grant of ``token`` for the call ``call_sid``; ``None`` when it is forged, expired,
        malformed or was used by another call (Twilio retrying the same call's webhook may
        redeem it again)."""
        try:
            data = self.serializer.loads(token, max_age=TOKEN_TTL)
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(data, dict) or not isinstance(data.get("vars"), dict):
            return None
        grant = Grant(
            flow=str(data.get("flow")), to=str(data.get("to")), purpose=str(data.get("purpose")),
            variables=data["vars"], id=str(data.get("id")),
        )  # fmt: skip
        key = self.keys.outbound_grant(grant.id)
        if not self.redis.set(key, call_sid, nx=True, ex=TOKEN_TTL * 2):
            used_by = self.redis.get(key)
            if (used_by.decode() if isinstance(used_by, bytes) else used_by) != call_sid:
                return None
        return grant

"""Sealing: sensitive session values encrypted at rest, with keys that can be rotated.

A :class:`Sealer` encrypts with `Fernet <https://cryptography.io/en/latest/fernet/>`_ (AES-128-CBC
with an HMAC-SHA256 over it, from the ``cryptography`` package): tampering is detected, never
decrypted into garbage. It holds one or more keys: the first seals, every one of them opens
(``MultiFernet``), so a key is rotated by putting a new one first and dropping the old one once
every document sealed with it has been saved again or has expired (see the README's Security
section). Keys come from ``SENSITIVE_DATA_KEYS``; without it, one key is derived from
``SECRET_KEY`` with HKDF, so a deployment that sets nothing new is still encrypted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ivr.errors import ConfigError, OmnivoiceError

KEYS_SETTING = "SENSITIVE_DATA_KEYS"
_DERIVATION_INFO = b"omnivoice sensitive session values v1"
_KEY_HINT = (
    "each key (comma-separated, the first one seals) must be 32 url-safe base64-encoded bytes; "
    "make one with: flask --app app keys new"
)


class SealBroken(OmnivoiceError):
    """A sealed value cannot be opened: tampered with, or sealed with a key no longer configured."""


class Sealer:
    """Seals and opens bytes with the configured keys (the first seals, any opens)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a Sealer needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, keys_text: str | None, secret_key: str) -> Sealer:
        """The sealer for ``SENSITIVE_DATA_KEYS`` (comma-separated), else one derived from
        ``secret_key``.

        Raises:
            ConfigError: a key is not a Fernet key (the message never shows the key).
        """
        texts = [part.strip() for part in (keys_text or "").split(",") if part.strip()]
        if not texts:
            return cls([derived_key(secret_key)])
        keys = []
        for i, text in enumerate(texts, 1):
            try:
                raw = base64.urlsafe_b64decode(text.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != 32:
                shown = f"<key {i} of {len(texts)}, not shown>"
                raise ConfigError(KEYS_SETTING, shown, _KEY_HINT)
            keys.append(text.encode("ascii"))
        return cls(keys)

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A sealer with a random key: what it seals can be opened only by this object."""
        return cls([Fernet.generate_key()])

    def seal(self, data: bytes) -> str:
        """``data`` encrypted and authenticated, as url-safe text."""
        return self._fernet.encrypt(data).decode("ascii")

    def open(self, token: str | bytes) -> bytes:
        """The bytes :meth:`seal` sealed.

        Raises:
            SealBroken: the token was altered, or no configured key sealed it.
        """
        try:
            return self._fernet.decrypt(token)
        except (InvalidToken, TypeError, ValueError):
            raise SealBroken(
                "a sealed value cannot be opened: it was altered, or sealed with a key that "
                f"is no longer in {KEYS_SETTING}"
            ) from None


def new_key() -> str:
    """A fresh key for ``SENSITIVE_DATA_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def derived_key(secret_key: str) -> bytes:
    """The sealing key derived from ``SECRET_KEY`` (HKDF-SHA256), for deployments without
    ``SENSITIVE_DATA_KEYS``."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVATION_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode("utf-8")))

"""The console's settings and the session cookie's security flags.

``AGENT_PASSWORD_METHOD`` (default ``scrypt``) is werkzeug's password hashing method for new
passwords (tests may use a fast ``pbkdf2:sha256:1000``); ``CONSOLE_HEARTBEAT_SECONDS`` (default
15) is how often a quiet live stream sends a keep-alive comment, so proxies keep it open and a
closed browser is noticed. The session cookie is ``Secure`` unless in dev mode or when
``PUBLIC_BASE_URL`` is plain ``http``, always ``HttpOnly`` and ``SameSite=Lax``, and a login lasts
12 hours. Settings given to ``create_app`` win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask

from ivr.errors import ConfigError

LOGIN_HOURS = 12


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The console's settings from the environment, with their defaults.

    Raises:
        ConfigError: a value that cannot be used.
    """
    raw = environ.get("CONSOLE_HEARTBEAT_SECONDS", "15")
    try:
        heartbeat = float(raw)
    except ValueError:
        heartbeat = -1.0
    if not 0 < heartbeat <= 300:
        raise ConfigError(
            "CONSOLE_HEARTBEAT_SECONDS", raw, "it must be a number of seconds above 0, up to 300."
        )
    return {
        "AGENT_PASSWORD_METHOD": environ.get("AGENT_PASSWORD_METHOD") or "scrypt",
        "CONSOLE_HEARTBEAT_SECONDS": heartbeat,
    }


def configure(app: Flask) -> None:
    """Set the console's settings (unless given) and the session cookie's flags on ``app``."""
    for name, value in from_env(os.environ).items():
        app.config.setdefault(name, value)
    public = str(app.config.get("PUBLIC_BASE_URL") or "")
    plain_http = public.startswith("http://")
    app.config.update(
        SESSION_COOKIE_SECURE=not (app.config["DEV_MODE"] or plain_http),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=LOGIN_HOURS),
    )

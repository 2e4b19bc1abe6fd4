"""Pages behind signed links (``/p/<token>``): the web rendering of a flow's ``pages:``.

:func:`register` adds the blueprint to the app with what it needs: the link store (records in
Redis, URLs signed with ``SECRET_KEY``), the conversation service (every change goes through
``amend`` on the caller's session) and a call redirector on Twilio's REST API with a short
timeout (``TWILIO_CLIENT`` in tests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from context.links import LinkStore
from pages.redirect import TIMEOUT, CallRedirector
from pages.service import PageService
from pages.views import bp


def register(app: Flask) -> None:
    """Serve ``/p/<token>`` on ``app`` (after the conversation service is built)."""
    store = app.extensions["omnivoice.store"]
    links = app.extensions.get("omnivoice.links")
    if links is None:
        links = LinkStore(
            store.redis,
            store.keys,
            app.config["SECRET_KEY"],
            app.config.get("PUBLIC_BASE_URL") or "",
        )
        app.extensions["omnivoice.links"] = links
    ready = bool(
        app.config.get("TWILIO_CLIENT")
        or (app.config.get("TWILIO_ACCOUNT_SID") and app.config.get("TWILIO_AUTH_TOKEN"))
    )
    redirector = CallRedirector(_redirect_client(app), ready, demo=bool(app.config["DEV_MODE"]))
    app.extensions["omnivoice.pages"] = PageService(app.extensions["omnivoice.calls"], redirector)
    app.register_blueprint(bp)


def _redirect_client(app: Flask) -> Callable[[], Any]:
    """Twilio's REST client for redirects (``TWILIO_CLIENT`` in tests), made on first use, with
    a timeout short enough for a page request."""
    return functools.cache(
        lambda: (
            app.config.get("TWILIO_CLIENT")
            or TwilioClient(
                app.config["TWILIO_ACCOUNT_SID"],
                app.config["TWILIO_AUTH_TOKEN"],
                http_client=TwilioHttpClient(timeout=TIMEOUT),
            )
        )
    )

"""The agent console at ``/agent``: login, the live board of waiting callers, and what agents do.

:func:`register` adds it to the app: its settings (``AGENT_PASSWORD_METHOD``,
``CONSOLE_HEARTBEAT_SECONDS``), the session cookie's security flags, the blueprint with its
templates and static files, and the ``flask --app app agents`` commands. Everything the console
shows comes from the agents' feed (:mod:`context.agent_feed`) and the history database; what an
agent does (take a call, write a note) goes to the event stream and the feed as events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from console.actions import AgentActions
from console.agents_cli import agents
from console.login_limits import LoginLimits
from console.settings import configure
from console.views import bp


def register(
    app: Flask,
    history: Callable[[], sessionmaker[Session]],
    twilio: Callable[[], Any],
) -> None:
    """Serve the console on ``app``, with the history database and Twilio client factories."""
    configure(app)
    app.extensions["omnivoice.console.history"] = history
    feed = app.extensions["omnivoice.feed"]
    store = app.extensions["omnivoice.store"]
    app.extensions["omnivoice.console.limits"] = LoginLimits(feed.redis, store.keys)
    app.extensions["omnivoice.console.actions"] = AgentActions(
        app.extensions["omnivoice.events"],
        feed,
        store,
        twilio,
        app.config.get("PUBLIC_BASE_URL"),
        app.config.get("CLOCK") or time.time,
    )
    app.register_blueprint(bp)
    app.cli.add_command(agents)

"""Helpers for the agent console's tests: an app with a history database, agents, logins, and
calls handed over to agents by a real flow (a PIN that is ``sensitive``, a question answered by
speech, a transfer to a queue)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from console.agents import directory_of
from context.history import database
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

FAST_HASH = "pbkdf2:sha256:1000"
PASSWORD = "correct horse battery"
PIN = "8642"
ACCOUNT = "AC" + "a" * 32
CALLER = "+14155550123"
BASE = "https://ivr.example.com"
BANK_NUMBER = "+14155550199"

BANK_FLOW = """
id: bank
numbers: ["+14155550199"]
sensitive: [pin]
start: pin
nodes:
  pin:
    gather: {prompt: "Enter your PIN."}
    validate: {pattern: "^[0-9]{4}$"}
    save_as: pin
    next: about
  about:
    gather: {prompt: "In a few words, what is your call about?"}
    save_as: about
    next: agent
  agent:
    say: Connecting you to an agent.
    transfer:
      queue: support
      context: [pin, about]
"""


def history_database(tmp_path: Path) -> str:
    """A migrated SQLite history database in ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = database.open_engine(url)
    database.upgrade(engine)
    engine.dispose()
    return url


def console_config(flows_dir: Path, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Config for an app with the bank flow, a history database and fast password hashes."""
    (flows_dir / "bank.yaml").write_text(BANK_FLOW)
    return {
        "DATABASE_URL": history_database(tmp_path),
        "AGENT_PASSWORD_METHOD": FAST_HASH,
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "PUBLIC_BASE_URL": BASE,
        "CONSOLE_HEARTBEAT_SECONDS": 0.2,
        **overrides,
    }


def add_agent(app: Flask, name: str = "ann", **options: Any) -> None:
    """Add an agent with :data:`PASSWORD` (and a phone unless told otherwise)."""
    options.setdefault("phone", "+14155550188")
    directory_of(app).add(name, PASSWORD, **options)


def csrf_from(html: str) -> str:
    """The CSRF token in a page's first hidden ``csrf_token`` field."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login(client: FlaskClient, name: str = "ann", password: str = PASSWORD, **environ: Any) -> Any:
    """Log in through the form (getting its CSRF token first); the response to the POST."""
    token = csrf_from(client.get("/agent/login").get_data(as_text=True))
    return client.post(
        "/agent/login",
        data={"name": name, "password": password, "csrf_token": token},
        environ_base=environ,
    )


def logged_in(app: Flask, name: str = "ann") -> tuple[FlaskClient, str]:
    """A client logged in as ``name`` and its CSRF token."""
    client = app.test_client()
    assert login(client, name).status_code == 302
    return client, csrf_from(client.get("/agent").get_data(as_text=True))


def hand_over(app: Flask, caller: str = CALLER, about: str = "my card was eaten") -> Call:
    """A call through the bank flow to the queue: PIN, a sentence, a transfer."""
    call = Call(
        FlaskTransport(app), AUTH_TOKEN, caller=caller, called=BANK_NUMBER, base_url=BASE
    ).dial()
    call.press(PIN)
    call.say(about)
    assert call.ended == "enqueue", call.heard
    assert isinstance(call.last, ET.Element)
    return call


def close_history(app: Flask) -> None:
    """Close the pooled connections of ``app``'s history database (the test is over)."""
    sessions = app.extensions["omnivoice.console.history"]()
    sessions.kw["bind"].dispose()

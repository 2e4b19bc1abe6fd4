"""Agent accounts in the history database: add, list, disable, change a password, check a login.

Passwords are kept only as werkzeug hashes (``scrypt`` unless ``AGENT_PASSWORD_METHOD`` says
otherwise). :meth:`AgentDirectory.authenticate` does the same work for an unknown name as for a
known one (it checks the password against a dummy hash), so the time a login takes does not
tell which names exist; a disabled agent is refused like a wrong password.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from context.history.models import Agent, utcnow
from ivr.errors import OmnivoiceError

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
CLIENT = re.compile(r"^[A-Za-z0-9_.@-]{1,121}$")


class AgentError(OmnivoiceError):
    """An agent account cannot be added or changed as asked (the message says why)."""


@dataclass(frozen=True)
class AgentView:
    """What the console needs of an agent (never the password hash)."""

    name: str
    display_name: str | None
    phone: str | None
    client: str | None
    supervisor: bool
    disabled: bool
    last_login_at: datetime | None

    @property
    def shown(self) -> str:
        """The name to show: the display name, else the login name."""
        return self.display_name or self.name


def _view(agent: Agent) -> AgentView:
    return AgentView(
        agent.name,
        agent.display_name,
        agent.phone,
        agent.client,
        agent.supervisor,
        agent.disabled,
        agent.last_login_at,
    )


def check_password(password: str) -> str:
    """``password`` if it can be used.

    Raises:
        AgentError: shorter than 10 characters or absurdly long.
    """
    if len(password) < MIN_PASSWORD:
        raise AgentError(f"the password must have at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AgentError(f"the password must have at most {MAX_PASSWORD} characters.")
    return password


def check_phone(phone: str | None) -> str | None:
    """``phone`` in E.164, or ``None``.

    Raises:
        AgentError: not a valid international number.
    """
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise AgentError(f"{phone!r} is not a valid phone number in E.164 form, e.g. +14155550100.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not-a-password-of-anyone", method=method)


class AgentDirectory:
    """Agent accounts, in the database of ``sessions``."""

    def __init__(self, sessions: Callable[[], sessionmaker[Session]], method: str = "scrypt"):
        self.sessions = sessions
        self.method = method

    def add(
        self,
        name: str,
        password: str,
        display_name: str | None = None,
        phone: str | None = None,
        client: str | None = None,
        supervisor: bool = False,
    ) -> AgentView:
        """Add an agent.

        Raises:
            AgentError: a bad name, password, phone or client identity, or the name is taken.
        """
        if not NAME.match(name):
            raise AgentError(
                f"{name!r} cannot be an agent name: use up to 64 letters, digits, '.', '_', "
                "'@' or '-', starting with a letter or digit."
            )
        if client is not None and not CLIENT.match(client):
            raise AgentError(f"{client!r} cannot be a client identity: letters, digits, _ . @ -.")
        agent = Agent(
            name=name,
            display_name=display_name,
            password_hash=generate_password_hash(check_password(password), method=self.method),
            phone=check_phone(phone),
            client=client,
            supervisor=supervisor,
            disabled=False,
        )
        with self.sessions()() as db:
            if db.scalar(select(Agent.id).where(Agent.name == name)) is not None:
                raise AgentError(f"an agent named {name!r} already exists.")
            db.add(agent)
            try:
                db.commit()
            except IntegrityError:
                raise AgentError(f"an agent named {name!r} already exists.") from None
            return _view(agent)

    def all(self) -> list[AgentView]:
        """Every agent, by name."""
        with self.sessions()() as db:
            return [_view(a) for a in db.scalars(select(Agent).order_by(Agent.name))]

    def get(self, name: str) -> AgentView | None:
        """The agent called ``name``, ``None`` if there is none."""
        with self.sessions()() as db:
            agent = db.scalar(select(Agent).where(Agent.name == name))
            return _view(agent) if agent else None

    def disable(self, name: str) -> None:
        """Stop ``name`` from logging in (and end their open logins at their next request).

        Raises:
            AgentError: no such agent.
        """
        with self.sessions()() as db:
            self._existing(db, name).disabled = True
            db.commit()

    def set_password(self, name: str, password: str) -> None:
        """Give ``name`` a new password.

        Raises:
            AgentError: no such agent, or an unusable password.
        """
        hashed = generate_password_hash(check_password(password), method=self.method)
        with self.sessions()() as db:
            self._existing(db, name).password_hash = hashed
            db.commit()

    def authenticate(self, name: str, password: str) -> AgentView | None:
        """The agent if ``password`` is theirs and they are not disabled, else ``None``.

        An unknown name costs one hash check as a known one does.
        """
        with self.sessions()() as db:
            agent = db.scalar(select(Agent).where(Agent.name == name)) if name else None
            if agent is None:
                check_password_hash(_dummy_hash(self.method), password)
                return None
            if not check_password_hash(agent.password_hash, password) or agent.disabled:
                return None
            agent.last_login_at = utcnow()
            db.commit()
            return _view(agent)

    @staticmethod
    def _existing(db: Session, name: str) -> Agent:
        agent = db.scalar(select(Agent).where(Agent.name == name))
        if agent is None:
            raise AgentError(f"there is no agent named {name!r}.")
        return agent


def directory_of(app: Flask) -> AgentDirectory:
    """The agent directory of ``app`` (its history database and password hashing method)."""
    return AgentDirectory(
        app.extensions["omnivoice.console.history"], app.config["AGENT_PASSWORD_METHOD"]
    )

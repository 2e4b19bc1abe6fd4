"""``flask --app app agents ...``: the console's agent accounts.

``agents add NAME [--display-name TEXT] [--phone +E164] [--client ID] [--supervisor]`` reads the
password from standard input (asked twice at a terminal, one line when piped: ``echo ... |``),
``agents list`` prints them, ``agents disable NAME`` stops a login, ``agents passwd NAME`` sets a
new password the same way ``add`` reads it. Errors are one sentence and exit status 1.
"""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from console.agents import AgentError, check_password, directory_of

agents = AppGroup("agents", help="Manage the agent console's accounts (in DATABASE_URL).")


def _read_password() -> str:
    """The password: prompted twice at a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        return check_password(password)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None


@agents.command("add")
@click.argument("name")
@click.option("--display-name", help="The name colleagues see.")
@click.option("--phone", help="Where Take call rings this agent, in E.164 (+14155550100).")
@click.option("--client", help="The agent's Twilio Voice SDK client identity.")
@click.option("--supervisor", is_flag=True, help="The agent sees the supervisor strip.")
def add(
    name: str, display_name: str | None, phone: str | None, client: str | None, supervisor: bool
) -> None:
    """Add agent NAME; the password is read from standard input."""
    password = _read_password()
    try:
        agent = directory_of(current_app).add(
            name, password, display_name, phone, client, supervisor
        )
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"agent {agent.name} added")


@agents.command("list")
def list_agents() -> None:
    """Print every agent: name, display name, where calls ring, role, state."""
    for agent in directory_of(current_app).all():
        role = "supervisor" if agent.supervisor else "agent"
        state = "disabled" if agent.disabled else "active"
        rings = (agent.client and f"client:{agent.client}") or agent.phone or "-"
        shown = agent.display_name or "-"
        click.echo(f"{agent.name}\t{shown}\t{rings}\t{role}\t{state}")


@agents.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Stop agent NAME from using the console."""
    try:
        directory_of(current_app).disable(name)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"agent {name} disabled")


@agents.command("passwd")
@click.argument("name")
def passwd(name: str) -> None:
    """Set a new password for agent NAME (read from standard input)."""
    password = _read_password()
    try:
        directory_of(current_app).set_password(name, password)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed")

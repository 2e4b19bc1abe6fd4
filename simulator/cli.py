"""``flask --app app call``: talk to a flow from the terminal, as a caller would.

Each line you type is keyed (digits, ``*``, ``#``) or spoken (anything else); an empty line is
silence; ``/hangup`` ends the call and posts the status callback. By default the call runs
in-process against this app; ``--url`` calls a running server instead (requests are signed with
``TWILIO_AUTH_TOKEN``, as Twilio signs them). ``--script "1,ABC123,yes"`` plays answers without
asking. What the server logs stays out of the transcript unless ``--verbose``.
"""

from __future__ import annotations

import logging
import re

import click
from flask import current_app
from flask.cli import with_appcontext

from simulator.call import Call, CallError, FlaskTransport, HttpTransport, Transport

KEYS = re.compile(r"^[0-9*#]+$")


@click.command("call")
@click.option("--from", "caller", default="+14155550123", show_default=True, help="Caller ID.")
@click.option("--to", "called", default="+14155550100", show_default=True, help="Number called.")
@click.option("--url", default=None, help="Base URL of a running server (default: in-process).")
@click.option("--script", default=None, help="Comma-separated answers to play without prompting.")
@click.option("--stir", default=None, help="StirVerstat to send, e.g. TN-Validation-Passed-A.")
@click.option("--verbose", is_flag=True, help="Show the server's logs among what is said.")
@with_appcontext
def call(
    caller: str,
    called: str,
    url: str | None,
    script: str | None,
    stir: str | None,
    verbose: bool,
) -> None:
    """Place a simulated call and answer its questions from the keyboard (or --script)."""
    was = logging.root.manager.disable
    if not verbose:
        logging.disable(logging.CRITICAL)
    try:
        _call(caller, called, url, script, stir)
    finally:
        logging.disable(was)


def _call(caller: str, called: str, url: str | None, script: str | None, stir: str | None) -> None:
    token = current_app.config.get("TWILIO_AUTH_TOKEN") or "dev-mode-token"
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    transport: Transport = HttpTransport() if url else FlaskTransport(app)
    extra = {"StirVerstat": stir} if stir else {}
    simulated = Call(
        transport,
        token,
        caller=caller,
        called=called,
        base_url=url or "http://localhost",
        extra=extra,
    )
    answers = [a.strip() for a in script.split(",")] if script is not None else None
    try:
        simulated.dial()
        _show(simulated)
        while simulated.gather is not None:
            line = answers.pop(0) if answers else (None if answers is not None else _ask())
            if line is None or line == "/hangup":
                break
            click.echo(f"  you: {line or '(silence)'}")
            _answer(simulated, line)
            _show(simulated)
    except CallError as exc:
        raise click.ClickException(str(exc)) from None
    simulated.hang_up()
    click.echo(f"[call ended: {simulated.ended}]")


def _ask() -> str:
    return str(click.prompt("keys or words", default="", show_default=False))


def _answer(simulated: Call, line: str) -> None:
    if not line:
        simulated.silence()
    elif KEYS.match(line):
        simulated.press(line)
    else:
        simulated.say(line)


def _show(simulated: Call) -> None:
    if simulated.last_heard:
        click.echo(f"omnivoice: {simulated.last_heard}")

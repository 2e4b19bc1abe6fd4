"""``flask --app app call``: talk to a flow from the terminal, as a caller would.

Each line you type is keyed (digits, ``*``, ``#``) or spoken (anything else); an empty line is
silence; ``/hangup`` ends the call and posts the status callback. At a record node a line
is the message (its words stand for the seconds of audio, and it ends with ``#``); an empty
line records nothing. By default the call runs
in-process against this app; ``--url`` calls a running server instead (requests are signed with
``TWILIO_AUTH_TOKEN``, as Twilio signs them). ``--script "1,ABC123,yes"`` plays answers without
asking. What the server logs stays out of the transcript unless ``--verbose``.

``--at 2026-12-24T18:00`` pretends the call happens then (in the flow's time zone unless the
time has an offset), and each ``--after 5m`` calls back that much later once a call ends, with the
answers after a ``/hangup`` in the script: business hours and resume windows can be tried
without waiting. Both work in-process only; a running server keeps its own clock.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from ivr.durations import parse_duration
from simulator.call import Call, CallError, FlaskTransport, HttpTransport, Transport
from simulator.clock import PretendClock, install, moment

KEYS = re.compile(r"^[0-9*#]+$")


@click.command("call")
@click.option("--from", "caller", default="+14155550123", show_default=True, help="Caller ID.")
@click.option("--to", "called", default="+14155550100", show_default=True, help="Number called.")
@click.option("--url", default=None, help="Base URL of a running server (default: in-process).")
@click.option("--script", default=None, help="Comma-separated answers to play without prompting.")
@click.option("--stir", default=None, help="StirVerstat to send, e.g. TN-Validation-Passed-A.")
@click.option(
    "--at", "pretend", default=None, help="Pretend the call is at this time: 2026-12-24T18:00."
)
@click.option(
    "--after",
    multiple=True,
    help="Call back this much later once the call ends (5m, 2h); may be repeated.",
)
@click.option("--verbose", is_flag=True, help="Show the server's logs among what is said.")
@with_appcontext
def call(
    caller: str,
    called: str,
    url: str | None,
    script: str | None,
    stir: str | None,
    pretend: str | None,
    after: tuple[str, ...],
    verbose: bool,
) -> None:
    """Place a simulated call and answer its questions from the keyboard (or --script)."""
    was = logging.root.manager.disable
    if not verbose:
        logging.disable(logging.CRITICAL)
    try:
        _call(caller, called, url, script, stir, pretend, after)
    finally:
        logging.disable(was)


def _call(
    caller: str,
    called: str,
    url: str | None,
    script: str | None,
    stir: str | None,
    pretend: str | None,
    after: tuple[str, ...],
) -> None:
    token = current_app.config.get("TWILIO_AUTH_TOKEN") or "dev-mode-token"
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    transport: Transport = HttpTransport() if url else FlaskTransport(app)
    extra = {"StirVerstat": stir} if stir else {}
    waits = [_duration(text) for text in after]
    clock, zone = _pretend(app, called, pretend, waits, url)
    answers = [a.strip() for a in script.split(",")] if script is not None else None
    for i, wait in enumerate([0.0, *waits]):
        if clock is not None:
            clock.advance(wait)
            if i:
                click.echo(f"[{after[i - 1]} later]")
            click.echo(f"[calling at {_shown(clock(), zone)}]")
        simulated = Call(
            transport, token, caller=caller, called=called, base_url=url or "http://localhost",
            extra=extra,
        )  # fmt: skip
        _converse(simulated, answers, Outbox(app, url))


def _converse(simulated: Call, answers: list[str] | None, outbox: Outbox | None = None) -> None:
    """One call, until it ends, the caller hangs up, or the script runs out."""
    try:
        simulated.dial()
        _show(simulated, outbox)
        while simulated.gather is not None or simulated.record is not None:
            line = answers.pop(0) if answers else (None if answers is not None else _ask())
            if line is None or line == "/hangup":
                break
            click.echo(f"  you: {line or '(silence)'}")
            _answer(simulated, line)
            _show(simulated, outbox)
    except CallError as exc:
        raise click.ClickException(str(exc)) from None
    simulated.hang_up()
    click.echo(f"[call ended: {simulated.ended}]")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration such as 5m, 2h or 90s.", param_hint="--after"
        ) from None


def _pretend(
    app: object, called: str, pretend: str | None, waits: list[float], url: str | None
) -> tuple[PretendClock | None, str | None]:
    """The pretend clock for --at/--after (installed in the app), and the flow's time zone."""
    if pretend is None and not waits:
        return None, None
    if url:
        raise click.UsageError(
            "--at and --after pretend a time in-process; a running server (--url) keeps its "
            "own clock."
        )
    flow = app.extensions["omnivoice.catalog"].for_number(called)  # type: ignore[attr-defined]
    zone = flow.spec.timezone if flow is not None else None
    try:
        start = moment(pretend, zone) if pretend else time.time()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None
    clock = PretendClock(start)
    install(app, clock)
    return clock, zone


def _shown(at: float, zone: str | None) -> str:
    found = datetime.fromtimestamp(at, ZoneInfo(zone or "UTC"))
    return f"{found:%a %Y-%m-%d %H:%M} {zone or 'UTC'}"


def _ask() -> str:
    return str(click.prompt("keys or words", default="", show_default=False))


def _answer(simulated: Call, line: str) -> None:
    if simulated.record is not None:  # a message: its words stand for the audio, pound ends it
        if line:
            simulated.leave_message(duration=max(1, len(line.split())), digits="#")
        else:
            simulated.leave_nothing()
    elif not line:
        simulated.silence()
    elif KEYS.match(line):
        simulated.press(line)
    else:
        simulated.say(line)


def _show(simulated: Call, outbox: Outbox | None = None) -> None:
    if simulated.last_heard:
        click.echo(f"omnivoice: {simulated.last_heard}")
    if outbox is not None:
        for line in outbox.new(simulated.caller):
            click.echo(line)


class Outbox:
    """The demo server's outbox (``/dev/outbox.json``): the texts and emails the call made,
    printed in the transcript as they would reach the caller's phone. A server that is not in
    dev mode has none (404), and the transcript goes on without."""

    WAIT = 3.0  # seconds to wait for a message the call queued to come out of the job queue

    def __init__(self, app: Any, url: str | None) -> None:
        self.client = None if url else app.test_client()
        self.url = url.rstrip("/") if url else None
        self.seen = 0
        self.available = True

    def new(self, caller: str) -> list[str]:
        """The lines to print for messages kept since the last look."""
        deadline = time.monotonic() + self.WAIT
        while self.available:
            found = self._fetch(caller)
            if found is None:
                self.available = False
                break
            shown = [self._line(m) for m in found["messages"]]
            if found["messages"]:
                self.seen = max(int(m["n"]) for m in found["messages"])
            if shown or not found.get("queued") or time.monotonic() > deadline:
                return shown
            time.sleep(0.1)
        return []

    def _fetch(self, caller: str) -> dict[str, Any] | None:
        path = f"/dev/outbox.json?{urlencode({'caller': caller, 'after': self.seen})}"
        try:
            if self.client is not None:
                response = self.client.get(path)
                code, data = response.status_code, response.get_json(silent=True)
            else:
                reply = requests.get(f"{self.url}{path}", timeout=2.0)
                code, data = reply.status_code, (reply.json() if reply.ok else None)
        except (requests.RequestException, ValueError):
            return None
        return data if code == 200 and isinstance(data, dict) else None

    @staticmethod
    def _line(message: dict[str, Any]) -> str:
        what = "text" if message.get("channel") == "sms" else "email"
        subject = f' "{message["subject"]}"' if message.get("subject") else ""
        return f"[{what} to {message.get('to')}{subject}: {message.get('body')}]"

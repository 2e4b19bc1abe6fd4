"""The embedded demo's outbox: texts and emails kept in the process instead of sent.

With ``OMNIVOICE_DEV=1`` and no Twilio account (or no ``SMTP_URL``), a message is not sent
anywhere: it is logged loudly and kept here (the last :data:`KEPT`), where
``GET /dev/outbox`` lists them with their links, so the demo's texted page can be opened from
a browser on the same machine, and ``GET /dev/outbox.json`` gives them to the call simulator,
which prints them in its transcript. The job queue treats a kept message as sent. Never served
outside dev mode.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from flask import Blueprint, Flask, Response, current_app, jsonify
from flask import request as http_request
from markupsafe import Markup, escape

from context.callers import masked
from jobs.outcome import Sent

log = logging.getLogger("omnivoice.jobs")

KEPT = 50
DEV_BASE_URL = "http://127.0.0.1:5000"  # where the README's demo command serves
_URL = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Kept:
    """One message the demo did not send."""

    n: int
    at: float
    channel: str
    to: str
    body: str
    caller: str = ""
    subject: str | None = None


class DevOutbox:
    """The last messages of this process, newest last."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._kept: deque[Kept] = deque(maxlen=KEPT)
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def keep(
        self, channel: str, to: str, body: str, caller: str = "", subject: str | None = None
    ) -> Kept:
        with self._lock:
            kept = Kept(next(self._numbers), self.clock(), channel, to, body, caller, subject)
            self._kept.append(kept)
        log.warning(
            "DEV MODE: %s to %s NOT sent, kept at /dev/outbox: %s",
            "text" if channel == "sms" else "email", masked(to) if channel == "sms" else to,
            body[:300],
        )  # fmt: skip
        return kept

    def after(self, n: int = 0, caller: str | None = None) -> list[Kept]:
        """The kept messages numbered above ``n`` (for ``caller``'s session, if given)."""
        with self._lock:
            found = [k for k in self._kept if k.n > n]
        return [k for k in found if caller is None or k.caller == caller]


class DevTexts:
    """A stand-in for :class:`jobs.sms.SmsSender` that keeps texts in the outbox."""

    def __init__(self, outbox: DevOutbox) -> None:
        self.outbox = outbox

    def send(
        self,
        to: str,
        body: str,
        key: str,
        caller: str = "",
        call_sid: str | None = None,
        flow: str | None = None,
    ) -> Sent:
        return Sent(f"DEV{self.outbox.keep('sms', to, body, caller).n}")

    def already_sent(self, to: str, body: Callable[[str], bool], since: float) -> str | None:
        for kept in self.outbox.after():
            if kept.channel == "sms" and kept.to == to and kept.at >= since and body(kept.body):
                return f"DEV{kept.n}"
        return None


class DevEmails:
    """A stand-in for :class:`jobs.email.EmailSender` that keeps emails in the outbox."""

    def __init__(self, outbox: DevOutbox) -> None:
        self.outbox = outbox

    def send(self, to: str, subject: str, text: str, html: str | None, key: str) -> Sent:
        return Sent(f"<DEV{self.outbox.keep('email', to, text, subject=subject).n}>")


bp = Blueprint("dev_outbox", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outbox (demo)</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:1rem auto;max-width:40rem;padding:0 1rem;color:#111}
li{margin:.75rem 0;padding:.75rem;border:1px solid #888;border-radius:.5rem;list-style:none}
a{color:#0645ad} small{color:#444}
</style></head><body>
<h1>Outbox</h1>
<p>Demo mode sends no texts or emails: here is what would have gone out, newest first.</p>
<ul>{% for m in kept %}<li><small>{{ m.channel }} to {{ m.to }}{% if m.subject %},
"{{ m.subject }}"{% endif %}</small><br>{{ m.body | links }}</li>{% else %}
<li>Nothing yet.</li>{% endfor %}</ul></body></html>"""


def _links(text: str) -> Markup:
    """``text`` escaped, with its URLs made into links."""
    parts, last = [], 0
    for match in _URL.finditer(text):
        parts.append(escape(text[last : match.start()]))
        url = escape(match.group(0))
        parts.append(Markup(f'<a href="{url}">{url}</a>'))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


@bp.get("/dev/outbox")
def page() -> str:
    outbox: DevOutbox = current_app.extensions["omnivoice.outbox"]
    env = current_app.jinja_env.overlay()
    env.filters["links"] = _links
    return env.from_string(_PAGE).render(kept=list(reversed(outbox.after())))


@bp.get("/dev/outbox.json")
def listing() -> Response:
    """The kept messages after ``?after=N`` (for ``?caller=``), and how many messages that
    caller's session still has queued (the simulator waits for them)."""
    outbox: DevOutbox = current_app.extensions["omnivoice.outbox"]
    caller = http_request.args.get("caller") or None
    try:
        after = int(http_request.args.get("after", "0"))
    except ValueError:
        after = 0
    queued = 0
    if caller:
        session = current_app.extensions["omnivoice.store"].load(caller).session
        if session is not None:
            queued = sum(
                1 for m in session.messages.values()
                if isinstance(m, dict) and m.get("status") == "queued"
            )  # fmt: skip
    return jsonify({"messages": [asdict(k) for k in outbox.after(after, caller)], "queued": queued})


def register(app: Flask, outbox: DevOutbox) -> None:
    """Serve the outbox (dev mode only)."""
    app.extensions["omnivoice.outbox"] = outbox
    app.register_blueprint(bp)

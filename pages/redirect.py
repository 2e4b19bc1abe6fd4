"""Moving a live call on once its caller submitted a page: Twilio's REST ``calls(sid).update``.

The call waits at a ``wait_for`` node with hold prompts; :meth:`CallRedirector.redirect` points
it at the answer URL of the step it waits at, so the engine sees the submission at once and goes
to ``on_submit``. It runs inline in the page's request with a short timeout (a gevent worker
waits on the socket, not a thread). A transient failure (HTTP 429 or 5xx, no answer) is tried
once more; a call that ended meanwhile (error 21220, or 404 for a call Twilio no longer knows)
is ``ended``, and the submission stays in the session for the caller's next contact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from twilio.base.exceptions import TwilioException

from webhooks.voice_urls import answer_url

log = logging.getLogger("omnivoice.pages")

TIMEOUT = 2.0  # seconds a redirect may take (each try)
CALL_ENDED_CODES = frozenset({21220, 20404})  # "call is not in progress", "not found"


@dataclass(frozen=True)
class Redirected:
    """How a redirect went: ``redirected``, ``ended`` (the call is over) or ``failed``."""

    state: str
    detail: str | None = None
    tries: int = 1


class CallRedirector:
    """Redirects live calls through Twilio's REST API (``twilio`` makes the client lazily)."""

    def __init__(self, twilio: Callable[[], Any], ready: bool, demo: bool = False) -> None:
        self.twilio = twilio
        self.ready = ready  # credentials (or a test's client) are configured
        self.demo = demo  # the embedded demo: no Twilio, the hold loop's next round is enough

    def redirect(self, call_sid: str, root: str, step: int) -> Redirected:
        """Point call ``call_sid`` at the answer URL of ``step`` under ``root``."""
        if not self.ready and self.demo:
            log.warning(
                "DEV MODE: call %s is not redirected (no Twilio); its hold loop's next round "
                "hears the submission",
                call_sid,
            )
            return Redirected("redirected", "demo mode: picked up at the next hold round", 0)
        if not self.ready:
            log.warning("page submitted for live call %s, but Twilio is not configured", call_sid)
            return Redirected("failed", "Twilio credentials are not configured", 0)
        url = answer_url(root, step)
        detail = None
        tries = 0
        for attempt in (1, 2):
            tries = attempt
            try:
                self.twilio().calls(call_sid).update(url=url, method="POST")
                return Redirected("redirected", None, attempt)
            except requests.RequestException as exc:
                detail = f"no answer from Twilio ({type(exc).__name__})"
            except TwilioException as exc:
                status = getattr(exc, "status", None)
                code = getattr(exc, "code", None)
                detail = f"HTTP {status}, error {code}: {getattr(exc, 'msg', '') or exc}"[:200]
                if code in CALL_ENDED_CODES or status == 404:
                    return Redirected("ended", detail, attempt)
                if not (status == 429 or (isinstance(status, int) and status >= 500)):
                    break  # refused for good: trying again changes nothing
            log.warning("redirecting call %s (try %d) failed: %s", call_sid, attempt, detail)
        return Redirected("failed", detail, tries)

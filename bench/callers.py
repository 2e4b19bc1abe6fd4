"""Virtual callers for the webhook benchmark: Twilio-signed requests that always advance a call.

A cached reply makes a repeated request a cheap duplicate, so every measured request must be a
real step. A :class:`GatherWalker` owns one call at a time, prepared by :class:`Dialer` (the call's
session waits at the demo flow's main menu), and plays :data:`GATHER_INPUTS`: nine answers that
each leave the caller at a gather again::

    main_menu    9 (no match), silence, 8 (no match), silence, 1 -> confirmation
    confirmation 12 (fails the code pattern), silence, 99 (fails), silence

One more no-input or no-match would exhaust the retries and transfer the call, so the walker then
takes its next prepared call (or dials one itself if the pool ran dry, which is counted). It
follows the step number in each gather's action URL, as Twilio would.
"""

from __future__ import annotations

import itertools
import random
import re
import secrets
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from bench.loadgen import post

CALLED = "+14155550100"
GATHER_INPUTS: tuple[dict[str, str], ...] = (
    {"Digits": "9"},
    {},
    {"Digits": "8"},
    {},
    {"Digits": "1"},
    {"Digits": "12"},
    {},
    {"Digits": "99"},
    {},
)
ACTION = re.compile(rb'<Gather[^>]*? action="/voice/answer\?step=(-?\d+)"')
_numbers = itertools.count(random.randrange(10**6, 10**7) * 100)


def new_caller() -> str:
    """A fresh E.164 caller number in New York's 212, shaped as real ones are: NANP exchanges
    start with 2-9, so none of them starts with 0 or 1. (Numbers that did, which no phone
    network assigns, made one benchmark run in five parse every caller the slow way.)"""
    n = next(_numbers) % (8 * 10**6)
    return f"+1212{2 + n // 10**6}{n % 10**6:06d}"


def new_call_sid() -> str:
    """A CallSid in Twilio's shape."""
    return "CA" + secrets.token_hex(16)


@dataclass
class PreparedCall:
    """A call whose session waits at a gather; ``step`` is the step its action URL names."""

    call_sid: str
    caller: str
    step: int


class Signer:
    """Builds Twilio-signed form POSTs for one server."""

    def __init__(self, base_url: str, auth_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = self.base_url.split("://", 1)[1]
        self.validator = RequestValidator(auth_token)

    def request(self, path: str, call: PreparedCall, extra: dict[str, str]) -> bytes:
        """A signed POST of Twilio's voice webhook form for ``call`` plus ``extra`` fields."""
        form = {
            "CallSid": call.call_sid,
            "AccountSid": "AC" + "0" * 32,
            "From": call.caller,
            "To": CALLED,
            "Caller": call.caller,
            "Called": CALLED,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }
        signature = self.validator.compute_signature(self.base_url + path, form)
        body = urlencode(form).encode("utf-8")
        return post(self.host, path, body, {"X-Twilio-Signature": signature})


def gather_step(body: bytes) -> int | None:
    """The step number in a TwiML body's gather action, or ``None`` if there is no gather."""
    found = ACTION.search(body)
    return int(found.group(1)) if found else None


class Dialer:
    """Places new calls (``POST /voice``) and keeps each answered one in ``prepared``."""

    def __init__(self, signer: Signer, prepared: list[PreparedCall]) -> None:
        self.signer = signer
        self.prepared = prepared
        self._calling: PreparedCall | None = None

    def next_request(self) -> bytes:
        """A new call's incoming-call webhook."""
        self._calling = PreparedCall(new_call_sid(), new_caller(), -1)
        return self.signer.request("/voice", self._calling, {})

    def check(self, status: int, body: bytes) -> str | None:
        """A new call must get a gather; remember the call."""
        step = gather_step(body) if status == 200 else None
        if step is None or self._calling is None:
            return f"/voice answered {status} without a gather: {body[:200]!r}"
        self._calling.step = step
        self.prepared.append(self._calling)
        return None


class GatherWalker:
    """Answers gathers on prepared calls with :data:`GATHER_INPUTS`, one genuine step each."""

    def __init__(self, signer: Signer, calls: deque[PreparedCall]) -> None:
        self.signer = signer
        self.calls = calls
        self.current: PreparedCall | None = None
        self.played = len(GATHER_INPUTS)
        self.dialling = False
        self.inline_dials = 0
        self.answers = 0

    def next_request(self) -> bytes:
        """The next answer on the current call, or the first request of the next call."""
        if self.played >= len(GATHER_INPUTS):
            self.played = 0
            if self.calls:
                self.current = self.calls.popleft()
            else:
                self.current = PreparedCall(new_call_sid(), new_caller(), -1)
                self.dialling = True
                self.inline_dials += 1
                return self.signer.request("/voice", self.current, {})
        assert self.current is not None
        extra = GATHER_INPUTS[self.played]
        return self.signer.request(f"/voice/answer?step={self.current.step}", self.current, extra)

    def check(self, status: int, body: bytes) -> str | None:
        """Every answer must lead to a gather one step further on."""
        assert self.current is not None
        step = gather_step(body) if status == 200 else None
        expected = 0 if self.dialling else self.current.step + 1
        if self.dialling:
            self.dialling = False
        else:
            self.played += 1
            self.answers += 1
        if step is None:
            self.played = len(GATHER_INPUTS)  # abandon this call
            return f"HTTP {status} without a gather: {body[:200]!r}"
        self.current.step = step
        if step != expected:
            return f"gather step {step}, expected {expected}"
        return None


class SigningProbe:
    """A walker's per-request work (sign, encode, find the gather) against any server.

    Used on the trivial server to measure the generator's own ceiling: any gather is accepted.
    """

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.call = PreparedCall(new_call_sid(), new_caller(), 0)

    def next_request(self) -> bytes:
        """An answer request, signed like the walker's."""
        self.call.step += 1
        path = f"/voice/answer?step={self.call.step}"
        return self.signer.request(path, self.call, GATHER_INPUTS[0])

    def check(self, status: int, body: bytes) -> str | None:
        """Any 200 with a gather is fine."""
        if status != 200 or gather_step(body) is None:
            return f"HTTP {status}: {body[:100]!r}"
        return None

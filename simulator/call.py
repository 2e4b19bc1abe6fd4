"""One simulated phone call, played the way Twilio plays TwiML.

Twilio runs a response's verbs in order: ``<Say>``/``<Play>``/``<Pause>`` are heard, a ``<Gather>``
waits for input and posts it to its ``action`` (with ``Digits`` or ``SpeechResult`` and
``Confidence``), silence falls through to the next verb, ``<Redirect>`` fetches new TwiML,
``<Hangup>`` ends the call and ``<Dial>``/``<Enqueue>`` hand it over. :class:`Call` does the same,
signing every request with the SDK's ``RequestValidator`` exactly as Twilio does, and can post the
status callback Twilio sends when the call ends. A handed-over call can go on as Twilio's would:
:meth:`Call.hold` is one pass of a queued caller's ``waitUrl``, :meth:`Call.transfer_ends` posts
the transfer's ``action`` with its result (``queue-full``, ``no-answer``...). A ``<Record>``
waits for :meth:`Call.leave_message` (Twilio posts RecordingUrl, RecordingDuration and Digits
to its ``action``) or :meth:`Call.leave_nothing` (no post: the next verb runs), and
:meth:`Call.recording_processed` posts the recording status callback as Twilio does later,
without the caller's number.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin

import requests
from twilio.request_validator import RequestValidator

MAX_REDIRECTS = 10  # Twilio's own limit (error 11215)


class Transport(Protocol):
    """Sends a form POST to a URL and returns ``(status, body)``."""

    def post(self, url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST ``params`` to ``url``."""
        ...


class FlaskTransport:
    """Posts into a Flask app in-process, through its test client."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def post(self, url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST through the test client; ``url`` must be on ``base_url`` of the call."""
        response = self.client.post(url, data=params, headers=headers)
        return response.status_code, response.get_data(as_text=True)


class HttpTransport:
    """Posts to a running server over HTTP."""

    def __init__(self, timeout: float = 15.0) -> None:
        self.session = requests.Session()
        self.timeout = timeout

    def post(self, url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST over the network, with Twilio's 15 s limit."""
        response = self.session.post(url, data=params, headers=headers, timeout=self.timeout)
        return response.status_code, response.text


class CallError(AssertionError):
    """The server answered something Twilio could not have played."""


@dataclass
class Call:
    """A call from ``caller`` to ``called`` against the server at ``base_url``."""

    transport: Transport
    auth_token: str
    caller: str = "+14155550123"
    called: str = "+14155550100"
    base_url: str = "http://localhost"
    call_sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    extra: dict[str, str] = field(default_factory=dict)
    heard: list[str] = field(default_factory=list)
    responses: list[ET.Element] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    gather: ET.Element | None = None
    ended: str | None = None  # "hangup", "dial", "enqueue" or "end-of-document"
    handover: ET.Element | None = None  # the <Dial> or <Enqueue> that ended the document
    record: ET.Element | None = None  # the <Record> waiting for a message
    recording_sid: str = field(default_factory=lambda: "RE" + secrets.token_hex(16))
    _record_callback: str = ""
    _url: str = ""
    _pending: list[ET.Element] = field(default_factory=list)

    # ---- what the caller does -------------------------------------------------------------
    def dial(self) -> Call:
        """Place the call: Twilio posts the incoming-call webhook."""
        self._fetch(urljoin(self.base_url, "/voice"), {})
        return self

    def press(self, keys: str) -> Call:
        """Key ``keys`` into the current gather, as Twilio collects them.

        Input stops at the gather's ``finishOnKey`` (``#`` unless it says otherwise; the key
        itself is not sent) or once ``numDigits`` keys are in; later keys are lost. Pressing
        only the finish key sends nothing: Twilio moves on to the next verb, as after silence.
        """
        gather = self._require_gather()
        finish = gather.get("finishOnKey", "#")
        limit = int(gather.get("numDigits") or 0)
        digits = ""
        for key in keys:
            if finish and key == finish:
                break
            digits += key
            if limit and len(digits) >= limit:
                break
        if not digits:
            return self.silence()
        return self._answer({"Digits": digits})

    def say(self, text: str, confidence: float = 0.92) -> Call:
        """Speak ``text`` into the current gather."""
        return self._answer({"SpeechResult": text, "Confidence": f"{confidence:.2f}"})

    def silence(self) -> Call:
        """Say nothing: the gather times out and Twilio moves to the next verb."""
        self._require_gather()
        self.gather = None
        redirect = self._play()
        if redirect is not None:
            self._fetch(redirect, {})
        return self

    def hang_up(self, status: str = "completed", duration: int = 42) -> int:
        """End the call from the caller's side and post the status callback; returns its status."""
        self.ended = self.ended or "caller-hangup"
        return self.status_callback(status, duration)

    def status_callback(self, status: str = "completed", duration: int = 42) -> int:
        """Post Twilio's call status callback."""
        params = {
            "CallStatus": status,
            "CallDuration": str(duration),
            "CallbackSource": "call-progress-events",
        }
        code, _ = self._post(urljoin(self.base_url, "/voice/status"), params)
        return code

    # ---- transfers -------------------------------------------------------------------------
    def hold(self, position: int = 1, waited: int = 0, size: int | None = None) -> ET.Element:
        """One pass of the hold loop of a caller in the queue: what Twilio's ``waitUrl`` gets."""
        verb = self._handed_over("Enqueue")
        url = urljoin(self._url, verb.get("waitUrl") or "")
        params = {
            "QueuePosition": str(position),
            "QueueTime": str(waited),
            "AvgQueueTime": str(waited),
            "CurrentQueueSize": str(size if size is not None else position),
            "QueueSid": "QU" + "0" * 32,
        }
        code, body = self._post(url, params)
        if code != 200:
            raise CallError(f"{url} answered HTTP {code}: {body[:200]}")
        return ET.fromstring(body)

    def transfer_ends(self, result: str) -> Call:
        """The transfer ends with ``result`` (a ``QueueResult`` for a queue, a
        ``DialCallStatus`` for a dial): Twilio posts its action and the call goes on."""
        verb = self._handed_over()
        field_name = "QueueResult" if verb.tag == "Enqueue" else "DialCallStatus"
        action = urljoin(self._url, verb.get("action") or self._url)
        self.ended = None
        self.handover = None
        self._fetch(action, {field_name: result, "QueueTime": "12", "DialCallDuration": "0"})
        return self

    def redirected(self, url: str) -> Call:
        """Twilio moves the live call to ``url`` (a REST ``calls(sid).update(url=...)``, as a
        submitted page does): what was playing stops, and the call follows the new TwiML."""
        self.gather = None
        self.ended = None
        self._pending = []
        self._fetch(urljoin(self.base_url, url), {})
        return self

    # ---- recordings ------------------------------------------------------------------------
    def leave_message(self, duration: int = 12, digits: str = "#") -> Call:
        """Speak a message into the waiting ``<Record>`` and end it with ``digits`` (``hangup``
        when the caller hangs up): Twilio posts the recording to the record's action."""
        verb = self._require_record()
        action = urljoin(self._url, verb.get("action") or self._url)
        self._record_callback = urljoin(self._url, verb.get("recordingStatusCallback") or "")
        self.record = None
        self._pending = []
        self._fetch(
            action,
            {
                "RecordingUrl": self.recording_link,
                "RecordingDuration": str(duration),
                "RecordingSid": self.recording_sid,
                "Digits": digits,
            },
        )
        return self

    def leave_nothing(self) -> Call:
        """Stay silent: Twilio posts no empty recording and runs the next verb."""
        verb = self._require_record()
        self._record_callback = urljoin(self._url, verb.get("recordingStatusCallback") or "")
        self.record = None
        redirect = self._play()
        if redirect is not None:
            self._fetch(redirect, {})
        return self

    def recording_processed(
        self, status: str = "completed", duration: int = 12, **extra: str
    ) -> int:
        """Twilio's recording status callback, some time later: the status, the final URL and
        duration (and, as ``extra``, a transcription's fields). It names the call, not the
        caller. Returns the HTTP status."""
        if not self._record_callback:
            raise CallError("no <Record> named a recordingStatusCallback")
        form = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": self.call_sid,
            "RecordingSid": self.recording_sid,
            "RecordingUrl": self.recording_link,
            "RecordingStatus": status,
            "RecordingDuration": str(duration),
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            **extra,
        }
        code, _ = self._send(self._record_callback, form)
        return code

    @property
    def recording_link(self) -> str:
        """Where Twilio keeps this call's recording."""
        return (
            f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/"
            f"{self.recording_sid}"
        )

    def _require_record(self) -> ET.Element:
        if self.record is None:
            raise CallError(f"no <Record> is waiting; call ended: {self.ended}")
        return self.record

    def _handed_over(self, tag: str | None = None) -> ET.Element:
        verb = self.handover
        if verb is None or (tag is not None and verb.tag != tag):
            raise CallError(f"the call was not handed over with <{tag or 'Dial/Enqueue'}>")
        return verb

    # ---- what the caller heard -----------------------------------------------------------
    @property
    def last(self) -> ET.Element:
        """The last TwiML document received."""
        return self.responses[-1]

    @property
    def last_heard(self) -> str:
        """Everything said in the most recent exchange, as one string."""
        return " ".join(self._last_heard)

    # ---- Twilio's behaviour ---------------------------------------------------------------
    def _answer(self, params: dict[str, str]) -> Call:
        gather = self._require_gather()
        action = urljoin(self._url, gather.get("action") or self._url)
        self.gather = None
        self._pending = []
        self._fetch(action, params)
        return self

    def _require_gather(self) -> ET.Element:
        if self.gather is None:
            raise CallError(f"no gather is waiting; call ended: {self.ended}")
        return self.gather

    def _fetch(self, url: str, params: dict[str, str]) -> None:
        for _ in range(MAX_REDIRECTS):
            self._last_heard: list[str] = []
            code, body = self._post(url, params)
            if code != 200:
                raise CallError(f"{url} answered HTTP {code}: {body[:200]}")
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise CallError(f"{url} answered something that is not XML: {exc}") from None
            if root.tag != "Response":
                raise CallError(f"{url} answered <{root.tag}>, not <Response>")
            self.responses.append(root)
            self._url = url
            self._pending = list(root)
            redirect = self._play()
            if redirect is None:
                return
            url, params = redirect, {}
        raise CallError("too many redirects")

    def _play(self) -> str | None:
        """Run pending verbs until input is needed, the call ends, or a redirect is due."""
        while self._pending:
            verb = self._pending.pop(0)
            if verb.tag in ("Say", "Play", "Pause"):
                self._hear(verb)
            elif verb.tag == "Gather":
                for child in verb:
                    self._hear(child)
                self.gather = verb
                return None
            elif verb.tag == "Record":
                self.record = verb
                return None
            elif verb.tag == "Redirect":
                return urljoin(self._url, (verb.text or "").strip())
            elif verb.tag in ("Hangup", "Reject"):
                self.ended = "hangup"
                return None
            elif verb.tag in ("Dial", "Enqueue"):
                self.ended = verb.tag.lower()
                self.handover = verb
                return None
            else:
                raise CallError(f"unexpected verb <{verb.tag}>")
        self.ended = self.ended or "end-of-document"
        return None

    def _hear(self, verb: ET.Element) -> None:
        if verb.tag == "Say":
            text = (verb.text or "").strip()
            self.heard.append(text)
            self._last_heard.append(text)
        elif verb.tag == "Play":
            self.heard.append(f"[audio {verb.text}]")

    def _post(self, url: str, params: dict[str, str]) -> tuple[int, str]:
        form = {
            "CallSid": self.call_sid,
            "AccountSid": "AC" + "0" * 32,
            "From": self.caller,
            "To": self.called,
            "Caller": self.caller,
            "Called": self.called,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **self.extra,
            **params,
        }
        return self._send(url, form)

    def _send(self, url: str, form: dict[str, str]) -> tuple[int, str]:
        signature = RequestValidator(self.auth_token).compute_signature(url, form)
        code, body = self.transport.post(url, form, {"X-Twilio-Signature": signature})
        self.statuses.append(code)
        return code, body

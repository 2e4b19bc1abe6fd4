"""Hostile webhooks: thousands of random, validly signed requests against the real app.

``python -m bench.fuzz --cases 10000`` builds the app in-process on real Redis (private prefix)
and posts seeded random cases through Flask's test client to ``/voice``,
``/voice/answer?step=...`` and ``/voice/status``. Half of them continue calls the fuzzer has open
(the right CallSid, caller and step, so answers reach deep into the demo flow: data dips,
rebooking, resume offers); the rest are random. Fields go missing, repeat, or carry huge digit
strings, unicode, control characters, SQL/XML/template injection, odd ``Confidence`` values and
odd step numbers. Every request is signed with the SDK's ``RequestValidator`` (for the URL as
the app rebuilds it, see :func:`server_url`), so it reaches the app's logic rather than the 403.

Checked: no response is 500 or above; every 200 is TwiML whose root is ``<Response>``; 204 only
for status callbacks; anything else must be 4xx. Exceptions the app caught and answered with its
spoken apology (logged as errors) are counted too: the caller is safe, but each is a bug.
Results go to ``bench/results/fuzz.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bench import report
from bench.inprocess import app_on_redis
from bench.servers import AUTH_TOKEN

BASE = "http://localhost"
HOSTILE: tuple[str, ...] = (
    "", " ", "\t", "0", "-1", "+", "#", "*", "**#", "1" * 300, "9" * 20_000,
    "' OR '1'='1' --", "1; DROP TABLE sessions; --", "\" OR \"\"=\"",
    "<Say>owned</Say>", "</Response><Hangup/>", "]]><!--", "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    "&amp;&lt;&#0;", "{{ 7*7 }}", "{% for x in range(99999999) %}x{% endfor %}", "${jndi:ldap://127.0.0.1/a}",
    "../../../../etc/passwd", "%00", "%s%s%n", "\x00", "\x00\x01\x02\x1b[31m", "\r\n\r\nX-Injected: 1",
    "\u202eevil", "\ufeff", "\uffff", "😀" * 64, "\u0661\u0662\u0663\u0664\u0665\u0666", "\uff11\uff12\uff13", "\u210c\U0001d522\U0001d529", "\u01c4\u01c5\u01c6", "ß" * 40,
    "NaN", "nan", "inf", "-inf", "1e309", "-0", "0x10", "1_000", "None", "null", "true", "[]", "{}",
    "[1, 2]", "{'$gt': ''}", "()", "A B C 1 2 3", "a b c one two three", "agent", "continue",
    "start over", "yes", "no", "status", "change", "client:" + "x" * 200, "sip:", "client:",
    "anonymous", "+266696687", "+1 (415) 555-0100", "+999999999999999999999", "{caller}", "}{",
)  # fmt: skip
DIGITS = ("0", "1", "2", "9", "8", "12", "123456", "1#", "#", "*", "")
SPEECH = (
    "status", "change", "agent", "A B C 1 2 3", "X Y Z 7 8 9.", "Q R S 4 5 6", "N O P 0 0 0",
    "yes", "no", "one", "two", "continue", "start over", "goodbye", "menu",
)  # fmt: skip
CONFIDENCE = ("0.9", "0.1", "0", "1", "1.0000001", "-0.5", "NaN", "inf", "", "abc", "1e-320")
CALL_STATUS = ("completed", "busy", "failed", "no-answer", "canceled", "in-progress", "ringing")
FROM = ("+14155550123", "+12125550111", "anonymous", "client:alice", "sip:bob@example.com", "")
TO = ("+14155550100", "+14155550199", "+442071838750", "", "not a number")
FIELDS = ("CallSid", "From", "To", "Digits", "SpeechResult", "Confidence", "CallStatus",
          "StirVerstat", "Caller", "Called", "AccountSid", "Direction", "CallDuration")  # fmt: skip
ACTION_STEP = "/voice/answer?step="
FITTING: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("For flight status", ("1", "2", "2", "status", "change", "0")),
    ("confirmation code", ("A B C 1 2 3", "X Y Z 7 8 9.", "Q R S 4 5 6", "123456", "abc123")),
    ("move to another flight", ("1", "2", "yes", "no")),
    ("Press 1 for flight", ("1", "2", "two", "3")),
    ("anything else", ("1", "2", "menu", "goodbye")),
    ("Welcome back", ("1", "2", "continue", "start over")),
)
MILESTONES = {
    "main menu": "For flight status, press 1",
    "confirmation code": "confirmation code",
    "booking not found": "I couldn't find a booking",
    "flight status": "from San Francisco to New York",
    "rebooking options": "Press 1 for flight OV 105",
    "rebooked": "You are now on flight",
    "resume offer": "Welcome back. Last time you were",
    "agent transfer": "<Enqueue",
    "goodbye": "Thank you for flying",
    "apology fallback": "Sorry, we are having trouble",
}


@dataclass
class LiveCall:
    """A call the fuzzer keeps open: its identity and the step its last gather named."""

    call_sid: str
    caller: str
    step: int | None = None
    heard: str = ""


@dataclass
class Case:
    """One request."""

    path: str
    form: MultiDict[str, str]
    kind: str
    content_type: str = "application/x-www-form-urlencoded"
    body: bytes | None = None
    call: LiveCall | None = None


class Fuzzer:
    """Makes cases from a seeded RNG and remembers which calls are open."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.calls: list[LiveCall] = []

    def value(self) -> str:
        """A hostile or random string."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return rng.choice(HOSTILE)
        if roll < 0.7:
            return "".join(rng.choice("0123456789*#") for _ in range(rng.randint(0, 40)))
        if roll < 0.9:
            return "".join(chr(self._code_point()) for _ in range(rng.randint(0, 30)))
        return "".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(0, 200)))

    def _code_point(self) -> int:
        rng = self.rng
        point = rng.choice(
            (rng.randint(0, 0x7F), rng.randint(0x80, 0xFFFF), rng.randint(0x10000, 0x10FFFF))
        )
        return 0xFFFD if 0xD800 <= point <= 0xDFFF else point  # surrogates cannot be encoded

    def step_value(self, call: LiveCall | None) -> str | None:
        """A step query value: usually the call's own, sometimes odd."""
        rng = self.rng
        if call is not None and call.step is not None and rng.random() < 0.7:
            return str(call.step)
        return rng.choice(
            (None, str(rng.randint(-3, 40)), str(rng.randint(-(10**30), 10**30)), self.value())
        )

    def case(self) -> Case:
        """The next request."""
        rng = self.rng
        if self.calls and rng.random() < 0.5:
            return self._continue(rng.choice(self.calls))
        if rng.random() < 0.25:
            call = LiveCall(
                f"CA{rng.getrandbits(128):032x}",
                rng.choice(FROM[:2])
                if rng.random() < 0.1
                else f"+1212{rng.randint(0, 9999999):07d}",
            )
            self.calls.append(call)
            if len(self.calls) > 200:
                self.calls.pop(0)
            return Case("/voice", self._form(call, {}), "new call", call=call)
        return self._random()

    def _continue(self, call: LiveCall) -> Case:
        rng = self.rng
        roll = rng.random()
        if roll < 0.08:
            status = rng.choice(CALL_STATUS)
            return Case(
                "/voice/status",
                self._form(call, {"CallStatus": status}),
                "status of open call",
                call=call,
            )
        if roll < 0.15:
            return Case("/voice", self._form(call, {}), "repeated incoming webhook", call=call)
        answer: dict[str, str] = {}
        pick = rng.random()
        if pick < 0.45:
            answer.update(self.fitting(call.heard))
        elif pick < 0.6:
            answer["Digits"] = rng.choice(DIGITS)
        elif pick < 0.7:
            answer["SpeechResult"] = rng.choice(SPEECH)
            answer["Confidence"] = rng.choice(CONFIDENCE)
        elif pick < 0.9:
            answer[rng.choice(("Digits", "SpeechResult", "Confidence"))] = self.value()
        step = self.step_value(call)
        path = "/voice/answer" + ("" if step is None else "?" + urlencode({"step": step}))
        return Case(path, self._form(call, answer), "answer on open call", call=call)

    def fitting(self, heard: str) -> dict[str, str]:
        """An answer that makes sense for the question last asked, to get deep into the flow."""
        rng = self.rng
        for cue, answers in FITTING:
            if cue in heard:
                choice = rng.choice(answers)
                if choice.replace("#", "").isdigit():
                    return {"Digits": choice}
                return {"SpeechResult": choice, "Confidence": "0.93"}
        return {"Digits": rng.choice(DIGITS)}

    def _form(self, call: LiveCall, extra: dict[str, str]) -> MultiDict[str, str]:
        form: MultiDict[str, str] = MultiDict(
            {
                "CallSid": call.call_sid, "AccountSid": "AC" + "0" * 32, "From": call.caller,
                "To": "+14155550100", "Caller": call.caller, "Called": "+14155550100",
                "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01",
            }
        )  # fmt: skip
        for key, value in extra.items():
            form[key] = value
        if self.rng.random() < 0.05:
            form.add("Digits", self.value())  # a repeated field
        return form

    def _random(self) -> Case:
        rng = self.rng
        form: MultiDict[str, str] = MultiDict()
        for name in FIELDS:
            roll = rng.random()
            if roll < 0.3:
                continue  # missing
            if name == "CallSid" and roll < 0.6:
                form[name] = f"CA{rng.getrandbits(128):032x}"
            elif name == "From" and roll < 0.6:
                form[name] = rng.choice(FROM)
            elif name == "To" and roll < 0.6:
                form[name] = rng.choice(TO)
            elif name == "CallStatus" and roll < 0.6:
                form[name] = rng.choice(CALL_STATUS)
            else:
                form[name] = self.value()
        for _ in range(rng.randint(0, 3)):
            form.add(self.value()[:40] or "x", self.value())
        endpoint = rng.choice(("/voice", "/voice/answer", "/voice/status"))
        if endpoint == "/voice/answer":
            step = self.step_value(None)
            endpoint += "" if step is None else "?" + urlencode({"step": step})
        if rng.random() < 0.03:
            body = urlencode(list(form.items(multi=True))).encode()
            return Case(endpoint, MultiDict(), "signed JSON-typed body", "application/json", body)
        return Case(endpoint, form, "random payload")

    def observe(self, case: Case, status: int, body: str) -> None:
        """Follow the step a live call's gather names, as Twilio would."""
        if case.call is None or status != 200:
            return
        case.call.heard = body
        at = body.find(ACTION_STEP)
        if at >= 0:
            digits = body[at + len(ACTION_STEP) :].split('"', 1)[0]
            case.call.step = int(digits) if digits.lstrip("-").isdigit() else None


def server_url(path: str) -> str:
    """The URL the app will check the signature against (werkzeug re-quotes odd query strings)."""
    return str(Request(EnvironBuilder(path=path, base_url=BASE).get_environ()).url)


def signed_post(client: Any, validator: RequestValidator, case: Case) -> tuple[int, str]:
    """POST ``case`` with a valid ``X-Twilio-Signature`` for its URL (as the app sees it) and body."""
    path = case.path
    if case.body is not None:  # Twilio signs non-form bodies through bodySHA256 in the URL
        digest = hashlib.sha256(case.body).hexdigest()
        path += ("&" if "?" in path else "?") + urlencode({"bodySHA256": digest})
        signature = validator.compute_signature(server_url(path), {})
        response = client.post(path, data=case.body, content_type=case.content_type,
                               headers={"X-Twilio-Signature": signature})  # fmt: skip
    else:
        signature = validator.compute_signature(server_url(path), case.form)
        response = client.post(path, data=case.form, headers={"X-Twilio-Signature": signature})
    return response.status_code, response.get_data(as_text=True)


def problem(case: Case, status: int, body: str) -> str | None:
    """What is wrong with a response, or ``None``."""
    if status >= 500:
        return f"HTTP {status}"
    if status == 204:
        return None if case.path.startswith("/voice/status") else "204 outside the status callback"
    if status == 200:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            return f"200 with a body that is not XML: {exc}"
        return None if root.tag == "Response" else f"200 with root <{root.tag}>"
    if 400 <= status < 500:
        return None
    return f"unexpected HTTP {status}"


class ErrorLog(logging.Handler):
    """Collects error records (the app logs every exception it turns into an apology)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)


def describe(case: Case) -> dict[str, Any]:
    """A case, shortened for the results file."""
    return {
        "path": case.path[:200],
        "kind": case.kind,
        "form": {k: [v[:120] for v in case.form.getlist(k)] for k in list(case.form)[:20]},
    }


def run(cases: int, seed: int) -> dict[str, Any]:
    """Post ``cases`` requests and collect every failure."""
    fuzzer = Fuzzer(seed)
    validator = RequestValidator(AUTH_TOKEN)
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    apologies: list[dict[str, Any]] = []
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    started = time.perf_counter()
    try:
        with app_on_redis("fuzz") as (app, _, _):
            client = app.test_client()
            for _ in range(cases):
                case = fuzzer.case()
                seen = len(errors.records)
                status, body = signed_post(client, validator, case)
                statuses[status] += 1
                kinds[case.kind] += 1
                fuzzer.observe(case, status, body)
                reached.update(name for name, text in MILESTONES.items() if text in body)
                if (wrong := problem(case, status, body)) is not None:
                    failures.append({"problem": wrong, **describe(case), "body": body[:300]})
                for record in errors.records[seen:]:
                    if len(apologies) < 20:
                        apologies.append(
                            {
                                "log": record.getMessage(),
                                "exception": _exception(record),
                                **describe(case),
                            }
                        )
            error_count = len(errors.records)
    finally:
        logging.getLogger().removeHandler(errors)
    elapsed = time.perf_counter() - started
    return {
        "cases": cases,
        "seed": seed,
        "seconds": round(elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "kinds": dict(kinds),
        "flow_points_reached": {name: reached[name] for name in MILESTONES},
        "failures": len(failures),
        "failure_examples": failures[:20],
        "errors_logged": error_count,
        "error_examples": apologies,
        "targets": {
            "no_5xx_and_valid_twiml": report.verdict(not failures),
            "no_unexpected_exceptions": report.verdict(error_count == 0),
        },
    }


def _exception(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info[1] is None:
        return None
    exc = record.exc_info[1]
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def print_report(doc: dict[str, Any]) -> None:
    """Status counts, then failures and logged errors."""
    print(report.table(["HTTP status", "responses"], list(doc["statuses"].items())))
    print()
    print(report.table(["case kind", "cases"], list(doc["kinds"].items())))
    print()
    print(
        report.table(["flow point reached", "responses"], list(doc["flow_points_reached"].items()))
    )
    print(f"\n{doc['cases']} cases in {doc['seconds']} s (seed {doc['seed']}): "
          f"{doc['failures']} bad responses [{doc['targets']['no_5xx_and_valid_twiml']}], "
          f"{doc['errors_logged']} exceptions answered with the apology "
          f"[{doc['targets']['no_unexpected_exceptions']}]")  # fmt: skip
    for example in doc["failure_examples"][:5]:
        print("  bad response:", example)
    for example in doc["error_examples"][:5]:
        print("  logged error:", example)


def main(argv: list[str] | None = None) -> int:
    """Fuzz, print, write ``bench/results/fuzz.json``; exit 1 if a response was bad."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    doc = run(args.cases, args.seed)
    print_report(doc)
    print(f"\nwritten: {report.write('fuzz', doc)}")
    return 1 if doc["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

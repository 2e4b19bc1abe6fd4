"""Make sense of what a caller keyed or said: routing keys, validation and speech clean-up.

Routing keys in ``on`` are alternatives separated by ``|``: ``"1|balance|account balance"``.
Digits must equal an alternative; speech matches when an alternative appears in it as whole words
(case and punctuation ignored). A numeric alternative matches speech only when the whole answer
is that number ("one", "1."), so "no one told me" is not a press of 1. Answers that must
pass a ``validate`` pattern are tried as said and in a compact form (spaces, dashes and dots
removed, spoken digits as digits, upper case), because speech recognition writes "ABC 123." for
a spelled code.
"""

from __future__ import annotations

import re

from ivr.schema import ValidateSpec

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_WORD = re.compile(r"[\w']+", re.UNICODE)
MAX_ANSWER = 256


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` with spoken digits replaced by digits."""
    return [_NUMBER_WORDS.get(w, w) for w in _WORD.findall(text.lower())]


def clean_speech(text: str) -> str:
    """Speech as a value: trimmed, without the trailing full stop recognisers add."""
    return text.strip().rstrip(".!?").strip()[:MAX_ANSWER]


def compact(text: str) -> str:
    """The compact form of an answer (see the module docstring)."""
    return "".join(words(text)).upper()


def route(on: dict[str, str], digits: str | None, speech: str | None) -> str | None:
    """The target of the first ``on`` key matching the answer, or ``None``."""
    heard = words(speech) if speech else []
    for key, target in on.items():
        for alternative in (a.strip() for a in key.split("|")):
            if not alternative:
                continue
            if digits is not None and digits == alternative:
                return target
            wanted = words(alternative)
            if not heard or not wanted:
                continue
            if alternative.isdigit():  # a keypad choice said aloud: the whole answer is the number
                if "".join(heard) == alternative:
                    return target
            elif _contains(heard, wanted):
                return target
    return None


def _contains(heard: list[str], wanted: list[str]) -> bool:
    n = len(wanted)
    return any(heard[i : i + n] == wanted for i in range(len(heard) - n + 1))


def accept(spec: ValidateSpec | None, value: str, spoken: bool) -> str | None:
    """The accepted form of ``value`` under ``spec``, or ``None`` if it fails."""
    candidates = [value, compact(value)] if spoken else [value]
    for candidate in candidates:
        if spec is None or _passes(spec, candidate):
            return candidate
    return None


def _passes(spec: ValidateSpec, value: str) -> bool:
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return False
    if spec.min_length is not None and len(value) < spec.min_length:
        return False
    if spec.max_length is not None and len(value) > spec.max_length:
        return False
    if spec.choices is not None:
        return value.lower() in {c.lower() for c in spec.choices}
    return True

"""Matching what a caller keyed or said: routes, validation, and speech clean-up."""

from __future__ import annotations

import pytest

from ivr.answers import MAX_ANSWER, accept, clean_speech, compact, route, words
from ivr.schema import ValidateSpec

MENU = {
    "1|status|flight status": "status",
    "2|change|rebook": "change",
    "0|agent|representative": "agent",
}


@pytest.mark.parametrize(
    ("digits", "speech", "target"),
    [
        ("1", None, "status"),
        ("2", None, "change"),
        ("0", None, "agent"),
        ("9", None, None),
        ("12", None, None),
        (None, "status", "status"),
        (None, "Status.", "status"),
        (None, "I'd like my flight status please", "status"),
        (None, "two", "change"),
        (None, "Rebook!", "change"),
        (None, "a REPRESENTATIVE, now", "agent"),
        (None, "statuses", None),
        (None, "flight", None),
        (None, "", None),
        (None, None, None),
    ],
)
def test_route(digits: str | None, speech: str | None, target: str | None) -> None:
    assert route(MENU, digits, speech) == target


def test_route_takes_the_first_matching_key() -> None:
    on = {"change": "first", "change booking": "second"}
    assert route(on, None, "change booking") == "first"


def test_route_ignores_empty_alternatives() -> None:
    assert route({"|1|": "one"}, "", None) is None
    assert route({"|1|": "one"}, "1", None) == "one"


def test_route_matches_multi_word_alternatives_as_whole_words() -> None:
    on = {"flight status": "status"}
    assert route(on, None, "what is my flight status") == "status"
    assert route(on, None, "flight statuses") is None
    assert route(on, None, "status of my flight") is None


def test_digits_do_not_match_words() -> None:
    assert route({"status": "status"}, "1", None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One two THREE", ["1", "2", "3"]),
        ("oh nine", ["oh", "9"]),  # "oh" is also the letter O: left as a word
        ("It's fine.", ["it's", "fine"]),
        ("A-B c", ["a", "b", "c"]),
        ("", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Status.  ", "Status"),
        ("yes!", "yes"),
        ("Really?", "Really"),
        ("A B C 1 2 3.", "A B C 1 2 3"),
        ("...", ""),
    ],
)
def test_clean_speech(text: str, expected: str) -> None:
    assert clean_speech(text) == expected


def test_clean_speech_is_bounded() -> None:
    assert len(clean_speech("a" * 10_000)) == MAX_ANSWER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A B C 1 2 3.", "ABC123"),
        ("a b c one two three", "ABC123"),
        ("x-y-z 7.8.9", "XYZ789"),
        ("zero zero seven", "007"),
    ],
)
def test_compact(text: str, expected: str) -> None:
    assert compact(text) == expected


CODE = ValidateSpec(pattern=r"^[A-Z0-9]{6}$")


@pytest.mark.parametrize(
    ("spec", "value", "spoken", "accepted"),
    [
        (None, "anything at all", True, "anything at all"),
        (None, "123", False, "123"),
        (CODE, "ABC123", False, "ABC123"),
        (CODE, "abc123", False, None),
        (CODE, "A B C 1 2 3", True, "ABC123"),
        (CODE, "a b c one two three", True, "ABC123"),
        (CODE, "A B C 1 2 3", False, None),
        (CODE, "ABC12", True, None),
        (ValidateSpec(min_length=4), "123", False, None),
        (ValidateSpec(min_length=4), "1234", False, "1234"),
        (ValidateSpec(max_length=4), "12345", False, None),
        (ValidateSpec(max_length=4), "1234", False, "1234"),
        (ValidateSpec(choices=["yes", "no"]), "Yes", True, "Yes"),
        (ValidateSpec(choices=["yes", "no"]), "maybe", True, None),
        (ValidateSpec(choices=["1", "2"]), "2", False, "2"),
        (ValidateSpec(choices=["1", "2"]), "two", True, "2"),
        (ValidateSpec(choices=["1", "2"]), "3", False, None),
        (ValidateSpec(pattern=r"^\d+$", min_length=2, max_length=3), "12", False, "12"),
        (ValidateSpec(pattern=r"^\d+$", min_length=2, max_length=3), "1234", False, None),
    ],
)
def test_accept(spec: ValidateSpec | None, value: str, spoken: bool, accepted: str | None) -> None:
    assert accept(spec, value, spoken) == accepted


def test_a_pattern_must_match_the_whole_answer() -> None:
    assert accept(ValidateSpec(pattern=r"\d{4}"), "12345", spoken=False) is None
    assert accept(ValidateSpec(pattern=r"\d{4}"), "1234", spoken=False) == "1234"


def test_choices_are_text_even_when_written_as_numbers() -> None:
    spec = ValidateSpec.model_validate({"choices": [1, 2]})
    assert spec.choices == ["1", "2"]
    assert accept(spec, "1", spoken=False) == "1"


def test_a_spoken_number_must_be_the_whole_answer_to_press_it() -> None:
    on = {"1|status": "status", "0|agent": "agent"}
    assert route(on, None, "One.") == "status"
    assert route(on, None, "1") == "status"
    assert route(on, None, "no one told me") is None
    assert route(on, None, "oh I'm not sure") is None
    assert route(on, None, "I'd like an agent please") == "agent"

"""The YAML reader: the traps it guards against, and the positions it remembers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ivr.errors import FlowLoadError, Problem
from ivr.yamlsource import MAX_VALUES, Positions, parse


def value_of(text: str) -> Any:
    data, _ = parse(text, "t.yaml")
    return data


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(FlowLoadError) as caught:
        parse(text, "t.yaml")
    return caught.value.problems


# ---- the YAML traps ------------------------------------------------------------------------
def test_keypad_keys_stay_strings() -> None:
    assert value_of("1: one\n0: zero\n'#': pound\n") == {"1": "one", "0": "zero", "#": "pound"}


@pytest.mark.parametrize("word", ["no", "off", "yes", "on", "No", "OFF", "y", "n"])
def test_yaml_11_booleans_stay_words_as_keys_and_values(word: str) -> None:
    assert value_of(f"{word}: {word}\n") == {word: word}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("~", None),
        ("null", None),
        ("", None),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("0123", "0123"),
        ("007", "007"),
        ("1:30", "1:30"),
        ("12:30:45", "12:30:45"),
        ("0x1F", "0x1F"),
        ("0o17", "0o17"),
        ("1_000", "1_000"),
        (".inf", ".inf"),
        (".nan", ".nan"),
        ("+14155550100", "+14155550100"),
        ("'5'", "5"),
        ('"true"', "true"),
        ("'0123'", "0123"),
    ],
)
def test_scalars_resolve_the_yaml_12_core_way(text: str, expected: Any) -> None:
    value = value_of(f"v: {text}\n")["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_block_scalars_are_strings() -> None:
    assert value_of("v: |\n  42\n") == {"v": "42\n"}
    assert value_of("v: >-\n  true\n") == {"v": "true"}


def test_a_shared_alias_is_allowed_and_expanded() -> None:
    data = value_of("base: &b {retries: 2}\nfirst: *b\nsecond: *b\n")
    assert data["first"] == data["second"] == {"retries": 2}


# ---- refusals ------------------------------------------------------------------------------
def test_a_duplicate_key_is_an_error_at_the_second_key() -> None:
    [problem] = problems_of("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert (problem.line, problem.col) == (4, 3)
    assert "'c' appears twice" in problem.message


def test_merge_keys_are_refused() -> None:
    [problem] = problems_of("base: &b {x: 1}\nother:\n  <<: *b\n")
    assert (problem.line, problem.col) == (3, 3)
    assert "Merge keys" in problem.message


def test_a_recursive_alias_is_one_problem_found_at_once() -> None:
    began = time.perf_counter()
    problems = problems_of("a: &loop [*loop, *loop, {b: *loop}]\n")
    assert time.perf_counter() - began < 1.0
    assert [(p.line, p.col) for p in problems] == [(1, 4)]
    assert "refers back to it" in problems[0].message


def test_aliases_that_expand_past_the_limit_are_refused_quickly() -> None:
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):  # 10**9 values if expanded
        levels.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]")
    began = time.perf_counter()
    [problem] = problems_of("\n".join(levels) + "\n")
    assert time.perf_counter() - began < 2.0
    assert f"past {MAX_VALUES} values" in problem.message


def test_deep_nesting_is_refused() -> None:
    text = "v: " + "[" * 40 + "]" * 40 + "\n"
    problems = problems_of(text)
    assert problems and all("nests too deeply" in p.message for p in problems)


def test_a_tab_in_the_indentation_gets_a_hint() -> None:
    [problem] = problems_of("a:\n\tb: 1\n")
    assert (problem.line, problem.col) == (2, 1)
    assert problem.message.startswith("This is not valid YAML: ")
    assert problem.message.endswith("Indent with spaces, not tabs.")


def test_other_syntax_errors_get_no_tab_hint() -> None:
    [problem] = problems_of("a: b: c\n")
    assert (problem.line, problem.col) == (1, 5)
    assert "tabs" not in problem.message


def test_an_unclosed_quote_is_located_where_it_opens() -> None:
    [problem] = problems_of("a: 1\nb: 'never closed\nc: 2\nd: 3\n")
    assert (problem.line, problem.col) == (2, 4)
    assert "quoted scalar that starts at line 2, column 4" in problem.message


def test_an_unclosed_bracket_names_where_it_opens() -> None:
    [problem] = problems_of("a: [1, 2\nb: 3\n")
    assert problem.line == 2
    assert "flow sequence that starts at line 1, column 4" in problem.message


def test_a_bracket_still_open_at_the_end_is_located_where_it_opens() -> None:
    [problem] = problems_of("a: 1\nb: {c: [1, 2]\n\n")
    assert (problem.line, problem.col) == (2, 4)
    assert "flow mapping that starts at line 2, column 4" in problem.message


def test_a_second_document_is_refused_where_it_starts() -> None:
    [problem] = problems_of("a: 1\n---\nb: 2\n")
    assert (problem.line, problem.col) == (2, 1)
    assert "single document" in problem.message


def test_an_empty_document_is_refused() -> None:
    [problem] = problems_of("# only a comment\n")
    assert (problem.line, problem.col) == (1, 1)
    assert "empty" in problem.message


# ---- positions -----------------------------------------------------------------------------
TEXT = """\
start: menu
nodes:
  menu:
    say: [Hello, {say: World, voice: alice}]
    on:
      "1": menu
"""


def test_positions_of_values_and_keys() -> None:
    _, positions = parse(TEXT, "t.yaml")
    assert positions.at(("start",)) == (1, 8)
    assert positions.at(("nodes", "menu")) == (4, 5)
    assert positions.at(("nodes", "menu", "say", 0)) == (4, 11)
    assert positions.at(("nodes", "menu", "say", 1, "voice")) == (4, 38)
    assert positions.at(("nodes", "menu", "on", "1")) == (6, 12)
    assert positions.key_at(("nodes", "menu")) == (3, 3)
    assert positions.key_at(("nodes", "menu", "on", "1")) == (6, 7)


def test_locate_skips_parts_that_are_not_in_the_document() -> None:
    _, positions = parse(TEXT, "t.yaml")
    loc = ("nodes", "menu", "say", "list[str]", 1, "SayPart", "voice")
    assert positions.locate(loc) == (4, 38)
    assert positions.locate(("nodes", "menu", "missing_key")) == (4, 5)
    assert positions.locate(("nowhere",)) == (1, 1)


def test_a_problem_can_point_at_the_key_or_the_value() -> None:
    _, positions = parse(TEXT, "t.yaml")
    at_value = positions.problem(("nodes", "menu", "on"), "x")
    at_key = positions.problem(("nodes", "menu", "on"), "x", at_key=True)
    assert (at_value.line, at_value.col) == (6, 7)
    assert (at_key.line, at_key.col) == (5, 5)
    assert str(at_key) == "t.yaml:5:5: error: x"


def test_positions_start_empty_and_default_to_the_top() -> None:
    positions = Positions("t.yaml")
    assert positions.locate(("anything",)) == (1, 1)
    assert positions.problem(("a",), "m", severity="warning").severity == "warning"


def test_an_aliased_scalar_can_be_a_key_and_a_value() -> None:
    data = value_of('name: &n "main menu"\nother: *n\nkeys:\n  &k "1": a\n  *n : b\n')
    assert data == {"name": "main menu", "other": "main menu", "keys": {"1": "a", "main menu": "b"}}


def test_an_aliased_map_is_a_copy_not_a_shared_object() -> None:
    data = value_of("base: &b {retries: 2, then: [x]}\nfirst: *b\n")
    assert data["first"] == data["base"]
    assert data["first"] is not data["base"]
    assert data["first"]["then"] is not data["base"]["then"]


def test_a_map_used_as_a_key_is_refused_and_its_value_dropped() -> None:
    [problem] = problems_of("a: 1\n? {x: 1}\n: 2\nb: 3\n")
    assert (problem.line, problem.col) == (2, 3)
    assert "must be a plain word" in problem.message


@pytest.mark.parametrize(
    ("text", "words"),
    [("a: *nowhere\n", "undefined alias"), ("a: 1\n---\nb: 2\n", "single document")],
)
def test_what_the_composer_words_is_worded_by_it(text: str, words: str) -> None:
    [problem] = problems_of(text)
    assert words in problem.message


def test_an_alias_cannot_nest_past_the_depth_limit() -> None:
    deep = "[" * 20 + "x" + "]" * 20
    text = f"a: &a {deep}\nb: {'[' * 20}*a{']' * 20}\n"
    problems = problems_of(text)
    assert problems and all("nests too deeply" in p.message for p in problems)
    assert (problems[0].line, problems[0].col) == (2, 24)


def test_a_scalar_past_the_depth_limit_is_refused() -> None:
    problems = problems_of("v: " + "[" * 32 + "1" + "]" * 32 + "\n")
    assert problems and all("nests too deeply" in p.message for p in problems)


def test_the_value_limit_counts_lists_and_maps_too() -> None:
    base = "b: &b [" + ", ".join(["[]"] * 999) + "]\n"
    fan = "c: [" + ", ".join(["*b"] * 101) + "]\n"
    [problem] = problems_of(base + fan)
    assert f"past {MAX_VALUES} values" in problem.message


def test_a_duplicate_anchor_is_refused_where_it_is_repeated() -> None:
    [problem] = problems_of("a: &x 1\nb: &x 2\nc: *x\n")
    assert "duplicate anchor" in problem.message
    assert (problem.line, problem.col) == (2, 4)


def test_an_anchor_inside_a_refused_key_is_still_known() -> None:
    [problem] = problems_of("? &k [1, 2]\n: v\nb: *k\n")
    assert "must be a plain word" in problem.message
    assert (problem.line, problem.col) == (1, 3)


def test_positions_inside_an_alias_are_the_anchors() -> None:
    _, positions = parse("base: &b\n  retries: 2\n  then: x\nuse: *b\n", "t.yaml")
    assert positions.at(("use", "retries")) == (2, 12)
    assert positions.key_at(("use", "then")) == (3, 3)

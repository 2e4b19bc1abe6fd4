"""Prompt templates and expressions: the sandbox holds, and missing variables are harmless."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import ChainableUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ivr import template_words, templates
from ivr.templates import compile_expression, compile_template, evaluate, is_static, render

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ name.__class__ }}",
    "{{ name.__class__.__base__.__subclasses__() }}",
    "{{ name | attr('__class__') }}",
    "{{ (name | attr('__class__')).__base__ }}",
    "{{ '{0.__class__}'.format(name) }}",
    "{{ booking.__dict__ }}",
    "{{ booking.__class__.__init__.__globals__ }}",
    "{{ length.__code__ }}",
    "{{ length.__globals__ }}",
    "{{ range(10**9) | list | length }}",
]


def scope() -> dict[str, Any]:
    return {"name": "Ada", "booking": {"flight": "OV 220"}, "items": [1, 2], "length": len}


@pytest.mark.parametrize("text", ESCAPES)
def test_escapes_render_empty_and_never_raise(text: str) -> None:
    variables = scope()
    assert render(compile_template(text), variables) == ""
    assert variables == scope()


@pytest.mark.parametrize(
    "text",
    [
        "''.__class__.__mro__",
        "''.__class__.__mro__[1].__subclasses__()",
        "name.__class__",
        "booking.__dict__",
        "length.__globals__",
        "lipsum.__globals__",
    ],
)
def test_escapes_evaluate_to_none(text: str) -> None:
    assert evaluate(compile_expression(text), scope()) is None


@pytest.mark.parametrize(
    "text",
    ["{{ items.append(3) }}", "{{ booking.update({'flight': 'X'}) }}", "{{ items.pop() }}"],
)
def test_variables_cannot_be_changed_from_a_template(text: str) -> None:
    variables = scope()
    assert render(compile_template(text), variables) == ""
    assert variables["items"] == [1, 2]
    assert variables["booking"] == {"flight": "OV 220"}


def test_an_expression_cannot_change_variables_either() -> None:
    variables = scope()
    assert evaluate(compile_expression("items.pop()"), variables) is None
    assert variables["items"] == [1, 2]


def test_ordinary_templates_render() -> None:
    template = compile_template("Hello {{ name }}, flight {{ booking.flight }}.")
    assert render(template, scope()) == "Hello Ada, flight OV 220."
    assert render(compile_template("{{ code | list | join(' ') }}"), {"code": "AB1"}) == "A B 1"


@pytest.mark.parametrize(
    "text",
    [
        "{{ missing }}",
        "{{ missing.attribute.deeper }}",
        "{{ missing['key'] }}",
        "{{ booking.gate }}",
    ],
)
def test_undefined_variables_render_empty(text: str) -> None:
    assert render(compile_template(f"Gate {text}."), scope()) == "Gate ."


def test_calling_an_undefined_variable_renders_empty_instead_of_raising() -> None:
    assert render(compile_template("{{ missing() }}"), scope()) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("missing", None),
        ("missing.a.b", None),
        ("missing == 1", False),
        ("not missing", True),
        ("missing or 'default'", "default"),
        ("booking.flight", "OV 220"),
        ("items | length > 1", True),
        ("name ~ '!'", "Ada!"),
        ("1 / 0", None),
    ],
)
def test_evaluate(text: str, expected: Any) -> None:
    assert evaluate(compile_expression(text), scope()) == expected


def test_syntax_errors_are_value_errors_with_a_reason() -> None:
    with pytest.raises(
        ValueError, match="the template '\\{\\{ name' cannot be read: a '\\{\\{' is never closed"
    ):
        compile_template("{{ name")
    with pytest.raises(ValueError, match="the condition 'a ==' cannot be read: it ends too early"):
        compile_expression("a ==")


@pytest.mark.parametrize(
    ("text", "static"),
    [
        ("Hello there.", True),
        ("Costs {5} dollars", True),
        ("Hello {{ name }}", False),
        ("{% if vip %}Welcome{% endif %}", False),
        ("{# a note #}Hi", False),
    ],
)
def test_is_static(text: str, static: bool) -> None:
    assert is_static(text) is static


# ---- the fast paths give Jinja's own results -------------------------------------------------
_JINJA = ImmutableSandboxedEnvironment(  # prompts speak None as nothing, never "None"
    undefined=ChainableUndefined, autoescape=False, finalize=lambda v: "" if v is None else v
)
_NAMES = st.sampled_from(["a", "b", "visited", "status", "range", "none", "True", "loop"])
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["", "delayed", "1", "A"]), st.lists(st.integers(0, 2), max_size=2),
)  # fmt: skip
_SCOPES = st.dictionaries(st.sampled_from(["a", "b", "visited", "status"]), _VALUES, max_size=4)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    pieces=st.lists(
        st.one_of(
            st.sampled_from(["Hello ", ", ", "{{", "}}", "{ x }", "\n", "{{a}}", " {%"]),
            _NAMES.map(lambda name: "{{ " + name + " }}"),
            _NAMES.map(lambda name: "{{" + name + "}}"),
        ),
        max_size=5,
    ),
    scope=_SCOPES,
)
def test_substitution_templates_render_as_jinja_renders_them(
    pieces: list[str], scope: dict[str, Any]
) -> None:
    text = "".join(pieces)
    try:
        expected = _JINJA.from_string(text).render(scope)
    except TemplateSyntaxError:
        with pytest.raises(ValueError):
            templates.compile_template(text)
        return
    assert templates.render(templates.compile_template(text), scope) == expected.strip()


def jinja_value(text: str, variables: dict[str, Any]) -> Any:
    """What Jinja itself makes of expression ``text``, as :func:`templates.evaluate` reports it
    (an error or an undefined value is ``None``)."""
    try:
        value = _JINJA.compile_expression(text, undefined_to_none=True)(**variables)
    except Exception:
        return None
    return None if isinstance(value, ChainableUndefined) else value


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    name=_NAMES,
    symbol=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
    literal=st.sampled_from(["0", "3", "-2", "1.5", "'delayed'", '"1"', "true", "None", "''"]),
    spacing=st.sampled_from(["", " ", "  "]),
    scope=_SCOPES,
)
def test_comparisons_evaluate_as_jinja_evaluates_them(
    name: str, symbol: str, literal: str, spacing: str, scope: dict[str, Any]
) -> None:
    text = f"{spacing}{name}{spacing}{symbol}{spacing}{literal}{spacing}"
    assert templates.evaluate(templates.compile_expression(text), scope) == jinja_value(text, scope)


_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-1, 2), st.sampled_from(["", "cancelled flight"]),
    st.just({}), st.just([]),
)  # fmt: skip
_NESTED = st.recursive(
    _LEAVES,
    lambda inner: st.dictionaries(
        st.sampled_from(["topic", "open_conversation", "items", "get", "_x", "status"]),
        inner,
        max_size=3,
    ),
    max_leaves=6,
)
_CARDS = st.fixed_dictionaries(
    {},
    optional={
        "contacts": st.lists(
            st.fixed_dictionaries({"sid": st.sampled_from(["CA1", "CA2"]), "at": st.floats(0, 9)}),
            max_size=2,
        ),
        "open_conversation": st.one_of(st.none(), _NESTED),
    },
)


@settings(max_examples=600, deadline=None, derandomize=True)
@given(
    path=st.lists(
        st.sampled_from(["history", "a", "open_conversation", "topic", "items", "_x", "status"]),
        min_size=1,
        max_size=4,
    ),
    rest=st.sampled_from(["1", "a", "history.contacts_within('24h') > 0", "b or 2", "x.y"]),
    a=_NESTED,
    card=st.one_of(st.none(), _CARDS),
)
def test_a_false_first_part_is_read_as_jinja_reads_it(
    path: list[str], rest: str, a: Any, card: dict[str, Any] | None
) -> None:
    from ivr.history import scope as history_scope

    text = f"{'.'.join(path)} and {rest}"
    variables: dict[str, Any] = {"a": a, "b": 0}
    if card is not None:
        variables.update(history_scope(card, "CA1", 5.0))
    expected = jinja_value(text, variables)
    assert templates.evaluate(templates.compile_expression(text), variables) == expected


def test_the_demos_first_condition_needs_no_jinja_for_a_caller_without_history() -> None:
    text = "history.open_conversation.topic and history.contacts_within('24h') > 0"
    condition = templates.compile_expression(text)
    assert isinstance(condition, templates.FalseFirst)
    assert evaluate(condition, {}) is None
    assert not isinstance(templates.compile_expression("a and b or c"), templates.FalseFirst)
    assert not isinstance(templates.compile_expression("a['b'] and c"), templates.FalseFirst)
    assert not isinstance(templates.compile_expression("loop.index and c"), templates.FalseFirst)


def test_simple_shapes_take_the_fast_paths_and_others_do_not() -> None:
    assert isinstance(templates.compile_template("Menu {{ n }} of 3."), templates.Substitution)
    assert not isinstance(templates.compile_template("{{ n | upper }}"), templates.Substitution)
    assert not isinstance(templates.compile_template("{{ flight.status }}"), templates.Substitution)
    assert isinstance(templates.compile_expression("visited == 12"), templates.Comparison)
    assert not isinstance(templates.compile_expression("a == 1 and b"), templates.Comparison)
    assert not isinstance(templates.compile_expression("range == 1"), templates.Comparison)


@pytest.mark.parametrize("text", ["{{ not }}", "{{{ x }}", "{{ x }}}", "{{ and }}", "Hi {{ x }} {"])
def test_the_fast_path_refuses_nothing_jinja_accepts_and_accepts_nothing_it_refuses(
    text: str,
) -> None:
    try:
        expected = _JINJA.from_string(text).render(x=1).strip()
    except TemplateSyntaxError:
        with pytest.raises(ValueError):
            templates.compile_template(text)
        return
    assert templates.render(templates.compile_template(text), {"x": 1}) == expected


@pytest.mark.parametrize("text", ["x == 007", "x == 01", "not == 1"])
def test_comparisons_jinja_refuses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        templates.compile_expression(text)


def test_line_endings_render_as_jinja_renders_them() -> None:
    text = "Line one {{ x }}\r\nline two\rline three\r\n"
    expected = _JINJA.from_string(text).render(x=1)
    assert templates.render(templates.compile_template(text), {"x": 1}) == expected.strip()


_URL_JINJA = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined, autoescape=False, finalize=templates.url_component
)
_URL_VALUES = st.one_of(
    _VALUES,
    st.sampled_from(["../../admin", "x?admin=1#", ".", "..", "a b/c", "Zoë", "%2F", "+&="]),
    st.text(max_size=6),
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    pieces=st.lists(
        st.one_of(
            st.sampled_from(["https://api.example/", "/c/", "?q=", "&", "{{", "}}", "{ x }"]),
            _NAMES.map(lambda name: "{{ " + name + " }}"),
            _NAMES.map(lambda name: "{{" + name + "}}"),
        ),
        max_size=5,
    ),
    scope=st.dictionaries(st.sampled_from(["a", "b", "visited", "status"]), _URL_VALUES),
)
def test_substitution_urls_render_as_the_url_environment_renders_them(
    pieces: list[str], scope: dict[str, Any]
) -> None:
    text = "".join(pieces)
    try:
        expected = _URL_JINJA.from_string(text).render(scope)
    except TemplateSyntaxError:
        with pytest.raises(ValueError):
            templates.compile_url(text)
        return
    assert templates.render(templates.compile_url(text), scope) == expected.strip()


def test_plain_urls_take_the_fast_path_and_filtered_ones_do_not() -> None:
    assert isinstance(templates.compile_url("/c/{{ code }}"), templates.UrlSubstitution)
    assert not isinstance(templates.compile_url("/c/{{ code | raw_url }}"), templates.Substitution)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ name }", "a '}' stands alone: a value is written {{ name }}, with two braces"),
        ("Hi {{ name", "a '{{' is never closed: end the value with '}}'"),
        ("{{ first last }}", "two things stand side by side inside {{ }} (before 'last')"),
        ("{% iff x %}y{% endif %}", "{% iff %} is not a template tag (did you mean {% if %}?)"),
        ("{% if x %}y", "{% if %} is never closed: add {% endif %} where it should end"),
        ("{% for x in y %}z", "{% for %} is never closed: add {% endfor %}"),
        ("{% endif %}", "{% endif %} closes nothing: there is no {% if %} before it"),
        ("{{ code | uper }}", "there is no filter 'uper' (did you mean 'upper'?)"),
        ("{{ 'delayed }}", "a quote ' is never closed"),
        ("{{ }}", "{{ }} is empty"),
        ("{{ booking. }}", "a dot is not followed by a name"),
        ("{{ f() ) }}", "a ')' closes nothing"),
        ("{% if %}x{% endif %}", "a {% ... %} tag is missing its condition or list"),
    ],
)
def test_template_syntax_errors_are_told_in_plain_words_with_the_fix(text: str, words: str) -> None:
    with pytest.raises(ValueError) as failed:
        templates.compile_template(text)
    assert f"cannot be read: {words}" in str(failed.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tries >", "it ends too early"),
        ("status == delayed flight", "two things stand side by side in the condition"),
    ],
)
def test_condition_syntax_errors_are_told_in_plain_words(text: str, words: str) -> None:
    with pytest.raises(ValueError) as failed:
        templates.compile_expression(text)
    assert str(failed.value).startswith(f"the condition {text!r} cannot be read: {words}")


def test_an_unknown_parser_message_is_kept_as_it_is() -> None:
    assert template_words.explain("something new") == "something new"

"""Prompt templates and expressions: the sandbox holds, and missing variables are harmless."""

from __future__ import annotations

from typing import Any

import pytest

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
    with pytest.raises(ValueError, match="the template '\\{\\{ name' has a syntax error"):
        compile_template("{{ name")
    with pytest.raises(ValueError, match="the expression 'a ==' has a syntax error"):
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

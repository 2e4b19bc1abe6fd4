"""Prompt templates and expressions, run in Jinja2's immutable sandbox (never ``eval``).

Prompts are Jinja2 templates (``"Your flight {{ flight.number }} is {{ flight.status }}"``);
``set`` values and branch conditions are Jinja2 expressions (``attempts > 2 and not vip``).
Templates are compiled when a flow loads, so a syntax error is a load error with its line; a
prompt with no template syntax is static (the same for every caller) and is never compiled.
Compiling is memoised, so a text shared by flow versions or made by the engine (the welcome-back
prompt) compiles once per process.
A missing variable renders as nothing and is false in a condition, instead of failing the call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)

Expression = Callable[..., Any]


def is_static(text: str) -> bool:
    """True when ``text`` has no template syntax, so it renders the same for everyone."""
    return "{{" not in text and "{%" not in text and "{#" not in text


def single_expression(text: str) -> str | None:
    """The expression inside ``"{{ expr }}"`` when that is all of ``text`` (its value keeps its
    type in ``set`` and ``http.json``), else ``None``."""
    inner = text.strip()
    if inner.startswith("{{") and inner.endswith("}}") and inner.count("{{") == 1:
        return inner[2:-2].strip()
    return None


@functools.lru_cache(maxsize=2048)
def compile_template(text: str) -> Template:
    """Compile a prompt template; raises ``ValueError`` with a readable reason."""
    try:
        return _ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise ValueError(f"the template {text!r} has a syntax error: {exc.message}") from None


@functools.lru_cache(maxsize=2048)
def compile_expression(text: str) -> Expression:
    """Compile a condition or value expression; raises ``ValueError`` with a readable reason."""
    try:
        return _ENV.compile_expression(text, undefined_to_none=True)
    except TemplateSyntaxError as exc:
        raise ValueError(f"the expression {text!r} has a syntax error: {exc.message}") from None


def render(
    template: Template,
    variables: Mapping[str, Any],
    on_error: Callable[[str], None] | None = None,
) -> str:
    """Render a prompt; any runtime error (sandbox refusal included) renders as empty text.

    A prompt must never crash a call, but a designer must hear of it: ``on_error`` gets the
    reason (the engine turns it into a ``template_failed`` event).
    """
    try:
        return template.render(variables).strip()
    except Exception as exc:
        if on_error is not None:
            on_error(f"{type(exc).__name__}: {exc}"[:200])
        return ""


def evaluate(expression: Expression, variables: Mapping[str, Any]) -> Any:
    """Evaluate an expression; a runtime error yields ``None`` (false in a branch)."""
    try:
        return _plain(expression(**variables))
    except Exception:
        return None


def _plain(value: Any) -> Any:
    """Turn Jinja's undefined values into ``None`` so results are JSON-serialisable."""
    if isinstance(value, ChainableUndefined):
        return None
    return value

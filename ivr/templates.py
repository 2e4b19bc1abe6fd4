"""Prompt templates and expressions, run in Jinja2's immutable sandbox (never ``eval``).

Prompts are Jinja2 templates (``"Your flight {{ flight.number }} is {{ flight.status }}"``);
``set`` values and branch conditions are Jinja2 expressions (``attempts > 2 and not vip``).
Templates are compiled when a flow loads, so a syntax error is a load error with its line; a
prompt with no template syntax is static (the same for every caller) and is never compiled.
Compiling is memoised, so a text shared by flow versions or made by the engine (the welcome-back
prompt) compiles once per process.
A missing variable renders as nothing and is false in a condition, instead of failing the call.

The two commonest shapes skip Jinja's per-call machinery (a new context per render), with the
same results: a prompt whose only syntax is plain ``{{ name }}`` substitutions, and a condition
comparing one variable with a literal (``attempts >= 3``, ``status == 'delayed'``). They are
cheaper, and every flow's copies share one piece of code, so a flow of thousands of nodes steps
as fast as a small one.

A data dip's ``url`` is a template of its own kind (:func:`compile_url`): the value of every
``{{ ... }}`` is percent-encoded as one path segment or query value (every character but letters,
digits and ``-._~``; a value that is only dots is encoded too), so ``../../admin`` stays one
segment and ``x?admin=1#`` adds no query or fragment. ``urlencode`` there encodes the same way
(Jinja's own keeps ``/``), and ``raw_url`` is the explicit way to put text into a URL as it is
(a base URL from ``env``). A plain ``{{ name }}`` URL has the same fast path as a prompt, with the
same encoding.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ivr import template_words
from ivr.history import History


def _spoken(value: Any) -> Any:
    """What ``{{ value }}`` puts in a prompt: ``None`` (a JSON null, a dip's missing status) is
    empty text, like a missing variable, never the word "None"."""
    return "" if value is None else value


_ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined, autoescape=False, finalize=_spoken
)

Expression = Callable[..., Any]


class Template(Protocol):
    """A compiled prompt template."""

    def render(self, variables: Mapping[str, Any]) -> str: ...


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SUBSTITUTION = re.compile(r"\{\{ *(" + _NAME + r") *\}\}")
_LITERAL = (
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|'[^'\\]*'|\"[^\"\\]*\"|true|false|True|False|none|None"
)
_COMPARISON = re.compile(r"\s*(" + _NAME + r")\s*(==|!=|<=|>=|<|>)\s*(" + _LITERAL + r")\s*")
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le,
    ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}  # fmt: skip
_CONSTANTS = {"true": True, "false": False, "none": None}
# Names Jinja resolves itself (its globals, and what a template may mean by these) stay Jinja's.
_RESERVED = {
    *_ENV.globals, "self", "loop", "caller", "varargs", "kwargs", "super",
    "and", "or", "not", "in", "is", "if", "else",  # operators in an expression
}  # fmt: skip


class _Missing:
    """What a comparison sees for an undefined variable: equal to nothing, unordered (as Jinja's
    undefined is: ``==`` is false, ``!=`` true, ``<`` an error that makes the condition false)."""

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


_MISSING = _Missing()


class RawUrl(str):
    """Text a URL template puts in as it is: what ``raw_url`` and ``urlencode`` give."""

    __slots__ = ()


def url_component(value: Any) -> str:
    """``value`` as one URL path segment or query value (``RawUrl`` text stays as it is)."""
    if isinstance(value, RawUrl):
        return value
    if isinstance(value, Undefined) or value is None:
        return ""
    encoded = quote(str(value), safe="", errors="replace")
    if encoded.strip(".") == "" and encoded:  # "." and ".." are path steps, not names
        return encoded.replace(".", "%2E")
    return encoded


def _raw_url(value: Any) -> RawUrl:
    return RawUrl("" if isinstance(value, Undefined) else str(value))


def _urlencode(value: Any) -> RawUrl:
    """Jinja's ``urlencode``, but ``/`` is encoded too, as in every other URL value."""
    if isinstance(value, Mapping):
        pairs = (f"{url_component(k)}={url_component(v)}" for k, v in value.items())
        return RawUrl("&".join(pairs))
    return RawUrl(url_component(value))


_URL_ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined, autoescape=False, finalize=url_component
)
_URL_ENV.filters.update(raw_url=_raw_url, urlencode=_urlencode)


class Substitution:
    """A prompt whose only template syntax is ``{{ name }}``: each name's value as text, an
    undefined one as nothing, exactly as Jinja renders it."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[tuple[str, str | None], ...]) -> None:
        self.parts = parts  # (text, name of the variable after it or None)

    def render(self, variables: Mapping[str, Any]) -> str:
        """The text with every variable substituted."""
        out = []
        for text, name in self.parts:
            out.append(text)
            if name is not None and name in variables:
                value = variables[name]
                out.append("" if value is None else str(value))
        return "".join(out)


class UrlSubstitution(Substitution):
    """A URL whose only template syntax is ``{{ name }}``: each value encoded by
    :func:`url_component`, exactly as the URL environment renders it."""

    __slots__ = ()

    def render(self, variables: Mapping[str, Any]) -> str:
        """The URL with every variable substituted, encoded."""
        out = []
        for text, name in self.parts:
            out.append(text)
            if name is not None and name in variables:
                out.append(url_component(variables[name]))
        return "".join(out)


class Comparison:
    """A condition comparing one variable with a literal, evaluated as Jinja evaluates it."""

    __slots__ = ("compare", "literal", "name")

    def __init__(self, name: str, compare: Callable[[Any, Any], Any], literal: Any) -> None:
        self.name = name
        self.compare = compare
        self.literal = literal

    def __call__(self, **variables: Any) -> Any:
        return self.compare(variables.get(self.name, _MISSING), self.literal)


def _substitution(text: str) -> Substitution | None:
    if "{%" in text or "{#" in text:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as Jinja's lexer reads lines
    parts: list[tuple[str, str | None]] = []
    at = 0
    for found in _SUBSTITUTION.finditer(text):
        name = found.group(1)
        if name in _RESERVED or name.lower() in _CONSTANTS:
            return None  # Jinja would find a global, a special name or a constant there
        parts.append((text[at : found.start()], name))
        at = found.end()
    rest = text[at:]
    if any("{" in chunk or "}" in chunk for chunk in (rest, *(chunk for chunk, _ in parts))):
        return None  # braces outside a plain substitution: Jinja's job (or its syntax error)
    if rest.endswith("\n"):  # Jinja drops one trailing newline of a template
        rest = rest[:-1]
    parts.append((rest, None))
    return Substitution(tuple(parts))


def _comparison(text: str) -> Comparison | None:
    found = _COMPARISON.fullmatch(text)
    if found is None:
        return None
    name, symbol, raw = found.groups()
    if name in _RESERVED or name.lower() in _CONSTANTS:
        return None
    literal: Any
    if raw[0] in "'\"":
        literal = raw[1:-1]
    elif raw.lower() in _CONSTANTS:
        literal = _CONSTANTS[raw.lower()]
    elif "." in raw:
        literal = float(raw)
    else:
        literal = int(raw)
    return Comparison(name, _OPERATORS[symbol], literal)


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
    simple = _substitution(text)
    if simple is not None:
        return simple
    try:
        return _ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise ValueError(_syntax_error("the template", text, exc)) from None


_HTML_ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined, autoescape=True, finalize=_spoken
)


def _syntax_error(what: str, text: str, exc: TemplateSyntaxError) -> str:
    """A template syntax error in plain words (:mod:`ivr.template_words`), with the text."""
    words = template_words.explain(exc.message or str(exc), _ENV.filters)
    return f"{what} {text[:80]!r} cannot be read: {words}."


@functools.lru_cache(maxsize=512)
def compile_html(text: str) -> Template:
    """Compile an email's HTML body: every value is HTML-escaped (a caller's name cannot add
    markup); raises ``ValueError`` with a readable reason."""
    try:
        return _HTML_ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise ValueError(_syntax_error("the HTML", text, exc)) from None


@functools.lru_cache(maxsize=2048)
def compile_url(text: str) -> Template:
    """Compile a data dip's URL template (values encoded, see the module docstring); raises
    ``ValueError`` with a readable reason."""
    simple = _substitution(text)
    if simple is not None:
        return UrlSubstitution(simple.parts)
    try:
        return _URL_ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise ValueError(_syntax_error("the URL", text, exc)) from None


def parse_url(text: str) -> Any:
    """The Jinja syntax tree of a URL template (for the flow checks in :mod:`ivr.dip_urls`)."""
    return _URL_ENV.parse(text)


@functools.lru_cache(maxsize=2048)
def compile_expression(text: str) -> Expression:
    """Compile a condition or value expression; raises ``ValueError`` with a readable reason."""
    simple = _comparison(text)
    if simple is not None:
        return simple
    try:
        full = _ENV.compile_expression(text, undefined_to_none=True)
    except TemplateSyntaxError as exc:
        raise ValueError(_syntax_error("the condition", text, exc)) from None
    path = _false_first_path(text)
    return full if path is None else FalseFirst(path, full)


class FalseFirst:
    """``A and ...`` whose ``A`` is a dotted name (``history.open_conversation.topic``): when
    ``A`` is false, its value, read without Jinja exactly as Jinja reads it (a missing variable,
    an attribute of ``None`` or a missing key is ``None``); else the whole expression, by Jinja.
    A condition that asks first whether something is known then costs a caller for whom it is
    not a few dictionary look-ups, not Jinja's set-up. What cannot be read so (a method, a
    name starting with ``_``, an object other than a dict or :class:`~ivr.history.History`)
    goes to Jinja too."""

    __slots__ = ("full", "path")

    def __init__(self, path: tuple[str, ...], full: Expression) -> None:
        self.path = path
        self.full = full

    def __call__(self, **variables: Any) -> Any:
        value = _dotted(self.path, variables)
        if value is _UNREADABLE or value:
            return self.full(**variables)
        return value


_UNREADABLE = object()


def _dotted(path: tuple[str, ...], variables: Mapping[str, Any]) -> Any:
    value = variables.get(path[0])
    for name in path[1:]:
        if value is None:
            return None  # Jinja: an attribute of None, or of what is undefined, is undefined
        if type(value) is dict:
            if hasattr(dict, name):
                return _UNREADABLE  # Jinja would give the dict's method
            value = value.get(name)
        elif type(value) is History:
            value = getattr(value, name, _UNREADABLE)
            if value is _UNREADABLE or callable(value):
                return _UNREADABLE
        else:
            return _UNREADABLE
    return value


def _false_first_path(text: str) -> tuple[str, ...] | None:
    """The dotted name ``A`` when ``text`` is ``A and ...`` (by Jinja's own parser)."""
    if "and" not in text:
        return None
    try:
        parser = Parser(_ENV, text, state="variable")
        expression = parser.parse_expression()
        if not parser.stream.eos:
            return None
    except TemplateSyntaxError:
        return None
    if not isinstance(expression, nodes.And):
        return None
    path: list[str] = []
    left = expression.left
    while isinstance(left, nodes.Getattr):
        path.append(left.attr)
        left = left.node
    if not isinstance(left, nodes.Name) or left.ctx != "load":
        return None
    path.append(left.name)
    path.reverse()
    if path[0] in _RESERVED or path[0].lower() in _CONSTANTS:
        return None
    if any(name.startswith("_") for name in path):
        return None
    return tuple(path)


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

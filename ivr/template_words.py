"""Template syntax errors in plain words, with the fix.

Jinja's parser speaks of tokens and blocks ("expected token 'end of print statement', got
'b'"); a flow designer needs to hear what is wrong in their text and what to type instead.
:func:`explain` turns the parser's message into a sentence; a message it does not know is kept,
so nothing is hidden.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"unexpected '\}'"),
        "a '}' stands alone: a value is written {{ name }}, with two braces on each side",
    ),
    (
        re.compile(r"unexpected end of template, expected 'end of print statement'"),
        "a '{{' is never closed: end the value with '}}'",
    ),
    (
        re.compile(r"expected token 'end of print statement', got '([^']*)'"),
        "two things stand side by side inside {{ }} (before <0r>): put one value in each "
        "{{ }}, join texts with ~, or put an operator (and, or, ==) between them",
    ),
    (
        re.compile(r"Encountered unknown tag 'end(\w+)'"),
        "{% end<0> %} closes nothing: there is no {% <0> %} before it",
    ),
    (
        re.compile(r"Encountered unknown tag '(\w+)'"),
        "{% <0> %} is not a template tag<hint>: the tags are {% if %}, {% elif %}, "
        "{% else %}, {% endif %}, {% for %} and {% endfor %}",
    ),
    (
        re.compile(
            r"Unexpected end of template\. Jinja was looking for the following tags: .*"
            r"The innermost block that needs to be closed is '(\w+)'"
        ),
        "{% <0> %} is never closed: add {% end<0> %} where it should end",
    ),
    (
        re.compile(r"No filter named '([^']*)'"),
        "there is no filter <0r><hint> (after a | comes a filter such as upper, join, "
        "default or int)",
    ),
    (
        re.compile(r"unexpected char \"(['\"])\""),
        "a quote <0> is never closed: end the text with the same quote",
    ),
    (
        re.compile(r"Expected an expression, got 'end of print statement'"),
        "{{ }} is empty: put a variable's name between the braces, e.g. {{ name }}",
    ),
    (
        re.compile(r"expected name or number"),
        "a dot is not followed by a name: write the whole path, e.g. {{ booking.flight }}",
    ),
    (
        re.compile(r"Expected an expression, got 'end of statement block'"),
        "a {% ... %} tag is missing its condition or list, e.g. {% if booking.gate %}",
    ),
    (
        re.compile(r"unexpected 'end of template'"),
        "it ends too early: something is missing after the last word or sign (a value after "
        "==, >, and, or)",
    ),
    (
        re.compile(r"chunk after expression"),
        "two things stand side by side in the condition: put an operator (and, or, ==, in) "
        "between them, or quote a text ('delayed')",
    ),
    (
        re.compile(r"unexpected '([)\]])'"),
        "a <0r> closes nothing: the brackets do not pair up",
    ),
]
_TAGS = ["if", "elif", "else", "endif", "for", "endfor"]


def explain(message: str, filters: Iterable[str] = ()) -> str:
    """A designer's sentence for Jinja's syntax-error ``message`` (``filters``: the filters
    there are, for a "did you mean")."""
    for pattern, words in _RULES:
        found = pattern.search(message)
        if found is None:
            continue
        groups = found.groups()
        hint = ""
        if groups and "filter" in pattern.pattern:
            close = difflib.get_close_matches(groups[0], sorted(filters), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        elif groups and "tag" in pattern.pattern:
            close = difflib.get_close_matches(groups[0], _TAGS, n=1)
            hint = f" (did you mean {{% {close[0]} %}}?)" if close else ""
        first = groups[0] if groups else ""
        return words.replace("<0r>", repr(first)).replace("<0>", first).replace("<hint>", hint)
    return message

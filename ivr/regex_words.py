"""Regular-expression mistakes in a designer's words, with the fix.

Python's ``re`` says ``unterminated character set at position 0``; a designer needs to hear that
a ``[`` is never closed, at which character, and what to write instead. YAML adds its own trap:
in double quotes ``\\b`` and ``\\t`` are escapes, so ``"\\bend\\b"`` reaches the pattern as a
backspace, not a word boundary.
"""

from __future__ import annotations

import re

_PLAIN: tuple[tuple[str, str], ...] = (
    ("unterminated character set", "a '[' is never closed with ']'"),
    ("missing ), unterminated subpattern", "a '(' is never closed with ')'"),
    ("unbalanced parenthesis", "a ')' has no '(' before it"),
    (
        "nothing to repeat",
        "a '*', '+', '?' or '{' has nothing before it to repeat; write \\ before it to match "
        "the character itself",
    ),
    ("multiple repeat", "two repeats follow each other (such as '**' or '+*')"),
    ("bad escape (end of pattern)", "the pattern ends with a lone backslash"),
    ("bad escape", "this backslash escape means nothing in a regular expression"),
    ("bad character range", "a range in [...] runs backwards (write a-z, not z-a)"),
    ("unknown extension", "'(?' starts a group kind regular expressions do not have"),
    ("missing group name", "a named group (?P<name>...) has no name"),
)


def explain(pattern: str, exc: re.error) -> str:
    """A sentence saying what is wrong with ``pattern`` (which failed with ``exc``) and where."""
    reason = str(exc.msg)
    plain = next((words for start, words in _PLAIN if reason.startswith(start)), reason)
    if reason.startswith("bad escape \\"):
        plain = f"{reason.removeprefix('bad escape ')} means nothing in a regular expression"
    at = f" (at character {exc.pos + 1})" if exc.pos is not None else ""
    return f"the pattern {pattern!r} is not a valid regular expression: {plain}{at}."


def escaped_control(pattern: str) -> str | None:
    """The sentence for a pattern holding a backspace, which only a YAML ``"\\b"`` puts there.

    Other escapes YAML reads in double quotes (``\\t``, ``\\n``) give the character the
    pattern would have matched anyway; ``\\b`` turns a word boundary into a backspace, which
    no caller's answer holds, so the pattern silently never matches.
    """
    if "\b" not in pattern:
        return None
    return (
        "the pattern holds a backspace character where \\b was written in double quotes: YAML "
        "reads it as an escape before the pattern sees it, so the word boundary is lost and "
        "nothing matches. Use single quotes (pattern: '\\bword\\b'), where a backslash is "
        "just a backslash."
    )

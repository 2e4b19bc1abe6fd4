"""The language and voice of a call, and the built-in prompts a flow rewords per language.

A flow's ``language`` and ``voice`` are templates (``language: "{{ lang }}"``), and a call can
change them as it goes: ``set: {language: es-MX}`` after a language menu makes every later say
and gather Spanish (:func:`speaking`). The engine's own sentences (the welcome-back question,
resume codes, the give-up goodbye, a transfer nobody took...) can be reworded in one
``messages:`` block, flow-wide and per language::

    messages:
      give_up: Sorry, we could not go on. Goodbye.
      es:                       # any Spanish (es-MX, es-ES) without a block of its own
        give_up: Lo sentimos, no pudimos continuar. Adiós.
      es-MX:
        welcome_back: Bienvenido de nuevo. ...

:func:`message` picks the wording: the call's exact language, then its primary language, then
the flow-wide wording, then the built-in sentence. Messages are templates too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ivr import templates

if TYPE_CHECKING:
    from ivr.flow import Flow

MessageName = Literal[
    "welcome_back",
    "resume_code_question",
    "resume_code_retry",
    "resume_code_announcement",
    "cannot_resume",
    "superseded",
    "no_input",
    "no_match",
    "give_up",
    "nobody_available",
    "page_wait",
]
LANGUAGE_TAG = r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$"
_LANGUAGE_TAG = re.compile(LANGUAGE_TAG)
_Text = Field(default=None, min_length=1, max_length=1000)


class Messages(BaseModel):
    """The built-in prompts, each a template; an unset one keeps the built-in wording.

    ``welcome_back`` may use ``{{ where }}`` (the checkpoint's description) and
    ``resume_code_announcement`` ``{{ code }}`` (the code, read out digit by digit).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    welcome_back: str | None = _Text
    resume_code_question: str | None = _Text
    resume_code_retry: str | None = _Text
    resume_code_announcement: str | None = _Text
    cannot_resume: str | None = _Text
    superseded: str | None = _Text
    no_input: str | None = _Text
    no_match: str | None = _Text
    give_up: str | None = _Text
    nobody_available: str | None = _Text
    page_wait: str | None = _Text


def _schema_by_language(schema: dict[str, Any]) -> None:
    """In YAML a language's block sits beside the flow-wide messages, keyed by its tag."""
    schema["properties"].pop("by_language", None)
    schema["patternProperties"] = {LANGUAGE_TAG: Messages.model_json_schema()}
    schema["additionalProperties"] = False


class MessagesSpec(Messages):
    """The ``messages:`` block: flow-wide wording, and a block per language tag (``es-MX``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_schema_by_language)

    by_language: dict[str, Messages] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_languages(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        languages = {k: v for k, v in data.items() if _LANGUAGE_TAG.match(str(k))}
        rest = {k: v for k, v in data.items() if k not in languages}
        return {**rest, "by_language": languages} if languages else rest

    def wording(self, name: MessageName, language: str | None) -> str | None:
        """The flow's wording of ``name`` in ``language`` (exact tag, then primary), if any."""
        if language:
            tags = {tag.lower(): block for tag, block in self.by_language.items()}
            for tag in (language.lower(), language.lower().split("-", 1)[0]):
                block = tags.get(tag)
                if block is not None and (text := getattr(block, name)) is not None:
                    return str(text)
        found = getattr(self, name)
        return str(found) if found is not None else None

    def texts(self) -> list[tuple[tuple[str, ...], str]]:
        """Every wording with its path in the flow file, to compile at load."""
        found: list[tuple[tuple[str, ...], str]] = [
            ((name,), text) for name, text in _set_texts(self)
        ]
        for tag, block in self.by_language.items():
            found += [((tag, name), text) for name, text in _set_texts(block)]
        return found


def _set_texts(block: Messages) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name in Messages.model_fields
        if isinstance(value := getattr(block, name), str)
    ]


def language_problem(value: Any) -> str | None:
    """Why a language written as plain text is not one Twilio can speak, if it is not."""
    if not isinstance(value, str) or not templates.is_static(value):
        return None  # a template: checked when it renders
    if _LANGUAGE_TAG.match(value):
        return None
    hint = value.replace("_", "-")
    suggestion = f" Did you mean {hint!r}?" if _LANGUAGE_TAG.match(hint) else ""
    return f"{value!r} is not a language tag such as en-US or es-MX.{suggestion}"


def _rendered(flow: Flow, text: str, scope: Mapping[str, Any]) -> str:
    if templates.is_static(text):
        return text
    return templates.render(flow.template(text), scope)


def _setting(flow: Flow, chosen: Any, written: str | None, scope: Mapping[str, Any]) -> str | None:
    if isinstance(chosen, str) and chosen.strip():
        return chosen.strip()
    if written is None:
        return None
    return _rendered(flow, written, scope) or None


def speaking(flow: Flow, scope: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The call's voice and language: set during the call, else the flow's (rendered)."""
    voice = _setting(flow, scope.get("voice"), flow.spec.voice, scope)
    language = _setting(flow, scope.get("language"), flow.spec.language, scope)
    return voice, language


def message(
    flow: Flow,
    name: MessageName,
    default: str,
    language: str | None,
    scope: Mapping[str, Any] | None = None,
) -> str:
    """The wording of built-in prompt ``name`` for a call in ``language``, rendered with ``scope``.

    ``default`` (the built-in wording) is rendered too: the welcome-back line names ``{{ where }}``.
    """
    spec = flow.spec.messages
    text = spec.wording(name, language) if spec is not None else None
    return _rendered(flow, default if text is None else text, scope or {})

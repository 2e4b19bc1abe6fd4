"""Language per call: ``language``/``voice`` as templates and ``set`` values, and ``messages:``."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from ivr import engine, resume
from ivr.errors import FlowLoadError
from ivr.flow import Flow, load_flow_text
from ivr.schema import flow_json_schema
from ivr.states import TransferResult
from ivr.turn import Answer, Gather, Say, Transfer, Turn

CALLER = "+14155550123"

BILINGUAL = """\
language: en-US
voice: Polly.Joanna
messages:
  give_up: Sorry, we could not go on. Goodbye.
  es:
    give_up: Lo sentimos, no pudimos continuar. Adiós.
    no_input: No le escuché.
  es-MX:
    nobody_available: Nadie puede atenderle ahora. Adiós.
    welcome_back: Bienvenido de nuevo. La última vez estaba {{ where }}. Pulse 1 para seguir.
start: choose
nodes:
  choose:
    gather:
      prompt: For English, press 1. Para español, oprima 2.
      num_digits: 1
    on: {"1": english, "2": spanish}
  english:
    next: menu
  spanish:
    set: {language: es-MX, voice: Polly.Mia}
    next: menu
  menu:
    checkpoint: true
    description: "{% if language == 'es-MX' %}en el menú{% else %}at the menu{% endif %}"
    say:
      - "{% if language == 'es-MX' %}Bienvenido.{% else %}Welcome.{% endif %}"
      - {say: Thank you., language: en-GB}
    gather:
      prompt: "{% if language == 'es-MX' %}Oprima 1.{% else %}Press 1.{% endif %}"
      num_digits: 1
    no_input: {retries: 0}
    on: {"1": agent}
  agent:
    transfer: {queue: support}
"""


def flow_of(text: str) -> Flow:
    return load_flow_text(textwrap.dedent(text), "languages.yaml", "languages")


def begin(flow: Flow) -> Turn:
    return engine.start(flow, caller=CALLER, call_sid="CA1", at=100.0)


def press(flow: Flow, turn: Turn, digits: str | None) -> Turn:
    return engine.step(flow, turn.session, Answer(digits, None, None, at=200.0))


def spoken(turn: Turn) -> list[tuple[str, str | None, str | None]]:
    """Every sentence of a turn (inside gathers too) with its voice and language."""
    found: list[tuple[str, str | None, str | None]] = []
    for action in turn.actions:
        parts: tuple[Any, ...] = action.prompt if isinstance(action, Gather) else (action,)
        found += [(p.text, p.voice, p.language) for p in parts if isinstance(p, Say)]
    return found


def gather_language(turn: Turn) -> str | None:
    last = turn.actions[-1]
    assert isinstance(last, Gather)
    return last.language


def test_a_call_that_chooses_spanish_hears_every_later_prompt_in_spanish() -> None:
    flow = flow_of(BILINGUAL)
    turn = press(flow, begin(flow), "2")
    assert spoken(turn) == [
        ("Bienvenido.", "Polly.Mia", "es-MX"),
        ("Thank you.", "Polly.Mia", "en-GB"),  # a part's own language still wins
        ("Oprima 1.", "Polly.Mia", "es-MX"),
    ]
    assert gather_language(turn) == "es-MX"


def test_a_call_that_keeps_english_hears_the_flow_language_and_voice() -> None:
    flow = flow_of(BILINGUAL)
    turn = press(flow, begin(flow), "1")
    assert spoken(turn)[0] == ("Welcome.", "Polly.Joanna", "en-US")
    assert gather_language(turn) == "en-US"


def test_built_in_prompts_follow_the_call_language_exact_tag_then_primary_then_flow_wide() -> None:
    flow = flow_of(BILINGUAL)
    spanish = press(flow, begin(flow), "2")
    # es-MX has no give_up of its own: the es block's; no_input also from es.
    gave_up = press(flow, spanish, None)
    assert spoken(gave_up) == [("Lo sentimos, no pudimos continuar. Adiós.", "Polly.Mia", "es-MX")]
    english = press(flow, begin(flow), "1")
    assert spoken(press(flow, english, None)) == [
        ("Sorry, we could not go on. Goodbye.", "Polly.Joanna", "en-US")
    ]


def test_the_default_reprompt_is_worded_per_language() -> None:
    flow = flow_of(BILINGUAL.replace("no_input: {retries: 0}", "no_input: {retries: 1}"))
    again = press(flow, press(flow, begin(flow), "2"), None)
    assert spoken(again)[0] == ("No le escuché.", "Polly.Mia", "es-MX")
    again = press(flow, press(flow, begin(flow), "1"), None)
    assert spoken(again)[0] == ("Sorry, I didn't hear anything.", "Polly.Joanna", "en-US")


def test_a_transfer_nobody_took_says_so_in_the_call_language() -> None:
    flow = flow_of(BILINGUAL)
    queued = press(flow, press(flow, begin(flow), "2"), "1")
    ended = engine.after_transfer(flow, queued.session, TransferResult.FAILED, at=300.0)
    assert spoken(ended) == [("Nadie puede atenderle ahora. Adiós.", "Polly.Mia", "es-MX")]


def test_a_returning_caller_is_welcomed_back_in_the_language_they_chose() -> None:
    flow = flow_of(BILINGUAL)
    at_menu = press(flow, begin(flow), "2")
    offer = resume.offer(flow, at_menu.session)
    assert spoken(offer) == [
        (
            "Bienvenido de nuevo. La última vez estaba en el menú. Pulse 1 para seguir.",
            "Polly.Mia",
            "es-MX",
        )
    ]
    assert gather_language(offer) == "es-MX"
    english = resume.offer(flow, press(flow, begin(flow), "1").session)
    assert spoken(english)[0][0].startswith("Welcome back. Last time you were at the menu.")


def test_the_flow_language_is_a_template_rendered_for_each_call() -> None:
    flow = flow_of(
        """\
        language: "{{ lang }}"
        voice: "{{ 'Polly.Mia' if lang == 'es-MX' else 'Polly.Joanna' }}"
        start: hello
        nodes:
          hello:
            set: {lang: es-MX}
            say: Hola.
            gather: {prompt: Oprima 1., language: "{{ lang }}"}
            next: hello
        """
    )
    turn = begin(flow)
    assert spoken(turn) == [("Hola.", "Polly.Mia", "es-MX"), ("Oprima 1.", "Polly.Mia", "es-MX")]
    assert gather_language(turn) == "es-MX"


def test_a_language_template_that_renders_empty_leaves_the_language_to_twilio() -> None:
    flow = flow_of(
        """\
        language: "{{ lang }}"
        start: hello
        nodes:
          hello:
            say: Hello.
            hangup: true
        """
    )
    assert spoken(begin(flow)) == [("Hello.", None, None)]


def test_resume_code_prompts_can_be_reworded_and_name_the_code() -> None:
    flow = flow_of(
        """\
        language: es-MX
        resume: {codes: true}
        messages:
          es:
            resume_code_question: Si tiene un código, márquelo ahora.
            resume_code_retry: Ese código no coincide.
            resume_code_announcement: "Su código es {{ code }}."
        start: a
        nodes:
          a:
            say: Hola.
            hangup: true
        """
    )
    session = begin(flow).session
    assert spoken(resume.ask_code(flow, session, retry=True)) == [
        ("Ese código no coincide.", None, "es-MX"),
        ("Si tiene un código, márquelo ahora.", None, "es-MX"),
    ]
    said = resume.announce_code(flow, "123456")
    assert (said.text, said.language, said.personal) == (
        "Su código es 1 2 3, 4 5 6.",
        "es-MX",
        True,
    )
    plain = flow_of("start: a\nnodes:\n  a: {hangup: true}\n")
    assert resume.announce_code(plain, "123456").text == (
        "If we get cut off, call back and enter your resume code: 1 2 3, 4 5 6. Again, 1 2 3, 4 5 6."
    )


def problems_of(text: str) -> list[str]:
    with pytest.raises(FlowLoadError) as caught:
        flow_of(text)
    return [str(problem) for problem in caught.value.problems]


TAIL = "start: a\nnodes:\n  a: {hangup: true}\n"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (
            "messages:\n  give_upp: Bye.\n",
            "languages.yaml:2:3: error: Unknown key 'give_upp'. Did you mean 'give_up'?",
        ),
        (
            "messages:\n  es-MX:\n    welcom_back: Hola.\n",
            "languages.yaml:3:5: error: Unknown key 'welcom_back'. Did you mean 'welcome_back'?",
        ),
        (
            'messages:\n  give_up: "Bye {{ name"\n',
            "languages.yaml:2:12: error: The template 'Bye {{ name' cannot be read: a '{{' is never closed",
        ),
        (
            'messages:\n  es:\n    give_up: "{% if %}"\n',
            "languages.yaml:3:14: error: The template",
        ),
        (
            'language: "{{ lang"\n',
            "languages.yaml:1:11: error: The template '{{ lang' cannot be read: a '{{' is never closed",
        ),
    ],
)
def test_bad_messages_and_language_templates_are_refused_with_their_place(
    head: str, expected: str
) -> None:
    found = problems_of(head + TAIL)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_the_json_schema_describes_messages_per_language() -> None:
    import jsonschema

    from ivr.yamlsource import parse

    schema = flow_json_schema()
    spec = schema["$defs"]["MessagesSpec"]
    assert "by_language" not in spec["properties"]
    assert {"welcome_back", "give_up", "nobody_available"} <= set(spec["properties"])
    assert spec["additionalProperties"] is False
    data, _ = parse(textwrap.dedent(BILINGUAL), "languages.yaml")
    jsonschema.validate(data, schema)
    data["messages"]["es-MX"]["give_upp"] = "Adiós."
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_the_agent_is_told_the_language_the_call_chose() -> None:
    flow = flow_of(BILINGUAL)
    queued = press(flow, press(flow, begin(flow), "2"), "1")
    (transfer,) = [a for a in queued.actions if isinstance(a, Transfer)]
    assert transfer.bundle["caller"]["language"] == "es-MX"
    english = press(flow, press(flow, begin(flow), "1"), "1")
    (transfer,) = [a for a in english.actions if isinstance(a, Transfer)]
    assert transfer.bundle["caller"]["language"] is None  # the card knows none


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "language: es_MX\n" + TAIL,
            "languages.yaml:1:11: error: 'es_MX' is not a language tag such as en-US or es-MX. "
            "Did you mean 'es-MX'?",
        ),
        (
            "start: a\nnodes:\n  a:\n    set: {language: Spanish}\n    hangup: true\n",
            "languages.yaml:4:21: error: 'Spanish' is not a language tag such as en-US or es-MX.",
        ),
        (
            "start: a\nnodes:\n  a:\n    say: [{say: Hola., language: es_ES}]\n    hangup: true\n",
            "languages.yaml:4:34: error: 'es_ES' is not a language tag",
        ),
        (
            "start: a\nnodes:\n  a:\n    gather: {prompt: Hi., language: EN}\n    next: a\n",
            "languages.yaml:4:37: error: 'EN' is not a language tag",
        ),
    ],
)
def test_a_language_that_is_not_a_tag_is_refused_where_it_is_written(
    text: str, expected: str
) -> None:
    found = problems_of(text)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found

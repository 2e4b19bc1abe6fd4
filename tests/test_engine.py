"""The flow engine with no server: ``start``/``step`` on flows loaded from YAML text."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from ivr import engine
from ivr.errors import EngineError, UnknownNodeError
from ivr.flow import Flow, load_flow_text
from ivr.session import Session
from ivr.states import Status
from ivr.turn import (
    Action,
    Answer,
    FetchResult,
    Gather,
    Hangup,
    HttpRequest,
    Pause,
    Play,
    Say,
    Transfer,
    Turn,
)

CALLER = "+14155550123"


def flow_of(text: str) -> Flow:
    return load_flow_text(textwrap.dedent(text), "test.yaml", "test")


def begin(flow: Flow, **kwargs: Any) -> Turn:
    return engine.start(flow, caller=CALLER, call_sid="CA1", at=100.0, **kwargs)


def reply(
    flow: Flow,
    turn: Turn,
    digits: str | None = None,
    speech: str | None = None,
    confidence: float | None = None,
) -> Turn:
    return engine.step(flow, turn.session, Answer(digits, speech, confidence, at=200.0))


def fetched(flow: Flow, turn: Turn, **result: Any) -> Turn:
    return engine.step(flow, turn.session, FetchResult(at=200.0, **result))


def kinds(turn: Turn) -> list[type[Action]]:
    return [type(action) for action in turn.actions]


def gather_of(turn: Turn) -> Gather:
    last = turn.actions[-1]
    assert isinstance(last, Gather), turn.actions
    return last


def texts(parts: tuple[Any, ...]) -> list[str]:
    return [part.text for part in parts if isinstance(part, Say)]


def note_names(turn: Turn) -> list[str]:
    return [note.name for note in turn.notes]


MENU = """\
language: en-GB
voice: Polly.Amy
start: menu
nodes:
  menu:
    gather:
      prompt: Press 1 for sales.
      input: [dtmf, speech]
      num_digits: 1
    on:
      "1|sales": sales
    {retry}
  sales:
    say: Sales.
    hangup: true
  agent:
    transfer: {{queue: support}}
"""


def menu(retry: str = "", head: str = "") -> Flow:
    text = MENU.format(retry=textwrap.indent(textwrap.dedent(retry), "    ").strip())
    return flow_of(head + text)


# ---- speaking ------------------------------------------------------------------------------
def test_say_uses_the_flow_voice_and_language() -> None:
    flow = flow_of(
        """\
        language: fr-FR
        voice: Polly.Lea
        start: a
        nodes:
          a:
            say: Bonjour.
            hangup: true
        """
    )
    turn = begin(flow)
    assert turn.actions == (Say("Bonjour.", "Polly.Lea", "fr-FR"), Hangup())


def test_say_parts_override_voice_language_and_loop() -> None:
    flow = flow_of(
        """\
        voice: Polly.Joanna
        start: a
        nodes:
          a:
            say:
              - Hello.
              - {say: Hola., voice: Polly.Lupe, language: es-US, loop: 2}
              - {play: "https://example.com/chime.mp3", loop: 3}
              - {pause: 2s}
            hangup: true
        """
    )
    assert begin(flow).actions == (
        Say("Hello.", "Polly.Joanna", "en-US"),
        Say("Hola.", "Polly.Lupe", "es-US", 2),
        Play("https://example.com/chime.mp3", 3),
        Pause(2),
        Hangup(),
    )


def test_play_and_pause_on_a_node() -> None:
    flow = flow_of(
        """\
        start: a
        nodes:
          a:
            say: Please hold.
            play: "{{ env.MEDIA }}/hold.mp3"
            pause: 3s
            hangup: true
        """
    )
    turn = begin(flow, env={"MEDIA": "https://cdn.example.com"})
    assert kinds(turn) == [Say, Play, Pause, Hangup]
    assert turn.actions[1] == Play(
        "https://cdn.example.com/hold.mp3", personal=True
    )  # rendered from a template
    assert turn.actions[2] == Pause(3)


def test_a_short_pause_lasts_at_least_a_second() -> None:
    flow = flow_of(
        "start: a\nnodes:\n  a:\n    pause: 400ms\n    say: [{pause: 0.2}]\n    hangup: true\n"
    )
    assert [a for a in begin(flow).actions if isinstance(a, Pause)] == [Pause(1), Pause(1)]


def test_prompts_render_variables_and_empty_text_is_not_spoken() -> None:
    flow = flow_of(
        """\
        start: a
        nodes:
          a:
            set: {name: Ada}
            say:
              - Hello {{ name }}, caller {{ caller }}.
              - "{{ nothing }}"
            hangup: true
        """
    )
    turn = begin(flow)
    assert texts(turn.actions) == [f"Hello Ada, caller {CALLER}."]


def test_lead_actions_come_first_and_start_can_begin_anywhere() -> None:
    flow = menu()
    turn = begin(flow, node="sales", lead=(Say("Welcome back."),))
    assert turn.actions[0] == Say("Welcome back.")
    assert texts(turn.actions) == ["Welcome back.", "Sales."]
    assert turn.session.status == Status.COMPLETED


# ---- gathering -----------------------------------------------------------------------------
def test_gather_carries_every_setting() -> None:
    flow = flow_of(
        """\
        language: en-GB
        start: code
        nodes:
          code:
            gather:
              prompt: Key in your code.
              input: dtmf speech
              num_digits: 6
              finish_on_key: "#"
              timeout: 8s
              speech_timeout: 3s
              hints: [alpha, bravo]
              language: en-AU
            next: code
        """
    )
    turn = begin(flow)
    assert turn.waiting_for_input
    gather = gather_of(turn)
    assert gather.input == ("dtmf", "speech")
    assert gather.num_digits == 6
    assert gather.finish_on_key == "#"
    assert gather.timeout == 8
    assert gather.speech_timeout == "3"
    assert gather.hints == ("alpha", "bravo")
    assert gather.language == "en-AU"
    assert texts(gather.prompt) == ["Key in your code."]
    assert turn.session.waiting == "input"
    assert turn.session.node == "code"
    assert turn.session.checkpoint == "code"
    assert turn.session.status == Status.ACTIVE


def test_gather_defaults_to_dtmf_and_the_flow_language() -> None:
    gather = gather_of(begin(menu()))
    assert gather.language == "en-GB"
    assert gather.speech_timeout is None
    plain = flow_of("start: a\nnodes:\n  a:\n    gather: {speech_timeout: auto}\n    next: a\n")
    default = gather_of(begin(plain))
    assert default.input == ("dtmf",)
    assert default.timeout == 5
    assert default.speech_timeout == "auto"
    assert default.language == "en-US"
    assert default.prompt == ()


@pytest.mark.parametrize(
    ("digits", "speech"), [("1", None), (None, "sales please"), (None, "Sales.")]
)
def test_on_routes_digits_and_speech(digits: str | None, speech: str | None) -> None:
    flow = menu()
    turn = reply(flow, begin(flow), digits, speech, 0.9 if speech else None)
    assert texts(turn.actions) == ["Sales."]
    assert turn.session.trail[-2].node == "menu"
    assert turn.session.trail[-2].outcome == "matched"
    assert turn.session.trail[-1].node == "sales"


def test_an_answer_without_a_route_goes_to_next() -> None:
    flow = flow_of(
        """\
        start: ask
        nodes:
          ask:
            gather: {prompt: Anything.}
            on: {"1": one}
            next: other
          one: {say: One., hangup: true}
          other: {say: Other., hangup: true}
        """
    )
    assert texts(reply(flow, begin(flow), "7").actions) == ["Other."]
    assert texts(reply(flow, begin(flow), "1").actions) == ["One."]


# ---- retries -------------------------------------------------------------------------------
def test_no_match_asks_again_with_the_default_reprompt_then_the_prompt() -> None:
    flow = menu()
    turn = reply(flow, begin(flow), "9")
    gather = gather_of(turn)
    assert texts(gather.prompt) == [engine.NO_MATCH_TEXT, "Press 1 for sales."]
    assert turn.session.no_match_count == 1
    assert turn.session.no_input_count == 0
    assert turn.session.waiting == "input"
    assert ("no_match", {"node": "menu", "attempt": 1}) in [(n.name, n.data) for n in turn.notes]


def test_reprompts_escalate_one_per_attempt_then_go_to_then() -> None:
    flow = menu(
        """\
        no_input:
          retries: 3
          reprompts: [First., Second.]
          then: agent
        """
    )
    turn = begin(flow)
    heard = []
    for _ in range(3):
        turn = reply(flow, turn)
        heard.append(texts(gather_of(turn).prompt)[0])
        assert texts(gather_of(turn).prompt)[1] == "Press 1 for sales."
    assert heard == ["First.", "Second.", "Second."]
    assert turn.session.no_input_count == 3
    turn = reply(flow, turn)
    assert kinds(turn) == [Transfer]
    assert turn.session.status == Status.TRANSFERRED
    assert turn.session.node == "agent"


def test_a_single_reprompt_is_used_for_every_attempt() -> None:
    flow = menu("no_match: {retries: 2, reprompt: Try again., then: agent}")
    turn = reply(flow, begin(flow), "5")
    assert texts(gather_of(turn).prompt)[0] == "Try again."
    turn = reply(flow, turn, "5")
    assert texts(gather_of(turn).prompt)[0] == "Try again."
    turn = reply(flow, turn, "5")
    assert turn.session.node == "agent"


def test_zero_retries_goes_to_then_at_once() -> None:
    flow = menu("no_input: {retries: 0, then: agent}")
    turn = reply(flow, begin(flow))
    assert kinds(turn) == [Transfer]


def test_no_input_and_no_match_count_separately() -> None:
    flow = menu(
        """\
        no_input: {retries: 1, then: agent}
        no_match: {retries: 1, then: agent}
        """
    )
    turn = reply(flow, begin(flow))
    turn = reply(flow, turn, "9")
    assert (turn.session.no_input_count, turn.session.no_match_count) == (1, 1)
    assert turn.waiting_for_input


def test_flow_defaults_apply_to_gathers_without_their_own() -> None:
    head = "defaults:\n  no_match: {retries: 1, reprompt: Default reprompt., then: agent}\n"
    flow = menu(head=head)
    turn = reply(flow, begin(flow), "9")
    assert texts(gather_of(turn).prompt)[0] == "Default reprompt."
    turn = reply(flow, turn, "9")
    assert turn.session.node == "agent"


def test_a_node_retry_spec_replaces_the_flow_default() -> None:
    head = "defaults:\n  no_match: {retries: 1, reprompt: Default., then: agent}\n"
    flow = menu("no_match: {retries: 2, reprompt: Node level.}", head=head)
    turn = reply(flow, begin(flow), "9")
    assert texts(gather_of(turn).prompt)[0] == "Node level."
    turn = reply(flow, turn, "9")
    assert turn.waiting_for_input


def test_exhausted_retries_without_then_go_to_the_fallback_node() -> None:
    flow = menu("no_input: {retries: 1}", head="fallback: agent\n")
    turn = reply(flow, reply(flow, begin(flow)))
    assert kinds(turn) == [Transfer]
    assert ("fallback", {"reason": "no_input", "node": "agent"}) in [
        (n.name, n.data) for n in turn.notes
    ]


def test_exhausted_retries_with_nothing_configured_say_goodbye() -> None:
    flow = menu()
    turn = begin(flow)
    for _ in range(engine.DEFAULT_RETRY.retries):
        turn = reply(flow, turn)
        assert turn.waiting_for_input
    turn = reply(flow, turn)
    assert kinds(turn) == [Say, Hangup]
    assert turn.actions[0] == Say(engine.GIVE_UP_TEXT, "Polly.Amy", "en-GB")
    assert turn.session.status == Status.COMPLETED
    assert turn.session.ended_reason == "gave up: no_input"
    assert turn.session.waiting is None


def test_counters_reset_when_the_caller_reaches_another_node() -> None:
    flow = flow_of(
        """\
        start: first
        nodes:
          first:
            gather: {prompt: One.}
            next: second
          second:
            gather: {prompt: Two.}
            next: second
        """
    )
    turn = reply(flow, begin(flow))
    assert turn.session.no_input_count == 1
    turn = reply(flow, turn, "5")
    assert turn.session.node == "second"
    assert turn.session.no_input_count == 0


@pytest.mark.parametrize(
    ("digits", "speech", "confidence", "kind"),
    [
        (None, None, None, "no_input"),
        ("", "", None, "no_input"),
        (None, "  .  ", 0.9, "no_input"),
        ("12ab", None, None, "no_match"),
        ("one", None, None, "no_match"),
        (None, "sales", 0.1, "no_match"),
    ],
)
def test_bad_answers_are_no_input_or_no_match(
    digits: str | None, speech: str | None, confidence: float | None, kind: str
) -> None:
    flow = menu()
    turn = reply(flow, begin(flow), digits, speech, confidence)
    assert turn.waiting_for_input
    assert getattr(turn.session, f"{kind}_count") == 1
    assert kind in note_names(turn)


def test_garbage_digits_and_low_confidence_leave_notes() -> None:
    flow = menu()
    assert "not_keypad_digits" in note_names(reply(flow, begin(flow), "ABC"))
    low = reply(flow, begin(flow), None, "sales", 0.2)
    assert ("low_confidence", {"node": "menu", "confidence": 0.2}) in [
        (n.name, n.data) for n in low.notes
    ]


def test_confidence_at_the_threshold_is_accepted_and_digits_ignore_it() -> None:
    flow = menu()
    assert texts(reply(flow, begin(flow), None, "sales", 0.4).actions) == ["Sales."]
    assert texts(reply(flow, begin(flow), "1", None, 0.0).actions) == ["Sales."]


# ---- validate and save_as ------------------------------------------------------------------
CODE_FLOW = """\
sensitive: [{save_as}]
start: code
nodes:
  code:
    gather: {{prompt: Your code., input: [dtmf, speech]}}
    validate: {validate}
    save_as: {save_as}
    next: done
  done:
    say: Thanks.
    hangup: true
"""


def code_flow(validate: str, save_as: str = "code", secret: bool = False) -> Flow:
    text = CODE_FLOW.format(validate=validate, save_as=save_as)
    if not secret:
        text = text.replace(f"sensitive: [{save_as}]\n", "")
    return flow_of(text)


@pytest.mark.parametrize(
    ("validate", "digits", "speech", "saved"),
    [
        ("{pattern: '^[A-Z0-9]{6}$'}", None, "A B C 1 2 3.", "ABC123"),
        ("{pattern: '^[A-Z0-9]{6}$'}", None, "x y z seven eight nine", "XYZ789"),
        ("{pattern: '^[0-9]{4}$'}", "1234", None, "1234"),
        ("{min_length: 4}", "1234", None, "1234"),
        ("{max_length: 4}", "12", None, "12"),
        ("{choices: [yes, no]}", None, "Yes.", "Yes"),
        ("{choices: ['1', '2']}", None, "two", "2"),
    ],
)
def test_valid_answers_are_saved(
    validate: str, digits: str | None, speech: str | None, saved: str
) -> None:
    flow = code_flow(validate)
    turn = reply(flow, begin(flow), digits, speech, 0.9 if speech else None)
    assert turn.session.variables["code"] == saved
    assert texts(turn.actions) == ["Thanks."]


@pytest.mark.parametrize(
    ("validate", "digits", "speech"),
    [
        ("{pattern: '^[A-Z0-9]{6}$'}", None, "A B C"),
        ("{pattern: '^[0-9]{4}$'}", "12345", None),
        ("{min_length: 4}", "123", None),
        ("{max_length: 4}", "12345", None),
        ("{choices: [yes, no]}", None, "maybe"),
    ],
)
def test_invalid_answers_are_no_match(
    validate: str, digits: str | None, speech: str | None
) -> None:
    flow = code_flow(validate)
    turn = reply(flow, begin(flow), digits, speech, 0.9 if speech else None)
    assert "code" not in turn.session.variables
    assert turn.session.no_match_count == 1
    assert turn.waiting_for_input


def test_speech_is_saved_without_the_recogniser_full_stop() -> None:
    flow = code_flow("{}", save_as="said")
    turn = reply(flow, begin(flow), None, "Hello there.", 0.9)
    assert turn.session.variables["said"] == "Hello there"
    assert turn.session.trail[-2].answer == "Hello there"


def test_sensitive_answers_are_masked_in_the_trail_but_kept_as_variables() -> None:
    flow = code_flow("{pattern: '^[0-9]{4}$'}", save_as="pin", secret=True)
    turn = reply(flow, begin(flow), "4321")
    assert turn.session.variables["pin"] == "4321"
    visit = turn.session.trail[-2]
    assert (visit.node, visit.answer, visit.outcome) == ("code", "***", "matched")
    assert all("4321" not in (v.answer or "") for v in turn.session.trail)
    assert "4321" not in str(turn.notes)


# ---- branch and set ------------------------------------------------------------------------
BRANCHY = """\
start: decide
nodes:
  decide:
    set: SET
    branch:
      - if: tier == 'gold'
        then: gold
      - if: tries > 2 or tier == 'gold'
        then: tired
    next: normal
  gold: {say: Gold., hangup: true}
  tired: {say: Tired., hangup: true}
  normal: {say: Normal., hangup: true}
"""


@pytest.mark.parametrize(
    ("assignments", "heard"),
    [
        ("{tier: gold}", "Gold."),
        ("{tier: silver, tries: 3}", "Tired."),
        ("{tier: silver, tries: 1}", "Normal."),
        ("{other: 1}", "Normal."),
    ],
)
def test_branch_takes_the_first_true_case_else_next(assignments: str, heard: str) -> None:
    flow = flow_of(BRANCHY.replace("SET", assignments))
    assert texts(begin(flow).actions) == [heard]


def test_set_evaluates_single_expressions_typed_and_renders_templates() -> None:
    flow = flow_of(
        """\
        start: a
        nodes:
          a:
            set:
              tries: "{{ 1 + 2 }}"
              vip: "{{ tries > 2 }}"
              tags: "{{ ['a', 'b'] }}"
              greeting: "Hello {{ name }} #{{ tries }}"
              number: 7
              static: plain text
              unknown: "{{ missing }}"
              flight: "{{ booking.flight }}"
            hangup: true
        """
    )
    variables = begin(flow).session.variables
    assert variables["tries"] == 3
    assert variables["vip"] is True
    assert variables["tags"] == ["a", "b"]
    assert variables["greeting"] == "Hello  #3"
    assert variables["number"] == 7
    assert variables["static"] == "plain text"
    assert variables["unknown"] is None
    assert variables["flight"] is None


def test_set_sees_the_caller_and_earlier_variables() -> None:
    flow = flow_of(
        """\
        start: a
        nodes:
          a:
            set: {count: 1}
            next: b
          b:
            set: {count: "{{ count + 1 }}", who: "{{ caller }}"}
            hangup: true
        """
    )
    variables = begin(flow).session.variables
    assert variables == {"count": 2, "who": CALLER}


# ---- http ----------------------------------------------------------------------------------
HTTP_FLOW = """\
{head}start: lookup
nodes:
  lookup:
    set: {{code: ABC123}}
    http:
      url: "{{{{ env.API | raw_url }}}}/bookings/{{{{ code }}}}"
      method: POST
      json: {{code: "{{{{ code }}}}", count: "{{{{ 2 * 3 }}}}", nested: ["{{{{ code | lower }}}}", 5]}}
      headers: {{X-Code: "{{{{ code }}}}"}}
      timeout: 2s
      save_as: booking
    {on_error}
    say: Flight {{{{ booking.flight }}}}.
    next: done
  done:
    hangup: true
  failed:
    say: "Error {{{{ http_error.status }}}}."
    hangup: true
  agent:
    transfer: {{queue: support}}
"""


def http_flow(on_error: str = "on_error: failed", head: str = "") -> Flow:
    return flow_of(HTTP_FLOW.format(on_error=on_error, head=head))


def test_http_returns_a_fetch_and_waits_for_it() -> None:
    flow = http_flow()
    turn = begin(flow, env={"API": "https://api.example.com"})
    assert turn.actions == ()
    assert turn.fetch == HttpRequest(
        url="https://api.example.com/bookings/ABC123",
        method="POST",
        json={"code": "ABC123", "count": 6, "nested": ["abc123", 5]},
        headers={"X-Code": "ABC123"},
        timeout=2.0,
    )
    assert turn.session.waiting == "fetch"
    assert turn.session.node == "lookup"


def test_a_good_fetch_is_saved_then_the_node_finishes() -> None:
    flow = http_flow()
    turn = fetched(flow, begin(flow), ok=True, status=200, data={"flight": "OV 220"})
    assert turn.session.variables["booking"] == {"flight": "OV 220"}
    assert turn.actions[0] == Say("Flight OV 220.", None, "en-US", personal=True)
    assert kinds(turn) == [Say, Hangup]
    assert turn.fetch is None


def test_a_failed_fetch_goes_to_on_error_with_http_error() -> None:
    flow = http_flow()
    turn = fetched(flow, begin(flow), ok=False, status=404, error="not found")
    assert turn.session.variables["http_error"] == {"status": 404, "error": "not found"}
    assert "booking" not in turn.session.variables
    assert texts(turn.actions) == ["Error 404."]
    assert ("http_error", {"node": "lookup", "error": "not found"}) in [
        (n.name, n.data) for n in turn.notes
    ]


def test_a_failed_fetch_without_on_error_goes_to_the_fallback() -> None:
    flow = http_flow(on_error="", head="fallback: agent\n")
    turn = fetched(flow, begin(flow), ok=False, error="timeout")
    assert kinds(turn) == [Transfer]
    assert "fallback" in note_names(turn)


def test_a_failed_fetch_with_nowhere_to_go_says_goodbye() -> None:
    flow = http_flow(on_error="")
    turn = fetched(flow, begin(flow), ok=False, error="timeout")
    assert turn.actions == (Say(engine.GIVE_UP_TEXT, None, "en-US"), Hangup())
    assert turn.session.ended_reason == "gave up: http_error"


def test_an_answer_is_refused_while_a_fetch_is_pending() -> None:
    flow = http_flow()
    with pytest.raises(EngineError):
        reply(flow, begin(flow), "1")


# ---- moving on and ending ------------------------------------------------------------------
def test_goto_and_next_chain_nodes_in_one_turn() -> None:
    flow = flow_of(
        """\
        start: a
        nodes:
          a: {say: A., goto: b}
          b: {say: B., next: c}
          c: {say: C., hangup: true}
        """
    )
    turn = begin(flow)
    assert texts(turn.actions) == ["A.", "B.", "C."]
    assert [v.node for v in turn.session.trail] == ["a", "b", "c"]
    assert turn.session.status == Status.COMPLETED
    assert turn.session.ended_reason == "ended at c"


def test_a_dead_end_hangs_up() -> None:
    flow = flow_of("start: a\nnodes:\n  a: {say: Bye.}\n")
    turn = begin(flow)
    assert kinds(turn) == [Say, Hangup]
    assert turn.session.status == Status.COMPLETED
    assert "session_ended" in note_names(turn)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("queue: support", ("queue", "support")),
        ("number: '+14155550100'", ("number", "+14155550100")),
        ("client: agent_42", ("client", "agent_42")),
        ("sip: 'sip:agent@pbx.example.com'", ("sip", "sip:agent@pbx.example.com")),
    ],
)
def test_transfer_targets(target: str, expected: tuple[str, str]) -> None:
    flow = flow_of(f"start: a\nnodes:\n  a:\n    transfer: {{{target}, timeout: 20s}}\n")
    [transfer] = begin(flow).actions
    assert isinstance(transfer, Transfer)
    assert (transfer.route, transfer.target) == expected
    assert transfer.timeout == 20
    assert transfer.handoff_id.startswith("HO") and transfer.bundle["id"] == transfer.handoff_id


def test_transfer_carries_dotted_context() -> None:
    flow = flow_of(
        """\
        start: a
        nodes:
          a:
            set:
              intent: change
              booking: {flight: OV 220, status: delayed}
            say: Connecting you.
            transfer:
              queue: support
              context: [intent, booking.flight, booking.gate, missing.deep]
        """
    )
    turn = begin(flow)
    assert kinds(turn) == [Say, Transfer]
    transfer = turn.actions[1]
    assert isinstance(transfer, Transfer)
    assert transfer.bundle["context"] == {
        "intent": "change",
        "booking.flight": "OV 220",
        "booking.gate": None,
        "missing.deep": None,
    }
    assert turn.session.status == Status.TRANSFERRED
    assert turn.session.ended_reason == "transfer at a"
    assert turn.session.waiting is None


def test_a_goto_cycle_without_input_ends_politely() -> None:
    flow = flow_of(
        """\
        fallback: agent
        start: a
        nodes:
          a: {say: Round., goto: b}
          b: {branch: [{if: "false", then: agent}], goto: a}
          agent: {transfer: {queue: support}}
        """
    )  # a loop with no way out at all is refused at load (tests/test_flow_checks.py)
    turn = begin(flow)
    assert turn.actions[-2:] == (Say(engine.GIVE_UP_TEXT, None, "en-US"), Hangup())
    assert Transfer not in kinds(turn)
    assert turn.session.status == Status.COMPLETED
    assert turn.session.ended_reason == "gave up: loop"
    assert "loop_guard" in note_names(turn)
    assert len(texts(turn.actions)) <= engine.MAX_HOPS


# ---- misuse --------------------------------------------------------------------------------
def test_an_ended_session_cannot_be_stepped() -> None:
    flow = menu()
    ended = reply(flow, begin(flow), "1")
    with pytest.raises(EngineError):
        reply(flow, ended, "1")


def test_a_fetch_result_is_refused_while_waiting_for_input() -> None:
    flow = menu()
    with pytest.raises(EngineError):
        fetched(flow, begin(flow), ok=True)


def test_a_session_at_a_node_the_version_lacks_is_refused() -> None:
    flow = menu()
    turn = begin(flow)
    other = flow_of("start: elsewhere\nnodes:\n  elsewhere: {gather: {}, next: elsewhere}\n")
    with pytest.raises(UnknownNodeError) as caught:
        reply(other, turn, "1")
    assert caught.value.node == "menu"


def test_each_step_counts_and_stamps_the_session() -> None:
    flow = menu()
    first = begin(flow)
    assert (first.session.step, first.session.started_at) == (0, 100.0)
    second = reply(flow, first, "9")
    assert (second.session.step, second.session.updated_at) == (1, 200.0)
    assert first.session.no_match_count == 0


SELF_LOOP = """
start: pin
nodes:
  pin:
    gather: {prompt: "Enter a digit."}
    validate: {pattern: "^[0-9]$"}
    save_as: digit
    next: pin
    no_match: {retries: 1, reprompt: "Try again.", then: pin}
"""


def test_a_gather_that_leads_back_to_itself_starts_its_retries_afresh() -> None:
    flow = flow_of(SELF_LOOP)
    turn = reply(flow, begin(flow), digits="99")  # miss 1: reprompt
    assert gather_of(turn).prompt[0] == Say("Try again.", None, "en-US")
    turn = reply(flow, turn, digits="5")  # a good answer leads back to the same node
    assert turn.session.no_match_count == 0
    turn = reply(flow, turn, digits="99")  # a first miss again: a reprompt, not `then`
    assert gather_of(turn).prompt[0] == Say("Try again.", None, "en-US")
    assert turn.session.no_match_count == 1


def test_then_pointing_at_the_same_node_reprompts_again() -> None:
    flow = flow_of(SELF_LOOP)
    turn = reply(flow, begin(flow), digits="99")
    turn = reply(flow, turn, digits="99")  # retries used up: `then` re-enters the node
    assert turn.session.no_match_count == 0
    assert gather_of(turn).prompt == (Say("Enter a digit.", None, "en-US"),)
    turn = reply(flow, turn, digits="99")
    assert gather_of(turn).prompt[0] == Say("Try again.", None, "en-US")


def test_a_prompt_that_fails_at_runtime_is_dropped_and_reported() -> None:
    flow = flow_of(
        """
        start: ask
        nodes:
          ask:
            gather:
              prompt:
                - "Hello {{ 1 / 0 }}."
                - Press 1.
            on: {"1": ask}
        """
    )
    turn = begin(flow)
    assert gather_of(turn).prompt == (Say("Press 1.", None, "en-US"),)
    failures = [note for note in turn.notes if note.name == "template_failed"]
    assert len(failures) == 1
    assert failures[0].data["node"] == "ask"
    assert "ZeroDivisionError" in failures[0].data["error"]


def test_a_new_session_is_the_one_the_dataclass_makes() -> None:
    values = {
        "caller": "+14155550123",
        "flow_id": "airline",
        "flow_version": "v1",
        "call_sid": "CA1",
    }
    made = Session.new(**values, step=2, identified=("caller_id",))
    assert made == Session(**values, step=2, identified=("caller_id",))
    assert made.__dict__ == Session(**values, step=2, identified=("caller_id",)).__dict__
    other = Session.new(**values)
    assert made.variables is not other.variables and made.card is not other.card  # never shared
    with pytest.raises(TypeError, match="caller"):
        Session.new(flow_id="airline", flow_version="v1", call_sid="CA1")
    with pytest.raises(TypeError, match="colour"):
        Session.new(**values, colour="blue")

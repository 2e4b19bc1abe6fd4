"""Sending texts and emails from a node, and waiting on the line for a page, in the engine:
``send_sms`` / ``send_email`` (bodies, ``link()``, addresses), the ``sms`` and ``email``
variables, and the ``wait_for`` hold loop (submitted, key pressed, timed out, link never
delivered), plus the load-time checks of pages and links."""

from __future__ import annotations

import textwrap

import pytest

from ivr import engine, links, messages
from ivr.errors import FlowLoadError
from ivr.flow import Flow, load_flow_text
from ivr.session import Session
from ivr.states import EventName, Waiting
from ivr.turn import Answer, Gather, Hangup, Pause, Say, SendMessage, Turn

CALLER = "+14155550123"
FLOW = """\
start: offer
pages:
  flights:
    title: Pick a new flight
    choices: {field: flight, items: offer.options, value: "{{ item.flight }}", label: "{{ item.flight }}"}
    expires: 15m
nodes:
  offer:
    set: {offer: {options: [{flight: OV 105}, {flight: OV 109}]}}
    send_sms: {body: "Hi {{ name }}, pick a flight: {{ link('flights') }}"}
    say: I've sent you a text.
    next: wait
  wait:
    wait_for: {page: flights, timeout: 2m, on_submit: picked, on_timeout: by_phone, every: 8s}
  picked:
    say: "You picked flight {{ flights.flight }}. Text status {{ sms.status }}."
    hangup: true
  by_phone:
    say: "Let's do it by phone. Text status {{ sms.status }}."
    hangup: true
  mail:
    send_email:
      to: "{{ address }}"
      subject: "Your  new   flight"
      text: "Pick here: {{ link('flights') }}"
      html: "<p>Hi {{ name }}, <a href=\\"{{ link('flights') }}\\">pick here</a></p>"
    next: wait
  text_elsewhere:
    send_sms: {to: "{{ number }}", body: Hello.}
    next: by_phone
"""


def flow_of(text: str = FLOW) -> Flow:
    return load_flow_text(textwrap.dedent(text), "test.yaml", "test")


def begin(flow: Flow, node: str = "offer", **variables: object) -> Turn:
    return engine.start(
        flow, caller=CALLER, call_sid="CA1", at=100.0, node=node, variables=variables
    )


def submitted(session: Session, flight: str) -> Session:
    """The session as a page submission leaves it (ivr.pages does this for real)."""
    pages = {**session.pages, "flights": {**session.pages["flights"], "status": "submitted"}}
    return session.evolve(
        pages=pages, variables={**session.variables, "flights": {"flight": flight}}
    )


def said(turn: Turn) -> list[str]:
    return [a.text for a in turn.actions if isinstance(a, Say)]


def sent(turn: Turn) -> SendMessage:
    [message] = [e for e in turn.effects if isinstance(e, SendMessage)]
    return message


def test_a_node_texts_the_caller_with_a_link_and_the_message_is_queued() -> None:
    turn = begin(flow_of(), name="Ada")
    message = sent(turn)
    [link] = message.links
    assert message.channel == "sms" and message.to == CALLER and message.node == "offer"
    assert message.body == f"Hi Ada, pick a flight: {links.mark(link.id)}"
    assert link.page == "flights" and link.expires == 900
    assert link.id == links.link_id("CA1", 0, "offer", "flights")
    assert message.key == messages.message_key("CA1", 0, "offer", "sms")
    entry = turn.session.messages[message.key]
    assert entry["status"] == "queued" and entry["pages"] == ["flights"]
    assert said(turn) == ["I've sent you a text."]
    assert Session.from_dict(turn.session.to_dict()).messages == turn.session.messages


def test_the_same_node_at_the_same_step_makes_the_same_message_and_link() -> None:
    assert sent(begin(flow_of(), name="Ada")) == sent(begin(flow_of(), name="Ada"))


def test_the_wait_holds_the_caller_with_silence_first_then_the_hold_prompt() -> None:
    flow = flow_of()
    turn = begin(flow)
    assert turn.session.waiting == Waiting.PAGE and turn.session.node == "wait"
    assert turn.session.checkpoint == "wait"  # a dropped call comes back to the wait
    gather = turn.actions[-1]
    assert isinstance(gather, Gather) and gather.prompt == (Pause(8),)
    assert gather.num_digits == 1 and gather.timeout == 1
    again = engine.step(flow, turn.session, Answer(at=110.0))
    [hold] = again.actions
    assert isinstance(hold, Gather)
    assert isinstance(hold.prompt[0], Say) and "Take your time" in hold.prompt[0].text
    assert hold.prompt[-1] == Pause(8)
    assert again.session.waiting == Waiting.PAGE


def test_a_submission_moves_the_call_on_and_is_used_once() -> None:
    flow = flow_of()
    waiting = begin(flow).session
    turn = engine.step(flow, submitted(waiting, "OV 109"), Answer(at=112.0))
    assert said(turn) == ["You picked flight OV 109. Text status queued."]
    assert isinstance(turn.actions[-1], Hangup)
    assert turn.session.pages["flights"]["used"] is True
    assert "waiting" not in turn.session.pages["flights"]


def test_a_submission_made_before_the_wait_goes_straight_on() -> None:
    flow = flow_of()
    session = begin(flow).session
    early = submitted(session, "OV 105").evolve(waiting=None, node=None)
    turn = engine.start(flow, caller=CALLER, call_sid="CA2", at=300.0, node="wait", session=early)
    assert said(turn)[0] == "You picked flight OV 105. Text status queued."


def test_a_used_submission_does_not_end_a_later_wait() -> None:
    flow = flow_of()
    used = engine.step(flow, submitted(begin(flow).session, "OV 105"), Answer(at=112.0)).session
    again = engine.start(flow, caller=CALLER, call_sid="CA2", at=300.0, node="wait", session=used)
    assert again.session.waiting == Waiting.PAGE


@pytest.mark.parametrize(
    ("answer", "by"),
    [(Answer(digits="5", at=110.0), "keypad"), (Answer(at=100.0 + 120), "timeout")],
)
def test_a_key_or_the_timeout_ends_the_wait(answer: Answer, by: str) -> None:
    flow = flow_of()
    turn = engine.step(flow, begin(flow).session, answer)
    assert said(turn) == ["Let's do it by phone. Text status queued."]
    [note] = [n for n in turn.notes if n.name == EventName.PAGE_NOT_SUBMITTED]
    assert note.data["by"] == by and note.data["page"] == "flights"
    assert "waiting" not in turn.session.pages["flights"]


def test_a_wait_for_a_link_that_never_arrived_stops_at_the_next_round() -> None:
    flow = flow_of()
    session = begin(flow).session
    [key] = session.messages
    failed = {**session.messages[key], "status": "failed", "error": "invalid number"}
    turn = engine.step(flow, session.evolve(messages={key: failed}), Answer(at=111.0))
    assert said(turn) == ["Let's do it by phone. Text status failed."]
    [note] = [n for n in turn.notes if n.name == EventName.PAGE_NOT_SUBMITTED]
    assert note.data["by"] == "message_failed"


def test_an_email_has_a_subject_text_and_escaped_html_with_the_same_link() -> None:
    turn = begin(flow_of(), "mail", name="<b>Ada</b>", address="ada@example.com")
    message = sent(turn)
    [link] = message.links
    assert message.channel == "email" and message.to == "ada@example.com"
    assert message.subject == "Your new flight"
    assert message.body == f"Pick here: {links.mark(link.id)}"
    assert message.html == (
        f'<p>Hi &lt;b&gt;Ada&lt;/b&gt;, <a href="{links.mark(link.id)}">pick here</a></p>'
    )
    filled = links.fill(message.html or "", {link.id: "https://x.test/p/abc"})
    assert 'href="https://x.test/p/abc"' in filled


@pytest.mark.parametrize("address", ["", "ada", "ada@", "a b@example.com", "ada@example"])
def test_an_email_without_a_usable_address_fails_at_once(address: str) -> None:
    turn = begin(flow_of(), "mail", address=address)
    assert not [e for e in turn.effects if isinstance(e, SendMessage)]
    [note] = [n for n in turn.notes if n.name == EventName.MESSAGE_FAILED]
    assert note.data["channel"] == "email" and "email address" in note.data["error"]
    assert messages.latest(turn.session, "email") is not None
    assert turn.session.messages[note.data["key"]]["status"] == "failed"


@pytest.mark.parametrize("number", ["", "12", "not a number", "4155550123", "+1415"])
def test_a_text_to_an_unusable_number_fails_at_once_and_the_flow_reads_it(number: str) -> None:
    turn = begin(flow_of(), "text_elsewhere", number=number)
    assert not [e for e in turn.effects if isinstance(e, SendMessage)]
    assert said(turn) == ["Let's do it by phone. Text status failed."]


def test_a_text_to_a_withheld_number_is_not_sent() -> None:
    flow = flow_of()
    turn = engine.start(flow, caller="anonymous:CA9", call_sid="CA9", at=1.0)
    [note] = [n for n in turn.notes if n.name == EventName.MESSAGE_FAILED]
    assert note.data["error"] == "the caller's number is withheld"


def test_a_number_to_text_is_normalised() -> None:
    message = sent(begin(flow_of(), "text_elsewhere", number="+1 (415) 555-0199"))
    assert message.to == "+14155550199"


def test_a_flow_s_own_sms_or_email_variable_wins_over_the_message_status() -> None:
    text = FLOW.replace(
        'say: "Let\'s do it by phone. Text status {{ sms.status }}."',
        'say: "Mail {{ email }}."',
    )
    turn = begin(flow_of(text), "text_elsewhere", number="", email="ada@example.com")
    assert said(turn) == ["Mail ada@example.com."]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("page: flights, timeout", "page: flight, timeout"),
            "There is no page named 'flight' under pages: (the flow's pages: flights). "
            "Did you mean 'flights'?",
        ),
        (
            ("{{ link('flights') }}\"}", "{{ link('flihgts') }}\"}"),
            "There is no page named 'flihgts'",
        ),
        (
            ("say: I've sent you a text.", "say: \"Go to {{ link('flights') }}\""),
            "link('...') makes a link for a text or an email",
        ),
        (("on_timeout: by_phone", "on_timeout: by_fone"), "There is no node named 'by_fone'"),
    ],
)
def test_pages_and_links_are_checked_when_the_flow_loads(
    change: tuple[str, str], expected: str
) -> None:
    with pytest.raises(FlowLoadError) as failed:
        flow_of(FLOW.replace(*change))
    assert expected in str(failed.value)
    assert "test.yaml:" in str(failed.value)


def test_a_wait_for_node_cannot_also_go_on_with_next() -> None:
    text = FLOW.replace("every: 8s}", "every: 8s}\n    next: picked")
    with pytest.raises(FlowLoadError) as failed:
        flow_of(text)
    assert "a wait_for node goes on with its on_submit and on_timeout" in str(failed.value)


def test_a_page_template_with_a_syntax_error_is_refused_with_its_line() -> None:
    text = FLOW.replace("title: Pick a new flight", 'title: "Pick {{ a flight"')
    with pytest.raises(FlowLoadError) as failed:
        flow_of(text)
    assert "test.yaml:4:" in str(failed.value)

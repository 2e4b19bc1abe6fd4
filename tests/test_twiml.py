"""The TwiML renderer (``webhooks/twiml.py``), checked on parsed XML: elements and attributes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.turn import Action, Gather, Hangup, Pause, Play, Say, Transfer
from webhooks import twiml
from webhooks.front import EMPTY_MESSAGING

ACTION = "/voice/answer?step=3"


def render(*actions: Action, url: str = ACTION) -> ET.Element:
    root = ET.fromstring(twiml.render(actions, url))
    assert root.tag == "Response"
    return root


def only(root: ET.Element, tag: str) -> ET.Element:
    found = root.findall(tag)
    assert len(found) == 1, f"expected one <{tag}>, found {len(found)}"
    return found[0]


def test_speech_gather_has_every_attribute() -> None:
    root = render(
        Gather(
            prompt=(Say("Say or key your code."),),
            input=("dtmf", "speech"),
            num_digits=6,
            finish_on_key="#",
            timeout=8,
            speech_timeout="auto",
            hints=("status", "change", "agent"),
            language="en-GB",
        )
    )
    gather = only(root, "Gather")
    assert gather.attrib == {
        "input": "dtmf speech",
        "action": ACTION,
        "method": "POST",
        "numDigits": "6",
        "finishOnKey": "#",
        "timeout": "8",
        "speechTimeout": "auto",
        "hints": "status,change,agent",
        "language": "en-GB",
    }
    assert [child.tag for child in gather] == ["Say"]
    assert gather[0].text == "Say or key your code."


def test_speech_only_gather() -> None:
    gather = only(render(Gather(prompt=(), input=("speech",), speech_timeout="3")), "Gather")
    assert gather.get("input") == "speech"
    assert gather.get("speechTimeout") == "3"
    assert gather.get("numDigits") is None
    assert gather.get("finishOnKey") is None


def test_dtmf_gather_leaves_out_speech_settings() -> None:
    gather = only(
        render(
            Gather(
                prompt=(Say("Press 1."),),
                input=("dtmf",),
                num_digits=1,
                speech_timeout="auto",
                hints=("status",),
                language="en-US",
            )
        ),
        "Gather",
    )
    assert gather.get("input") == "dtmf"
    assert gather.get("numDigits") == "1"
    assert gather.get("timeout") == "5"
    for speech_only in ("speechTimeout", "hints", "language"):
        assert gather.get(speech_only) is None, speech_only


def test_gather_without_hints_has_no_hints_attribute() -> None:
    gather = only(render(Gather(prompt=(), input=("speech",))), "Gather")
    assert gather.get("hints") is None


def test_redirect_after_gather_posts_to_the_same_action() -> None:
    root = render(Say("Welcome."), Gather(prompt=(Say("Press 1."),)))
    assert [child.tag for child in root] == ["Say", "Gather", "Redirect"]
    gather, redirect = root[1], root[2]
    assert redirect.text == gather.get("action") == ACTION
    assert redirect.get("method") == "POST"


def test_answer_url_query_survives_escaping() -> None:
    url = "/voice/answer?step=3&flow=a"
    root = render(Gather(prompt=()), url=url)
    assert only(root, "Gather").get("action") == url
    assert only(root, "Redirect").text == url


def test_prompt_parts_inside_a_gather() -> None:
    gather = only(
        render(
            Gather(
                prompt=(
                    Say("Hello", voice="Polly.Amy", language="en-GB", loop=2),
                    Pause(2),
                    Play("https://example.com/hold.mp3", loop=3),
                )
            )
        ),
        "Gather",
    )
    say, pause, play = list(gather)
    assert (say.tag, say.text, say.get("voice"), say.get("language"), say.get("loop")) == (
        "Say",
        "Hello",
        "Polly.Amy",
        "en-GB",
        "2",
    )
    assert (pause.tag, pause.get("length")) == ("Pause", "2")
    assert (play.tag, play.text, play.get("loop")) == ("Play", "https://example.com/hold.mp3", "3")


def test_single_loop_and_unset_voice_are_left_out() -> None:
    say = only(render(Say("Hi")), "Say")
    assert say.attrib == {}


def test_text_is_escaped_not_interpreted() -> None:
    text = 'Fish & chips <b>"now"</b>'
    assert only(render(Say(text)), "Say").text == text


def test_hangup() -> None:
    root = render(Say("Goodbye."), Hangup())
    assert [child.tag for child in root] == ["Say", "Hangup"]


def test_the_same_actions_render_the_same_document() -> None:
    actions = (Say("Hello"), Gather(prompt=(Say("Press 1."),), num_digits=1))
    assert twiml.render(actions, ACTION) == twiml.render(list(actions), ACTION)
    other = ET.fromstring(twiml.render(actions, "/voice/answer?step=4"))
    assert only(other, "Gather").get("action") == "/voice/answer?step=4"


def _parse(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    return root


def test_fallback_dials_a_number() -> None:
    root = _parse(twiml.fallback("+14155550999", "support", "Sorry about that."))
    assert [child.tag for child in root] == ["Say", "Say", "Dial"]
    assert root[0].text == "Sorry about that."
    assert root[1].text == twiml.CONNECTING
    assert root[2].text == "+14155550999"  # the number wins over the queue


def test_fallback_enqueues_without_a_number() -> None:
    root = _parse(twiml.fallback(None, "support"))
    assert [child.tag for child in root] == ["Say", "Say", "Enqueue"]
    assert root[0].text == twiml.APOLOGY
    assert root[2].text == "support"


@pytest.mark.parametrize(("number", "queue"), [(None, None), ("", "")])
def test_fallback_without_a_person_says_goodbye(number: str | None, queue: str | None) -> None:
    root = _parse(twiml.fallback(number, queue))
    assert [child.tag for child in root] == ["Say", "Say", "Hangup"]
    assert [root[0].text, root[1].text] == [twiml.APOLOGY, twiml.GOODBYE]


def test_hangup_with_and_without_words() -> None:
    assert [c.tag for c in _parse(twiml.hangup("Bye."))] == ["Say", "Hangup"]
    assert [c.tag for c in _parse(twiml.hangup())] == ["Hangup"]


def test_only_caller_independent_turns_are_cached() -> None:
    from webhooks import twiml as module

    module._render_cached.cache_clear()
    static = (Gather(prompt=(Say("Press 1."),)),)
    personal = (Gather(prompt=(Say("Hello Ada. Press 1.", personal=True),)),)
    module.render(static, "/voice/answer?step=1")
    module.render(static, "/voice/answer?step=1")
    module.render(personal, "/voice/answer?step=1")
    info = module._render_cached.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)


# ---- characters XML cannot carry -----------------------------------------------------------
# Every code point, lone surrogates included (hypothesis leaves those out by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def heard(text: str) -> str:
    """What a parser reads back from ``text`` in element content: no forbidden characters, and
    line ends normalised as XML does."""
    return NOT_XML.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def every_action(text: str, personal: bool) -> tuple[Action, ...]:
    """``text`` in every place of every action kind where a flow, a caller or a data dip can put
    text."""
    say = Say(text, voice=text, language=text, loop=2, personal=personal)
    play = Play(text, personal=personal)
    return (
        say,
        play,
        Pause(1),
        Gather(
            prompt=(say, play, Pause(2)),
            input=("dtmf", "speech"),
            finish_on_key=text,
            speech_timeout=text,
            hints=(text, text),
            language=text,
        ),
        Transfer("queue", text, "HO1", {"reason": text}),
        Transfer("number", text, "HO2"),
        Transfer("client", text, "HO3", {"context": {text: text, "nested": {"said": text}}}),
        Transfer("sip", text, "HO4"),
        Hangup(),
    )


@settings(max_examples=300, derandomize=True)
@given(ANY_TEXT, st.booleans())
def test_any_text_in_any_action_renders_a_document_that_parses(text: str, personal: bool) -> None:
    root = ET.fromstring(twiml.render(every_action(text, personal), ACTION + text))
    assert root.tag == "Response"
    says = list(root.iter("Say"))
    assert len(says) == 2
    assert all((say.text or "") == heard(text) for say in says)


@settings(max_examples=200, derandomize=True)
@given(ANY_TEXT, ANY_TEXT, ANY_TEXT)
def test_failure_replies_parse_whatever_they_say(reason: str, number: str, queue: str) -> None:
    for document in (
        twiml.fallback(number, queue, reason),
        twiml.fallback(None, queue, reason),
        twiml.fallback(None, None, reason),
        twiml.hangup(reason),
    ):
        root = ET.fromstring(document)
        assert root.tag == "Response"
        assert (root[0].text or "") == heard(reason)


def test_the_empty_messaging_reply_parses() -> None:
    root = ET.fromstring(EMPTY_MESSAGING.body)
    assert (root.tag, list(root)) == ("Response", [])


@pytest.mark.parametrize(
    "text", ["\x00", "\x1b", "\x08\x0b\x0c\x0e\x1f", "\ud800", "\udfff", "\ufffe", "\uffff"]
)
def test_forbidden_characters_are_left_out_and_the_rest_is_kept(text: str) -> None:
    said = f"Fish & chips{text} <now>\t😀 \u2028é"
    root = render(Say(said, voice="Polly." + text, personal=True), Pause(1))
    say = only(root, "Say")
    assert say.text == "Fish & chips <now>\t😀 \u2028é"
    assert say.get("voice") == "Polly."


def test_an_allowed_character_reference_is_kept() -> None:
    # ElementTree writes a tab in an attribute as a reference; only surrogate references go.
    hints = ("a\tb\n\ud800c",)
    gather = only(render(Gather(prompt=(), input=("speech",), hints=hints)), "Gather")
    assert gather.get("hints") == "a\tb\nc"

"""The page model without a server: views rendered from the session, checks with a sentence per
field, submissions saved in the session (masked where sensitive), idempotence, latest-wins until
the call used the answer, and an expired link's renewals."""

from __future__ import annotations

import pytest

from ivr import pages
from ivr.links import marks
from ivr.sensitive import MASK
from ivr.states import EventName, Waiting
from ivr.turn import RequestCallback, SendMessage
from tests.support_pages import CALLER, FLIGHTS, flow_of, waiting_session

LINK = "LK" + "1" * 20


def test_a_view_renders_title_paragraphs_and_choices_from_the_session() -> None:
    flow = flow_of()
    shown = pages.view(flow, waiting_session(flow), "flights")
    assert shown.title == "Pick a new flight, Ana"
    assert shown.paragraphs == ("Your flight was cancelled.", "These flights have seats.")
    assert shown.choices == (("OV 123", "OV 123 at 9:40"), ("OV 456", "OV 456 at 13:05"))
    assert shown.choice_field == "choice" and shown.state == "open" and shown.problems == ()
    assert shown.submit == "Choose this flight"


def test_a_template_error_shows_a_plain_fallback_and_names_the_problem() -> None:
    flow = flow_of()
    shown = pages.view(flow, waiting_session(flow), "details")
    assert shown.paragraphs == (pages.FALLBACK_TEXT,)
    assert shown.problems and "ZeroDivisionError" in shown.problems[0]
    assert [f.name for f in shown.fields] == ["email", "phone", "bags", "travel", "card", "note"]
    assert shown.fields[-1].hint == "Anything we should know."


def test_an_empty_or_missing_list_offers_nothing_and_says_so() -> None:
    flow = flow_of()
    shown = pages.view(flow, waiting_session(flow, variables={"name": "Ana"}), "flights")
    assert shown.choices == () and shown.choices_empty == "No flights are left today."


def test_opening_records_the_link_once() -> None:
    flow = flow_of()
    first = pages.opened(flow, waiting_session(flow), "flights", LINK, 1010.0)
    assert first is not None
    session, note = first
    assert session.pages["flights"]["status"] == "opened"
    assert session.pages["flights"]["links"] == [LINK]
    assert note.name == EventName.PAGE_OPENED and note.data == {"page": "flights", "link": LINK}
    assert pages.opened(flow, session, "flights", LINK, 1020.0) is None


def test_a_pick_is_saved_with_its_label_for_the_call() -> None:
    flow = flow_of()
    result = pages.submit(flow, waiting_session(flow), "flights", {"choice": "OV 123"}, LINK, 1010)
    assert isinstance(result, pages.Submitted)
    assert result.values == {"choice": "OV 123", "label": "OV 123 at 9:40"}
    session = result.session
    assert session.variables["rebooking"] == result.values
    entry = session.pages["flights"]
    assert entry["status"] == "submitted" and entry["link"] == LINK and entry["at"] == 1010
    [note] = result.notes
    assert note.name == EventName.PAGE_SUBMITTED and note.data["fields"] == ["choice", "label"]
    assert pages.should_redirect(flow, session, "flights", frozenset({"completed"}))
    shown = pages.view(flow, session, "flights", fresh=True)
    assert shown.state == "submitted" and shown.done == "Thanks, OV 123 at 9:40 is held for you."
    assert shown.chosen == "OV 123"


def test_a_choice_not_offered_or_missing_is_rejected_with_a_sentence() -> None:
    flow = flow_of()
    session = waiting_session(flow)
    missing = pages.submit(flow, session, "flights", {}, LINK, 1010)
    assert isinstance(missing, pages.Rejected)
    assert missing.errors == {"choice": "Please pick one of the options."}
    forged = pages.submit(flow, session, "flights", {"choice": "OV 999"}, LINK, 1010)
    assert isinstance(forged, pages.Rejected) and "not available" in forged.errors["choice"]
    [note] = forged.notes
    assert note.name == EventName.PAGE_REJECTED
    assert note.data == {"page": "flights", "link": LINK, "fields": ["choice"]}
    assert "OV 999" not in str(note.data)


@pytest.mark.parametrize(
    ("name", "typed", "expected"),
    [
        ("email", "", "Please fill in Email address."),
        ("email", "not-an-address", "Please enter an email address such as name@example.com."),
        ("phone", "call me", "Please enter a phone number, with its country code if abroad."),
        ("bags", "two", "Bags must be a number."),
        ("travel", "24/12/2026", "Please enter a date as year-month-day, such as 2026-12-24."),
        ("travel", "2026-02-30", "Please enter a date as year-month-day, such as 2026-12-24."),
        ("card", "12a4", "Please enter the last four digits of your card."),
        ("note", "x" * 21, "Note can be at most 20 characters long."),
    ],
)
def test_each_check_fails_with_its_own_sentence(name: str, typed: str, expected: str) -> None:
    flow = flow_of()
    form = {"email": "ana@example.com", "card": "1234", name: typed}
    result = pages.submit(flow, waiting_session(flow), "details", form, LINK, 1010)
    assert isinstance(result, pages.Rejected)
    assert result.errors == {name: expected}
    assert result.values[name] == typed.strip()


def test_good_values_of_every_type_pass_and_a_sensitive_one_is_masked_where_kept() -> None:
    flow = flow_of()
    form = {
        "email": " ana@example.com ",
        "phone": "+44 20 7946 0958",
        "bags": "2",
        "travel": "2026-12-24",
        "card": "4242",
        "note": "window\r\nseat",
        "extra": "dropped",
    }
    result = pages.submit(flow, waiting_session(flow), "details", form, LINK, 1010)
    assert isinstance(result, pages.Submitted)
    assert result.values["email"] == "ana@example.com" and "extra" not in result.values
    assert result.values["note"] == "window\nseat"
    assert result.session.variables["details"]["card"] == "4242"  # the flow has the real value
    assert result.session.pages["details"]["values"]["card"] == MASK
    assert result.notes[0].data["values"]["card"] == MASK
    assert "4242" not in str(result.notes[0].data)


def test_the_same_submission_again_changes_nothing_and_records_nothing() -> None:
    flow = flow_of()
    first = pages.submit(flow, waiting_session(flow), "flights", {"choice": "OV 123"}, LINK, 1010)
    assert isinstance(first, pages.Submitted)
    again = pages.submit(flow, first.session, "flights", {"choice": "OV 123"}, LINK, 1020)
    assert isinstance(again, pages.Submitted)
    assert again.notes == () and again.session is first.session


def test_a_different_submission_wins_until_the_call_has_used_the_first() -> None:
    flow = flow_of()
    first = pages.submit(flow, waiting_session(flow), "flights", {"choice": "OV 123"}, LINK, 1010)
    assert isinstance(first, pages.Submitted)
    told, note = pages.call_told(first.session, "flights", "redirected", 3)
    assert note is not None and note.name == EventName.CALL_REDIRECTED
    second = pages.submit(flow, told, "flights", {"choice": "OV 456"}, LINK, 1015)
    assert isinstance(second, pages.Submitted) and second.notes
    assert second.session.variables["rebooking"]["label"] == "OV 456 at 13:05"
    assert second.notes[0].data["changed"] is True
    # the redirect already issued reads the latest values: no second redirect
    assert not pages.should_redirect(flow, second.session, "flights", frozenset())
    # the call went on with it (the engine marks the submission used)
    entry = {**second.session.pages["flights"], "used": True}
    moved = second.session.evolve(
        step=4, node="picked", waiting=Waiting.INPUT, pages={"flights": entry}
    )
    third = pages.submit(flow, moved, "flights", {"choice": "OV 123"}, LINK, 1030)
    assert isinstance(third, pages.AlreadyUsed)
    assert pages.view(flow, moved, "flights").state == "used"
    assert pages.view(flow, moved, "flights").done == pages.USED_TEXT
    # the flow waits for the page again (the caller wants another): a new pick is taken
    again = moved.evolve(step=6, node="wait", waiting=Waiting.PAGE)
    assert pages.view(flow, again, "flights").can_change
    fourth = pages.submit(flow, again, "flights", {"choice": "OV 456"}, LINK, 1040)
    assert isinstance(fourth, pages.Submitted) and fourth.notes
    assert "used" not in fourth.session.pages["flights"]


def test_a_submission_after_the_call_ended_is_kept_and_not_redirected() -> None:
    flow = flow_of()
    ended = waiting_session(flow, call_status="completed")
    result = pages.submit(flow, ended, "flights", {"choice": "OV 123"}, LINK, 1010)
    assert isinstance(result, pages.Submitted)
    assert not pages.should_redirect(flow, result.session, "flights", frozenset({"completed"}))
    told, note = pages.call_told(result.session, "flights", "ended", 3, "HTTP 400, error 21220")
    assert note is None and told.pages["flights"]["call"] == "ended"
    assert pages.view(flow, told, "flights", fresh=True).call == pages.CALL_SENTENCES["ended"]


def test_an_expired_link_renews_by_text_once_and_asks_for_a_callback_once() -> None:
    flow = flow_of()
    session = waiting_session(flow)
    renewed = pages.renewal(flow, session, "flights", LINK, "sms", 2000.0)
    assert renewed is not None
    after, [message] = renewed
    assert isinstance(message, SendMessage) and message.channel == "sms" and message.to == CALLER
    [link] = message.links
    assert marks(message.body) == [link.id] and link.page == "flights" and link.expires == 3600
    assert message.body.startswith("Here is a new link for Pick a new flight, Ana: ")
    assert after.messages[message.key]["status"] == "queued"
    assert pages.renewal(flow, after, "flights", LINK, "sms", 2001.0) is None
    called = pages.renewal(flow, after, "flights", LINK, "callback", 2002.0)
    assert called is not None
    assert called[1] == (RequestCallback(CALLER, pages.RENEW_REASON),)
    assert pages.renewals_asked(called[0], "flights", LINK) == {"sms", "callback"}


def test_a_withheld_caller_cannot_be_texted_a_new_link() -> None:
    flow = flow_of()
    session = waiting_session(flow, caller="call:CA" + "a" * 32)
    assert pages.renewal(flow, session, "flights", LINK, "sms", 2000.0) is None


def test_flights_fixture_matches_the_choices() -> None:
    assert [f["number"] for f in FLIGHTS] == ["OV 123", "OV 456"]


def test_a_form_posted_after_the_answer_was_used_is_not_checked_but_a_repeat_is_answered_alike() -> (
    None
):
    flow = flow_of()
    first = pages.submit(flow, waiting_session(flow), "flights", {"choice": "OV 123"}, LINK, 1010)
    assert isinstance(first, pages.Submitted)
    entry = {**first.session.pages["flights"], "used": True}
    moved = first.session.evolve(node="picked", waiting=None, pages={"flights": entry})
    assert isinstance(pages.submit(flow, moved, "flights", {}, LINK, 1020), pages.AlreadyUsed)
    same = pages.submit(flow, moved, "flights", {"choice": "OV 123"}, LINK, 1020)
    assert isinstance(same, pages.Submitted) and same.notes == () and same.session is moved

"""The cancelled-flight scenario end to end through HTTP: a simulated call on the demo flow
reaches its wait_for node after the flow texts a link, the page is opened and submitted through
``/p/<token>``, the real twilio SDK redirects the live call (its HTTP layer mocked by
``responses``: ``POST .../Calls/CA....json`` with ``Url=.../voice/answer?step=N``), and posting
that URL gives TwiML that says the pick. A pick made after the call ended is kept, and the
caller's next call picks it up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
from flask import Flask

from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_pages import texted_link

ACCOUNT = "AC" + "0" * 32
BASE = "http://localhost"  # the simulator's base URL: the redirect's URL must verify there


@pytest.fixture
def twilio() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


@pytest.fixture
def airline(make_app: Callable[..., Flask]) -> Flask:
    return make_app(TWILIO_ACCOUNT_SID=ACCOUNT, PUBLIC_BASE_URL=BASE)


def calls_url(call_sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{call_sid}.json"


def waiting_for_flights(app: Flask) -> Call:
    """A caller with cancelled booking QRS456 asks for a text of flights and holds on."""
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press("1")
    call.say("Q R S 4 5 6")
    assert "to Denver is cancelled" in call.last_heard
    call.press("1")  # yes, move me to another flight
    call.press("1")  # text me the list
    assert "I've sent you a text with a link" in " ".join(call.heard)
    return call


def test_a_pick_on_the_page_is_said_on_the_live_call(
    airline: Flask, twilio: responses.RequestsMock
) -> None:
    call = waiting_for_flights(airline)
    path = texted_link(airline)
    twilio.add(responses.POST, calls_url(call.call_sid), json={"sid": call.call_sid})
    client = airline.test_client()
    opened = client.get(path)
    assert opened.status_code == 200
    assert "Flight OV 109, departing at 5:45 PM" in opened.get_data(as_text=True)
    call.silence()  # the hold loop goes round while the caller reads the page
    picked = client.post(path, data={"page": "flights", "flight": "OV 109"})
    assert picked.status_code == 200
    assert "We&#39;re telling you on the phone now." in picked.get_data(as_text=True)
    [sent] = twilio.calls
    form = parse_qs(str(sent.request.body))
    [url] = form["Url"]
    assert url.startswith(f"{BASE}/voice/answer?step=") and form["Method"] == ["POST"]
    call.redirected(url)
    assert call.last_heard.startswith("You picked flight OV 109 at 5:45 PM. Press 1 to confirm.")
    call.press("1")
    assert "You are now on flight OV 109, departing at 5:45 PM." in call.last_heard
    # the page now says the answer was used, and refuses another
    again = client.post(path, data={"page": "flights", "flight": "OV 105"})
    assert again.status_code == 409
    assert len(twilio.calls) == 1


def test_a_pick_after_the_call_ended_is_kept_for_the_next_call(
    airline: Flask, twilio: responses.RequestsMock
) -> None:
    call = waiting_for_flights(airline)
    path = texted_link(airline)
    call.hang_up()
    picked = airline.test_client().post(path, data={"flight": "OV 105"})
    assert picked.status_code == 200
    assert "pick this up next time you call" in picked.get_data(as_text=True)
    assert not twilio.calls
    loaded = airline.extensions["omnivoice.store"].load(call.caller)
    assert loaded.session is not None
    assert loaded.session.variables["rebooking"]["flight"] == "OV 105"
    again = Call(FlaskTransport(airline), AUTH_TOKEN).dial()
    assert "pick up where you left off" in again.last_heard
    again.press("1")  # continue
    assert "You picked flight OV 105 at 1:10 PM. Press 1 to confirm." in " ".join(again.heard)


def test_a_redirect_refused_because_the_call_just_ended_keeps_the_pick(
    airline: Flask, twilio: responses.RequestsMock
) -> None:
    call = waiting_for_flights(airline)
    path = texted_link(airline)
    body = {"code": 21220, "message": "Call is not in-progress. Cannot redirect.", "status": 400}
    twilio.add(responses.POST, calls_url(call.call_sid), json=body, status=400)
    picked = airline.test_client().post(path, data={"flight": "OV 105"})
    assert "pick this up next time you call" in picked.get_data(as_text=True)
    call.hang_up()
    loaded = airline.extensions["omnivoice.store"].load(call.caller)
    assert loaded.session is not None
    assert loaded.session.pages["flights"]["status"] == "submitted"
    assert loaded.session.pages["flights"]["call"] == "ended"


def test_a_pick_after_the_caller_rang_another_flow_lands_in_the_first_flow(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    (flows_dir / "menu.yaml").write_text(OTHER_FLOW)
    app = make_app(TWILIO_ACCOUNT_SID=ACCOUNT, PUBLIC_BASE_URL=BASE)
    first = waiting_for_flights(app)
    path = texted_link(app)
    first.hang_up()
    other = Call(FlaskTransport(app), AUTH_TOKEN, called=OTHER_LINE).dial()  # another number
    assert other.last_heard == "Press 1 for opening hours."
    other.hang_up()
    client = app.test_client()
    assert client.get(path).status_code == 200  # the airline's session, kept aside, is found
    picked = client.post(path, data={"page": "flights", "flight": "OV 105"})
    assert picked.status_code == 200
    back = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert "picking a new flight on the page we texted you" in back.last_heard
    back.press("1")  # continue
    assert back.last_heard.startswith("You picked flight OV 105 at 1:10 PM.")


OTHER_LINE = "+14155550133"
OTHER_FLOW = f"""\
id: menu
numbers: ["{OTHER_LINE}"]
start: main
nodes:
  main:
    gather: {{prompt: Press 1 for opening hours., num_digits: 1}}
    on: {{"1": main}}
"""

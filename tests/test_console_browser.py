"""The agent console in a real headless Chromium, driven by Playwright, against the app over HTTP.

The app is served from this process by a threaded werkzeug server (see
:mod:`tests.support_browser`) on real Redis and a migrated SQLite history database, so Twilio's
REST API can be mocked with ``responses`` at its real URL; agents are added with the
``flask agents add`` command, the password on standard input. Calls are simulated over HTTP with
Twilio-signed webhooks through the demo flow (and a flow with a PIN marked ``sensitive``).
An agent logs in through the form, watches callers arrive live (no reload), takes a call, writes
notes that reach a second agent's console live, and loses the live stream while things happen:
on reconnect every missed event shows up exactly once. Text with ``<script>`` in it (a caller's
speech, a note) must show as text, and no dialog may open. Screenshots go to the test's
``tmp_path``; with ``OMNIVOICE_SCREENSHOT=docs/console.png`` the board is also saved there.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Error,
    Page,
    expect,
    sync_playwright,
)
from sqlalchemy import select, update

from context.agent_feed import AgentFeed
from context.history import database
from context.history.models import Customer, Identity
from context.history.writer import HistoryWriter
from ivr.states import EventName
from ivr.turn import Note
from simulator import Call, HttpTransport
from tests.conftest import AUTH_TOKEN, REDIS_URL, REPO, app_for_tests, client_for, delete_under
from tests.support_browser import (
    CHROMIUM_ARGS,
    StreamCutter,
    ThreadedServer,
    output_dir,
    require_chromium,
)
from tests.support_console import (
    ACCOUNT,
    BANK_FLOW,
    BANK_NUMBER,
    FAST_HASH,
    PASSWORD,
    PIN,
    history_database,
)
from tests.support_twilio import free_port

AIRLINE_NUMBER = "+14155550100"
ALICE_PHONE = "+14155550188"
SCRIPT = "<script>alert(1)</script>"
WAIT = 10_000  # ms: how long the browser may take to show what the server sent
BANK_PAGES = """
pages:
  flights:
    title: Pick your new flight
    content: Choose one of the flights below.
"""


@dataclass
class Console:
    """The served app and what the tests reach behind it."""

    app: Flask
    base_url: str
    cutter: StreamCutter
    twilio: responses.RequestsMock
    writer: HistoryWriter
    sessions: Any  # the history database's sessionmaker
    transports: list[HttpTransport] = field(default_factory=list)

    @property
    def feed(self) -> AgentFeed:
        return self.app.extensions["omnivoice.feed"]

    def bundle(self, call_sid: str) -> dict[str, Any]:
        found = self.app.extensions["omnivoice.handoffs"].for_call(call_sid)
        assert found is not None, f"no handoff for {call_sid}"
        return dict(found)

    def call(self, caller: str, called: str = AIRLINE_NUMBER) -> Call:
        """A simulated call over HTTP (its connections are closed with the server)."""
        self.transports.append(HttpTransport(timeout=10))
        return Call(self.transports[-1], AUTH_TOKEN, caller=caller, called=called,
                    base_url=self.base_url)  # fmt: skip

    def feed_ids(self, call_sid: str) -> list[str]:
        return [e.id for e in self.feed.after("0-0") if e.event.get("call_sid") == call_sid]


@dataclass
class Agent:
    """A logged-in agent's browser tab."""

    page: Page
    context: BrowserContext
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught errors of the page's script

    def dialog_opened(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def script_failed(self, error: Error) -> None:
        self.errors.append(str(error))

    def card(self, call_sid: str) -> Any:
        return self.page.locator(f'article.caller-card[data-call-sid="{call_sid}"]')


def add_agent(app: Flask, name: str, *options: str) -> None:
    """Add an agent with the CLI, the password piped on standard input."""
    result = app.test_cli_runner().invoke(args=["agents", "add", name, *options],
                                          input=PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp("console-browser")
    flows = folder / "flows"
    shutil.copytree(REPO / "flows", flows)
    (flows / "bank.yaml").write_text(BANK_FLOW + BANK_PAGES)
    url = history_database(folder)
    base_url = f"http://127.0.0.1:{free_port()}"
    redis = client_for(REDIS_URL)
    prefix = f"test-browser-{uuid.uuid4().hex[:12]}"
    app = app_for_tests(
        flows,
        REDIS_CLIENT=redis,
        REDIS_KEY_PREFIX=prefix,
        DATABASE_URL=url,
        AGENT_PASSWORD_METHOD=FAST_HASH,
        TWILIO_ACCOUNT_SID=ACCOUNT,
        PUBLIC_BASE_URL=base_url,
        CONSOLE_HEARTBEAT_SECONDS=0.3,
    )
    add_agent(app, "alice", "--display-name", "Alice Ng", "--phone", ALICE_PHONE, "--supervisor")
    add_agent(app, "bob", "--display-name", "Bob Okafor", "--client", "bob_desk")
    engine = database.open_engine(url)
    sessions = database.sessions(engine)
    writer = HistoryWriter(app.extensions["omnivoice.events"], sessions, "browser-test")
    cutter = StreamCutter(app)
    # Twilio's REST API is mocked; the webhooks posted to our own server go through for real.
    twilio = responses.RequestsMock(assert_all_requests_are_fired=False,
                                    passthru_prefixes=(base_url,))  # fmt: skip
    delete_under(redis, prefix)
    try:
        with twilio, ThreadedServer(cutter, int(base_url.rsplit(":", 1)[1])):
            served = Console(app, base_url, cutter, twilio, writer, sessions)
            yield served
            for transport in served.transports:
                transport.session.close()
    finally:
        cutter.restore()
        engine.dispose()
        delete_under(redis, prefix)
        redis.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def agent(browser: Browser, console: Console, tmp_path: Path) -> Iterator[Callable[[str], Agent]]:
    """Open a logged-in board for an agent (its own browser context); screenshots at the end."""
    opened: list[Agent] = []

    def open_board(name: str) -> Agent:
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        tab = Agent(context.new_page(), context)
        tab.page.on("dialog", tab.dialog_opened)
        tab.page.on("pageerror", tab.script_failed)
        opened.append(tab)
        log_in(tab.page, console.base_url, name)
        return tab

    yield open_board
    for number, tab in enumerate(opened):
        tab.page.screenshot(path=output_dir(tmp_path) / f"agent-{number}.png", full_page=True)
        tab.context.close()
    assert [tab.dialogs for tab in opened if tab.dialogs] == [], "some text ran as script"
    assert [tab.errors for tab in opened if tab.errors] == [], "the board's script failed"


def log_in(page: Page, base_url: str, name: str) -> None:
    """Log in through ``form#login`` after being sent there by the board."""
    page.goto(f"{base_url}/agent")
    assert urlsplit(page.url).path == "/agent/login"
    form = page.locator("form#login")
    form.locator('input[name="name"]').fill(name)
    form.locator('input[name="password"]').fill(PASSWORD)
    form.locator('button[type="submit"]').click()
    page.wait_for_url(f"{base_url}/agent")
    expect(page.locator("#live-status")).to_have_text("live", timeout=WAIT)


def demo_call(console: Console, caller: str) -> Call:
    """Flight status for ABC123 (delayed), no rebooking, back to the menu, 0 for an agent."""
    call = console.call(caller).dial()
    call.press("1").say("A B C 1 2 3").press("2").press("1").press("0")
    assert call.ended == "enqueue", call.heard
    return call


def pairs(locator: Any) -> dict[str, str]:
    """A ``<dl>``'s names and values as the browser shows them."""
    names = locator.locator("dt").all_text_contents()
    values = locator.locator("dd").all_text_contents()
    return dict(zip(names, values, strict=True))


def test_a_returning_caller_brings_the_notes_and_history_to_the_next_agent(
    console: Console, agent: Callable[[str], Agent], tmp_path: Path
) -> None:
    caller = "+14155550142"
    first = demo_call(console, caller)
    first.hang_up("completed", duration=180)
    console.writer.drain()  # the caller is a customer in the history now
    name_customer(console, caller, "Maria Lopez")
    other = console.call("+14155550177").dial().press("0")  # straight to an agent
    assert other.ended == "enqueue", other.heard
    alice = agent("alice")
    form = alice.card(first.call_sid).locator("form.note-form")
    form.locator('textarea[name="text"]').fill(
        "OV 101 delayed 95 min; offered OV 205 at 18:05, she will decide by tonight."
    )
    form.locator('select[name="disposition"]').select_option("follow_up")
    form.locator('button[type="submit"]').click()
    expect(alice.card(first.call_sid).locator(".notes > li")).to_have_count(1, timeout=WAIT)
    console.writer.drain()  # the note, on the customer's card with the name

    again = console.call(caller).dial()
    assert again.ended == "enqueue", again.heard  # back within the resume window: to an agent
    card = alice.card(again.call_sid)
    expect(card).to_have_count(1, timeout=WAIT)
    expect(card.locator(".caller-name")).to_have_text("Maria Lopez")
    notes = card.locator(".notes > li .note-text")
    expect(notes).to_have_text(
        ["OV 101 delayed 95 min; offered OV 205 at 18:05, she will decide by tonight."]
    )
    assert card.locator(".recent-contacts > li").count() >= 1
    assert card.locator(".previous > li").all_text_contents() == [
        console.bundle(first.call_sid)["id"]
    ]
    other.hold(position=1, waited=25, size=2)  # Twilio's hold loop: where each caller is
    again.hold(position=2, waited=3, size=2)
    expect(card.locator(".queue")).to_have_text("position 2", timeout=WAIT)
    screenshot_board(alice.page, again.call_sid, tmp_path)


def test_a_transferred_caller_appears_live_with_path_inputs_and_reason(
    console: Console, agent: Callable[[str], Agent]
) -> None:
    alice = agent("alice")
    waiting_before = int(alice.page.locator("#waiting-count").inner_text())
    call = demo_call(console, "+14155550131")
    card = alice.card(call.call_sid)
    expect(card).to_have_count(1, timeout=WAIT)  # live, without a reload
    bundle = console.bundle(call.call_sid)
    assert card.locator(".reason").inner_text() == bundle["reason"] != ""
    assert card.locator(".summary").inner_text() == bundle["summary"]
    assert card.locator(".caller-name").inner_text() == "+14155550131"
    labels = card.locator("ol.path > li .label").all_text_contents()
    assert labels == [step["label"] or step["node"] for step in bundle["path"]]
    assert len(labels) >= 5 and "main_menu" in [step["node"] for step in bundle["path"]]
    answers = card.locator("ol.path > li q.answer").all_text_contents()
    assert answers[-1] == "0"  # the key that asked for an agent
    shown = pairs(card.locator("dl.inputs"))
    assert shown == {name: str(value) for name, value in bundle["inputs"].items()}
    assert shown.get("code") == "ABC123"
    assert card.locator(".state").inner_text() == "waiting"
    expect(alice.page.locator("#waiting-count")).to_have_text(str(waiting_before + 1))


def test_script_in_speech_and_notes_shows_as_text_and_the_pin_never_shows(
    console: Console, agent: Callable[[str], Agent]
) -> None:
    alice = agent("alice")
    call = console.call("+14155550132", BANK_NUMBER).dial()
    call.press(PIN).say(SCRIPT)
    assert call.ended == "enqueue", call.heard
    card = alice.card(call.call_sid)
    expect(card).to_have_count(1, timeout=WAIT)
    assert card.locator("ol.path q.answer").all_text_contents()[-1] == SCRIPT
    assert pairs(card.locator("dl.inputs")) == {"pin": "***", "about": SCRIPT}
    form = card.locator("form.note-form")
    form.locator('textarea[name="text"]').fill(f"Caller typed {SCRIPT}")
    form.locator('select[name="disposition"]').select_option("other")
    form.locator('button[type="submit"]').click()
    note = card.locator(".notes > li .note-text")
    expect(note).to_have_text(f"Caller typed {SCRIPT}", timeout=WAIT)
    for tab_state in ("live", "reloaded"):  # drawn by the script, then by the server
        page = alice.page
        assert page.locator("script").count() == 1, tab_state  # board.js only
        assert PIN not in page.content(), tab_state
        assert card.locator(".notes > li .note-text").all_text_contents() == [
            f"Caller typed {SCRIPT}"
        ], tab_state
        assert pairs(card.locator("dl.inputs"))["about"] == SCRIPT, tab_state
        page.reload()
        expect(page.locator("#live-status")).to_have_text("live", timeout=WAIT)
    assert alice.dialogs == []


def posted_twiml(request: Any) -> ET.Element:
    body = request.body
    form = parse_qs(body if isinstance(body, str) else body.decode())
    return ET.fromstring(form["Twiml"][0])


def test_take_call_dials_the_agent_through_twilio_and_the_card_shows_it(
    console: Console, agent: Callable[[str], Agent]
) -> None:
    alice = agent("alice")
    call = demo_call(console, "+14155550133")
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.call_sid}.json"
    console.twilio.add(responses.POST, url, json={"sid": call.call_sid}, status=200)
    card = alice.card(call.call_sid)
    expect(card).to_have_count(1, timeout=WAIT)
    card.locator("button.take-call").click()
    expect(card.locator(".state")).to_have_text("connecting", timeout=WAIT)
    expect(card.locator("button.take-call")).to_be_disabled()
    expect(alice.page.locator("#flash")).not_to_be_empty()
    posted = [c for c in console.twilio.calls if c.request.url == url]
    assert len(posted) == 1
    dial = posted_twiml(posted[0].request).find("Dial")
    assert dial is not None
    assert dial.findtext("Number") == ALICE_PHONE
    action = urlsplit(dial.get("action") or "")
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{console.base_url}/voice/transfer"
    taken = [e.event for e in console.feed.after("0-0")
             if e.event.get("call_sid") == call.call_sid and e.event["name"] == "call_taken"]  # fmt: skip
    assert [e["data"]["agent"] for e in taken] == ["alice"]


def test_a_note_shows_live_on_every_console_watching(
    console: Console, agent: Callable[[str], Agent]
) -> None:
    alice, bob = agent("alice"), agent("bob")
    call = demo_call(console, "+14155550134")
    for tab in (alice, bob):
        expect(tab.card(call.call_sid)).to_have_count(1, timeout=WAIT)
    form = alice.card(call.call_sid).locator("form.note-form")
    form.locator('textarea[name="text"]').fill("Wants the 18:05 to JFK instead; card on file.")
    form.locator('select[name="disposition"]').select_option("follow_up")
    form.locator('button[type="submit"]').click()
    for tab in (alice, bob):
        notes = tab.card(call.call_sid).locator(".notes > li")
        expect(notes).to_have_count(1, timeout=WAIT)
        assert notes.locator(".note-text").inner_text() == (
            "Wants the 18:05 to JFK instead; card on file."
        )
        assert notes.locator(".note-agent").inner_text() == "alice"
        assert notes.locator(".note-disposition").inner_text() == "follow_up"
    expect(form.locator('textarea[name="text"]')).to_have_value("")


def csrf_of(page: Page) -> str:
    return str(page.locator("#board").get_attribute("data-csrf"))


def test_a_dropped_stream_replays_every_missed_event_exactly_once(
    console: Console, agent: Callable[[str], Agent]
) -> None:
    alice, bob = agent("alice"), agent("bob")
    call = demo_call(console, "+14155550135")
    card = alice.card(call.call_sid)
    expect(card).to_have_count(1, timeout=WAIT)
    expect(bob.card(call.call_sid)).to_have_count(1, timeout=WAIT)
    seen = alice.page.evaluate("document.body.dataset.lastEventId")
    assert seen == console.feed.last_id()

    console.cutter.cut()
    for tab in (alice, bob):
        expect(tab.page.locator("#live-status")).to_have_text("reconnecting", timeout=WAIT)
    # While every console is away: a note over HTTP, a hold-loop pass, a new caller.
    response = bob.page.request.post(
        f"{console.base_url}/agent/calls/{call.call_sid}/notes",
        form={"text": "Missed while away", "disposition": "escalated"},
        headers={"X-CSRF-Token": csrf_of(bob.page), "X-Requested-With": "fetch"},
    )
    assert response.status == 200, response.text()
    call.hold(position=3, waited=40, size=4)
    newcomer = demo_call(console, "+14155550136")
    missed = [e.id for e in console.feed.after(seen)]
    assert len(missed) >= 3
    assert alice.page.evaluate("document.body.dataset.lastEventId") == seen
    assert card.locator(".notes > li").count() == 0

    wait_until(lambda: console.cutter.held >= 2)  # both browsers came back and are held
    console.cutter.restore()
    for tab in (alice, bob):
        expect(tab.page.locator("#live-status")).to_have_text("live", timeout=WAIT)
        expect(tab.card(newcomer.call_sid)).to_have_count(1, timeout=WAIT)
        expect(tab.card(call.call_sid).locator(".queue")).to_have_text("position 3")
        notes = tab.card(call.call_sid).locator(".notes > li .note-text")
        expect(notes).to_have_text(["Missed while away"])
    assert console.cutter.reconnects and set(console.cutter.reconnects) == {seen}
    assert alice.page.evaluate("document.body.dataset.lastEventId") == console.feed.last_id()
    for sid in (call.call_sid, newcomer.call_sid):
        shown = card_ids(alice, sid)
        assert shown == console.feed_ids(sid), sid  # each once, in order, none lost


def wait_until(condition: Callable[[], bool], seconds: float = WAIT / 1000) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def card_ids(tab: Agent, call_sid: str) -> list[str]:
    """The stream ids on a card's live timeline."""
    items = tab.card(call_sid).locator(".timeline li.live")
    return [str(item.get_attribute("data-id")) for item in items.all()]


def name_customer(console: Console, number: str, name: str) -> None:
    """Give the customer behind ``number`` a name, as a CRM import would (the card shows it
    once the history writer next rebuilds it)."""
    with console.sessions() as db, db.begin():
        customer_id = db.scalars(select(Identity.customer_id).where(Identity.value == number)).one()
        db.execute(update(Customer).where(Customer.id == customer_id).values(display_name=name))


def screenshot_board(page: Page, call_sid: str, tmp_path: Path) -> None:
    """The board with the caller's screen-pop, to ``tmp_path`` and where the env var says."""
    page.locator(f'article.caller-card[data-call-sid="{call_sid}"]').scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.set_viewport_size({"width": 1500, "height": 1420})  # the whole screen-pop, notes too
    page.screenshot(path=output_dir(tmp_path) / "board.png")
    wanted = os.environ.get("OMNIVOICE_SCREENSHOT")
    if wanted:
        target = Path(wanted) if Path(wanted).is_absolute() else REPO / wanted
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=target)


def test_an_agent_sends_a_page_from_a_live_card_and_sees_what_the_caller_picked(
    console: Console, agent: Callable[[str], Agent]
) -> None:
    alice = agent("alice")
    caller = "+14155550133"
    call = console.call(caller, BANK_NUMBER).dial()
    call.press(PIN).say("my flight was cancelled")
    assert call.ended == "enqueue", call.heard
    card = alice.card(call.call_sid)
    expect(card).to_have_count(1, timeout=WAIT)  # drawn by the script, with its page form
    form = card.locator("form.page-form")
    expect(form).to_be_visible()
    assert form.locator("select[name=page] option").all_text_contents() == ["Pick your new flight"]
    form.locator('input[name="channel"][value="sms"]').check()
    form.locator('button[type="submit"]').click()
    expect(alice.page.locator("#flash")).to_contain_text(
        "The page is on its way by text to ***0133", timeout=WAIT
    )
    service = console.app.extensions["omnivoice.calls"]

    def submitted(session: Any, now: float) -> Any:
        picked = {"page": "flights", "label": "OV 123 at 9:40"}
        return session, (Note(EventName.PAGE_SUBMITTED, picked),)

    assert service.amend(caller, submitted, call_sid=call.call_sid, channel="web") is not None
    expect(card.locator(".page-results > li")).to_contain_text(
        ["Caller picked: OV 123 at 9:40"], timeout=WAIT
    )

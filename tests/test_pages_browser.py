"""A page in a real headless Chromium, driven by Playwright, against the app over HTTP.

The app is served from this process by a threaded werkzeug server (see
:mod:`tests.support_browser`) on real Redis, so Twilio's REST API can be mocked with
``responses`` at its real URL. The caller's phone opens the texted link (a phone-sized
viewport, no script on the page), picks a flight by its label, and submits: the live call is
redirected to its answer URL, the page says the call is being told, and the call's next TwiML
says the pick. The call is simulated over HTTP on the demo flow, with Twilio-signed webhooks. Screenshots go to the
test's ``tmp_path``; with ``OMNIVOICE_SCREENSHOT=docs/page.png`` the page is also saved there.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright

from simulator import Call, HttpTransport
from tests.conftest import AUTH_TOKEN, REDIS_URL, REPO, app_for_tests, client_for, delete_under
from tests.support_browser import CHROMIUM_ARGS, ThreadedServer, output_dir, require_chromium
from tests.support_pages import (
    CALL_SID,
    CALLER,
    FLOW,
    issue,
    record_for,
    texted_link,
    waiting_session,
)
from tests.support_twilio import free_port

ACCOUNT = "AC" + "0" * 32
CALL_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json"
WAIT = 10_000  # ms


@dataclass
class Served:
    app: Flask
    base_url: str
    twilio: responses.RequestsMock


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "flows", flows)  # the demo flow, beside a flow of its own
    (flows / "rebook.yaml").write_text(FLOW)
    base_url = f"http://127.0.0.1:{free_port()}"
    redis = client_for(REDIS_URL)
    prefix = f"test-pages-browser-{uuid.uuid4().hex[:12]}"
    app = app_for_tests(
        flows,
        REDIS_CLIENT=redis,
        REDIS_KEY_PREFIX=prefix,
        TWILIO_ACCOUNT_SID=ACCOUNT,
        PUBLIC_BASE_URL=base_url,
    )
    twilio = responses.RequestsMock(
        assert_all_requests_are_fired=False, passthru_prefixes=(base_url,)
    )
    delete_under(redis, prefix)
    try:
        with twilio, ThreadedServer(app, int(base_url.rsplit(":", 1)[1])):
            yield Served(app, base_url, twilio)
    finally:
        delete_under(redis, prefix)
        redis.close()


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Page]:
    chromium = require_chromium()
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 390, "height": 844}, java_script_enabled=False
        )
        page = context.new_page()
        yield page
        page.screenshot(path=output_dir(tmp_path) / "page.png", full_page=True)
        if target := os.environ.get("OMNIVOICE_SCREENSHOT"):
            page.screenshot(path=target, full_page=True)
        context.close()
        browser.close()


def save_waiting(app: Flask, **changes: Any) -> None:
    flow = app.extensions["omnivoice.catalog"].get("rebook")
    versions = app.extensions["omnivoice.calls"].versions
    session = waiting_session(flow, **changes)
    assert app.extensions["omnivoice.store"].save(session, 0, flow=versions.pin(flow))


def test_a_caller_picks_a_flight_on_the_phone_and_the_live_call_is_redirected(
    served: Served, phone: Page
) -> None:
    save_waiting(served.app)
    flow = served.app.extensions["omnivoice.catalog"].get("rebook")
    path = issue(served.app.extensions["omnivoice.links"], record_for(flow))
    served.twilio.add(responses.POST, CALL_URL, json={"sid": CALL_SID}, status=200)
    phone.goto(served.base_url + path)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Pick a new flight, Ana")
    phone.get_by_label("OV 123 at 9:40").check()
    phone.get_by_role("button", name="Choose this flight").click()
    expect(phone.locator("#call-state")).to_have_text(
        "We're telling you on the phone now.", timeout=WAIT
    )
    expect(phone.get_by_role("status")).to_contain_text("OV 123 at 9:40 is held for you")
    [sent] = [c for c in served.twilio.calls if c.request.url == CALL_URL]
    form = parse_qs(str(sent.request.body))
    assert form["Url"] == [f"{served.base_url}/voice/answer?step=3"]
    loaded = served.app.extensions["omnivoice.store"].load(CALLER, CALL_SID)
    assert loaded.session is not None
    assert loaded.session.variables["rebooking"]["choice"] == "OV 123"


def test_the_cancelled_flight_scenario_on_the_demo_flow(served: Served, phone: Page) -> None:
    transport = HttpTransport(timeout=10)
    call = Call(transport, AUTH_TOKEN, base_url=served.base_url).dial()
    try:
        call.press("1")
        call.say("Q R S 4 5 6")
        assert "to Denver is cancelled" in call.last_heard
        call.press("1")  # move me to another flight
        call.press("1")  # text me the list
        path = texted_link(served.app)
        calls_url = CALL_URL.replace(CALL_SID, call.call_sid)
        served.twilio.add(responses.POST, calls_url, json={"sid": call.call_sid}, status=200)
        phone.goto(served.base_url + path)
        expect(phone.get_by_role("heading", level=1)).to_have_text("Pick your new flight")
        phone.get_by_label("Flight OV 109, departing at 5:45 PM").check()
        phone.get_by_role("button", name="Choose this flight").click()
        expect(phone.locator("#call-state")).to_have_text(
            "We're telling you on the phone now.", timeout=WAIT
        )
        [sent] = [c for c in served.twilio.calls if c.request.url == calls_url]
        [url] = parse_qs(str(sent.request.body))["Url"]
        assert url.startswith(f"{served.base_url}/voice/answer?step=")
        call.redirected(url)
        assert call.last_heard.startswith("You picked flight OV 109 at 5:45 PM.")
        assert call.gather is not None  # "press 1 to confirm" is listening
    finally:
        transport.session.close()

"""The embedded demo's outbox: with no Twilio account and no SMTP server, the texted page of
the cancelled-flight scenario is kept (logged, listed at ``/dev/outbox``), the simulator prints
it in the transcript, the page opens from it, and the call hears the pick at its hold loop's
next round. Never served outside dev mode."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from context.history import database
from jobs.dev_outbox import DEV_BASE_URL, DevOutbox
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, on_topologies

pytestmark = on_topologies("single")  # the demo's in-process queue is not for a cluster


@pytest.fixture
def demo(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Flask]:
    history = f"sqlite:///{tmp_path / 'history.db'}"  # the sender asks it about consent
    engine = database.open_engine(history)
    database.upgrade(engine)
    engine.dispose()
    app = make_app(
        DEV_MODE=True, JOBS_IN_PROCESS=True, DEV_OUTBOX=DevOutbox(), DATABASE_URL=history
    )
    yield app
    app.extensions["omnivoice.jobs"].close()


def texted(app: Flask) -> Call:
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press("1")
    call.say("Q R S 4 5 6")
    call.press("1")
    call.press("1")
    assert "I've sent you a text with a link" in " ".join(call.heard)
    return call


def kept_link(app: Flask) -> str:
    outbox: DevOutbox = app.extensions["omnivoice.outbox"]
    app.extensions["omnivoice.jobs"].finish_queue(timeout=10)
    [message] = outbox.after()
    assert message.channel == "sms" and message.to == "+14155550123"
    found = re.search(r"https?://\S+", message.body)
    assert found is not None, message.body
    return found.group(0)


def test_the_text_is_kept_with_a_link_to_the_demo_s_own_address(demo: Flask) -> None:
    texted(demo)
    link = kept_link(demo)
    assert link.startswith(f"{DEV_BASE_URL}/p/")
    listing = demo.test_client().get("/dev/outbox")
    assert listing.status_code == 200
    assert f'<a href="{link}">' in listing.get_data(as_text=True)
    data = demo.test_client().get("/dev/outbox.json?caller=%2B14155550123").get_json()
    assert [m["n"] for m in data["messages"]] == [1]


def test_the_page_opens_and_the_hold_loop_hears_the_pick(demo: Flask) -> None:
    call = texted(demo)
    path = urlsplit(kept_link(demo)).path
    client = demo.test_client()
    assert client.get(path).status_code == 200
    picked = client.post(path, data={"page": "flights", "flight": "OV 105"})
    assert picked.status_code == 200
    assert "telling you on the phone now" in picked.get_data(as_text=True).replace("&#39;", "'")
    call.silence()  # no Twilio to redirect it: the next round of the hold loop hears it
    assert call.last_heard.startswith("You picked flight OV 105 at 1:10 PM.")


def test_the_simulator_prints_the_text_in_the_transcript(demo: Flask) -> None:
    result = demo.test_cli_runner().invoke(args=["call", "--script", "1,Q R S 4 5 6,1,1"])
    assert result.exit_code == 0, result.output
    assert re.search(
        r"\[text to \+14155550123: Omnivoice Air: pick your new flight for booking QRS456 "
        r"here: http://127\.0\.0\.1:5000/p/\S+\]",
        result.output,
    ), result.output


def test_outside_dev_mode_there_is_no_outbox(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert app.test_client().get("/dev/outbox").status_code == 404
    assert app.test_client().get("/dev/outbox.json").status_code == 404


def test_a_kept_body_s_markup_is_shown_as_text(demo: Flask) -> None:
    demo.extensions["omnivoice.outbox"].keep("sms", "+14155550123", "<b>hi</b> https://x.test/a")
    page = demo.test_client().get("/dev/outbox").get_data(as_text=True)
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and '<a href="https://x.test/a">' in page

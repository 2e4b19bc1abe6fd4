"""The console's board: a call handed over by a real flow shows up with its whole bundle, notes
and caller speech are escaped, sensitive values never show, the supervisor strip counts, and
callback requests can be marked done.

Real Redis on every topology, a real SQLite history database, signed calls through the front.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from console import board
from context.agent_feed import FeedEntry
from context.history import database
from context.history.models import CallbackRequest
from tests.support_console import (
    PIN,
    add_agent,
    close_history,
    console_config,
    hand_over,
    logged_in,
)

XSS = "<script>alert(1)</script>"


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    built = make_app(**console_config(flows_dir, tmp_path))
    add_agent(built)
    yield built
    close_history(built)


class Cards(HTMLParser):
    """The text of each caller card's parts, by class, as a browser would show it."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, Any]] = []
        self.stack: list[tuple[str, list[str]]] = []
        self.in_template = 0
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "template":
            self.in_template += 1
        if tag == "script":
            self.scripts.append(found)
        classes = (found.get("class") or "").split()
        if tag == "article" and "caller-card" in classes and not self.in_template:
            self.cards.append({"call_sid": found.get("data-call-sid"), "text": {}, "tags": []})
        if self.cards and not self.in_template:
            self.cards[-1]["tags"].append(tag)
        self.stack.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self.in_template -= 1
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.cards or self.in_template:
            return
        for _tag, classes in self.stack:
            for name in classes:
                self.cards[-1]["text"].setdefault(name, []).append(data)

    def text(self, index: int, name: str) -> str:
        return " ".join("".join(self.cards[index]["text"].get(name, [])).split())


def parse(html: str) -> Cards:
    cards = Cards()
    cards.feed(html)
    return cards


def test_a_handed_over_caller_gets_a_card_with_the_whole_bundle(app: Flask) -> None:
    call = hand_over(app, about="my card was eaten by the machine")
    client, _ = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    cards = parse(html)
    assert [card["call_sid"] for card in cards.cards] == [call.call_sid]
    assert cards.text(0, "caller-number") == "+14155550123"
    assert "my card was eaten by the machine" in cards.text(0, "path")
    assert "about" in cards.text(0, "inputs")
    assert cards.text(0, "summary")
    assert "handoff" in cards.text(0, "timeline")
    assert "button" in cards.cards[0]["tags"]
    match = re.search(r'id="board" data-last-id="([0-9]+-[0-9]+)"', html)
    assert match, "the board names the feed id it was drawn at"
    assert match.group(1) == app.extensions["omnivoice.feed"].last_id()


def test_a_sensitive_value_never_reaches_the_page(app: Flask) -> None:
    hand_over(app)
    client, _ = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    assert PIN not in html
    assert "***" in parse(html).text(0, "inputs")


def test_speech_and_notes_with_markup_are_shown_as_text(app: Flask) -> None:
    call = hand_over(app, about=f"hello {XSS}")
    client, token = logged_in(app)
    saved = client.post(
        f"/agent/calls/{call.call_sid}/notes",
        data={"text": XSS, "disposition": "other", "csrf_token": token},
    )
    assert saved.status_code == 302
    html = client.get("/agent").get_data(as_text=True)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    cards = parse(html)
    assert cards.text(0, "note-text") == XSS  # what the browser shows: the text itself
    assert XSS in cards.text(0, "path")
    assert [script.get("src") for script in cards.scripts] == ["/agent/static/console/board.js"]


def test_the_supervisor_strip_counts_waiting_callers_and_transfers(app: Flask) -> None:
    hand_over(app, caller="+14155550111")
    hand_over(app, caller="+14155550112")
    client, _ = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    assert re.search(r'id="waiting-count">2<', html)
    assert re.search(r'id="transfers-hour">2<', html)
    assert re.search(r'id="longest-wait" data-seconds="[0-9]+"', html)


def entry(
    entry_id: str, name: str, call_sid: str = "CA1", at: float = 100.0, **data: Any
) -> FeedEntry:
    event = {"v": 1, "name": name, "at": at, "caller": "+1", "call_sid": call_sid, "data": data}
    return FeedEntry(entry_id, event)


def test_the_fold_follows_a_call_from_handoff_to_its_end() -> None:
    bundle = {"id": "HO1", "caller": {"number": "+1"}}
    cards = board.fold(
        [
            entry(
                "1-0", "queue_waiting", call_sid="CA0", position=1
            ),  # before its handoff: ignored
            entry("2-0", "handoff", bundle=bundle, handoff_id="HO1"),
            entry("3-0", "queue_waiting", position=2, wait_seconds=30),
            entry("4-0", "agent_note", agent="ann", text="hi", disposition=None),
        ]
    )
    assert list(cards) == ["CA1"]
    card = cards["CA1"]
    assert (card.state, card.position, card.wait_seconds) == ("waiting", 2, 30)
    assert [n["text"] for n in card.notes] == ["hi"]
    assert board.strip(cards.values(), now=160.0) == board.Strip(1, 60, 1)
    board.apply(cards, entry("5-0", "call_taken", agent="ann"))
    assert cards["CA1"].state == "connecting"
    board.apply(cards, entry("6-0", "transfer_result", result="connected"))
    assert cards["CA1"].state == "connected"
    board.apply(cards, entry("7-0", "call_ended", status="transferred"))
    assert cards["CA1"].state == "ended" and cards["CA1"].last_id == "7-0"
    assert board.strip(cards.values(), now=160.0) == board.Strip(0, 0, 1)


def test_an_open_callback_request_can_be_marked_done(app: Flask) -> None:
    engine = database.open_engine(app.config["DATABASE_URL"])
    with database.sessions(engine)() as db:
        db.add(
            CallbackRequest(
                stream_id="1-1", number="+14155550123", reason="wants a call back",
                at=datetime.now(UTC),
            )
        )  # fmt: skip
        db.commit()
    client, token = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    found = re.search(r'data-callback-id="([0-9]+)"', html)
    assert found and "wants a call back" in html
    callback_id = found.group(1)
    refused = client.post(f"/agent/callbacks/{callback_id}/done", data={"csrf_token": "no"})
    assert refused.status_code == 400
    done = client.post(f"/agent/callbacks/{callback_id}/done", data={"csrf_token": token})
    assert done.status_code == 302
    with database.sessions(engine)() as db:
        row = db.scalars(select(CallbackRequest)).one()
        assert (row.status, row.done_by) == ("done", "ann")
        assert row.done_at is not None
    again = client.post(f"/agent/callbacks/{callback_id}/done", data={"csrf_token": token})
    assert again.status_code == 302  # back to the board, saying it was not open
    assert "is not open" in client.get("/agent").get_data(as_text=True)
    engine.dispose()

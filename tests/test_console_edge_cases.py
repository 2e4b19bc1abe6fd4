"""Console edge cases: a stream outliving its agent's account, a busy hour on the board, two
agents taking one caller, guesses sent all at once (real Redis, a migrated SQLite history,
Twilio's REST API mocked with ``responses``, the Flask test client reading streams unbuffered)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask

from console.agents import directory_of
from tests.support_console import (
    ACCOUNT,
    add_agent,
    close_history,
    console_config,
    csrf_from,
    hand_over,
    logged_in,
)


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    built = make_app(**console_config(flows_dir, tmp_path))
    add_agent(built)
    yield built
    close_history(built)


def test_a_disabled_agents_open_stream_ends_and_shows_no_more_callers(app: Flask) -> None:
    client, _ = logged_in(app)
    response = client.get("/agent/events", buffered=False)
    try:
        chunks = iter(response.response)
        assert next(chunks).startswith(b"retry:")
        directory_of(app).disable("ann")
        time.sleep(0.3)  # past a heartbeat (0.2 s): the stream looks at the account again
        hand_over(app)  # a caller after the account was disabled
        sent = b""
        deadline = time.monotonic() + 3.0
        for chunk in chunks:  # ends when the stream does
            sent += chunk
            assert time.monotonic() < deadline, "the stream of a disabled agent went on"
    finally:
        response.close()
    events = [line for line in sent.decode().split("\n") if line.startswith("data:")]
    assert [json.loads(line[5:])["name"] for line in events] == []


def test_a_busy_hour_still_shows_the_newest_caller_on_the_board(app: Flask) -> None:
    feed = app.extensions["omnivoice.feed"]
    hold_passes = [
        {"v": 1, "name": "queue_waiting", "call_sid": f"CA{n:032x}", "data": {"position": 1}}
        for n in range(5000)
    ]  # an hour of hold-loop passes of a busy queue
    for first in range(0, len(hold_passes), 1000):
        assert feed.append(hold_passes[first : first + 1000])
    newest = hand_over(app, caller="+14155550177")
    client, _ = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    assert f'data-call-sid="{newest.call_sid}"' in html


def test_two_agents_pressing_take_call_at_once_move_the_caller_once(app: Flask) -> None:
    add_agent(app, "bob", phone="+14155550166")
    call = hand_over(app)
    ann, ann_token = logged_in(app, "ann")
    bob, bob_token = logged_in(app, "bob")
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.call_sid}.json"
    in_twilio = threading.Event()
    second_done = threading.Event()
    moves: list[str] = []

    def update(request: Any) -> tuple[int, dict[str, str], str]:
        moves.append(str(request.body))
        if len(moves) == 1:  # ann's move is slow to answer: bob presses meanwhile
            in_twilio.set()
            second_done.wait(5)
        return 200, {}, json.dumps({"sid": call.call_sid})

    answers: dict[str, Any] = {}

    def take(name: str, client: Any, token: str) -> None:
        answers[name] = client.post(
            f"/agent/calls/{call.call_sid}/take",
            headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"},
        )

    with responses.RequestsMock(assert_all_requests_are_fired=False) as twilio:
        twilio.add_callback(responses.POST, url, callback=update)
        first = threading.Thread(target=take, args=("ann", ann, ann_token))
        first.start()
        assert in_twilio.wait(5)
        take("bob", bob, bob_token)
        second_done.set()
        first.join(5)
    assert answers["ann"].status_code == 200
    assert answers["bob"].status_code == 409, answers["bob"].get_json()
    assert len(moves) == 1


def test_wrong_passwords_sent_at_once_get_no_more_tries_than_the_limit(
    make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path
) -> None:
    slow = make_app(**console_config(flows_dir, tmp_path, AGENT_PASSWORD_METHOD="scrypt"))
    add_agent(slow)
    tries = 12
    clients = [slow.test_client() for _ in range(tries)]
    tokens = [csrf_from(c.get("/agent/login").get_data(as_text=True)) for c in clients]
    start = threading.Barrier(tries)
    statuses: list[int] = []

    def guess(index: int) -> None:
        start.wait(5)
        form = {"name": "ann", "password": f"guess number {index}", "csrf_token": tokens[index]}
        statuses.append(clients[index].post("/agent/login", data=form).status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    close_history(slow)
    assert sorted(statuses) == [401] * 5 + [429] * (tries - 5)


def test_a_caller_waiting_through_a_busy_hour_stays_on_the_board(app: Flask) -> None:
    feed = app.extensions["omnivoice.feed"]
    waiting = hand_over(app)  # long ago, in feed terms: thousands of entries since
    passes = [
        {"v": 1, "name": "queue_waiting", "call_sid": f"CA{n:032x}", "data": {"position": 1}}
        for n in range(5000)
    ]
    for first in range(0, len(passes), 1000):
        assert feed.append(passes[first : first + 1000])
    waiting.hold(position=3, waited=1800)  # still in line
    client, _ = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    card = re.search(rf'<article [^>]*data-call-sid="{waiting.call_sid}"[^>]*>', html)
    assert card, "the waiting caller has no card"
    assert 'data-state="waiting"' in card.group(0)

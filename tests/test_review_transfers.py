"""Transfer edge cases found in review: a retried result whose answer was another transfer, and
what the hold loop and the whisper do with odd input (real front, real Redis)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from tests.support_twilio import CALLER, post, twiml, verbs

OVERFLOW_FLOW = """\
    id: overflow
    numbers: ["+14155550100"]
    start: first
    nodes:
      first:
        transfer:
          queue: support
          on: {queue_full: second}
      second:
        say: Trying our other team.
        transfer:
          queue: overflow
"""


@pytest.fixture
def overflow(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "overflow.yaml").write_text(textwrap.dedent(OVERFLOW_FLOW))
    return make_app()


def path_of(url: str | None) -> str:
    assert url is not None
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def test_a_retried_result_whose_answer_was_another_transfer_gets_that_transfer_again(
    overflow: Flask,
) -> None:
    client = overflow.test_client()
    form = {"CallSid": "CA" + "7" * 32, "From": CALLER, "To": "+14155550100"}
    start = twiml(post(client, "/voice", form))
    enqueue = start.find("Enqueue")
    assert enqueue is not None and enqueue.text == "support"
    action = path_of(enqueue.get("action"))
    first = twiml(post(client, action, {**form, "QueueResult": "queue-full"}))
    assert first.find("Enqueue") is not None and first.findtext("Enqueue") == "overflow"
    # Twilio did not get the first answer in time and posts the same result again: an empty
    # document would hang up on a caller who is on their way to the second queue.
    again = twiml(post(client, action, {**form, "QueueResult": "queue-full"}))
    assert verbs(again) == verbs(first)
    assert again.findtext("Enqueue") == "overflow"

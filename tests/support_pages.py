"""Helpers for page tests: a flow with pages, sessions saved at its wait_for node, and links
issued for them, as the sender would issue them."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import orjson

from context.links import LinkRecord, LinkStore
from conversation.message_jobs import open_job
from ivr.flow import Flow, load_flow_text
from ivr.links import marks
from ivr.session import Session
from ivr.states import Waiting

CALLER = "+14155550123"
CALL_SID = "CA" + "a" * 32
CONVERSATION = "c" * 32
FLIGHTS = [
    {"number": "OV 123", "departs": "9:40"},
    {"number": "OV 456", "departs": "13:05"},
]
FLOW = """\
id: rebook
start: offer
sensitive: [details.card]
nodes:
  offer:
    say: Let me text you the flights.
    next: wait
  wait:
    wait_for: {page: flights, timeout: 2m, on_submit: picked, on_timeout: nothing}
  picked:
    say: "You picked flight {{ rebooking.label }}."
    hangup: true
  nothing:
    say: Goodbye.
    hangup: true
pages:
  flights:
    title: "Pick a new flight, {{ name }}"
    content: |
      Your flight was cancelled.

      These flights have seats.
    choices:
      items: flights
      value: "{{ item.number }}"
      label: "{{ item.number }} at {{ item.departs }}"
      empty: No flights are left today.
    submit: Choose this flight
    done: "Thanks, {{ rebooking.label }} is held for you."
    save_as: rebooking
  details:
    title: Your details
    content: "{{ 1 / 0 }}"
    fields:
      email: {label: Email address, type: email}
      phone: {label: Phone, type: tel, required: false}
      bags: {label: Bags, type: number, required: false}
      travel: {label: Travel date, type: date, required: false}
      card: {label: Card last four, pattern: "[0-9]{4}", error: Please enter the last four digits of your card.}
      note: {label: Note, type: textarea, required: false, max_length: 20, hint: Anything we should know.}
"""


def flow_of(text: str = FLOW) -> Flow:
    return load_flow_text(textwrap.dedent(text), "rebook.yaml", "rebook")


def waiting_session(flow: Flow, **changes: Any) -> Session:
    """A session at the flow's wait_for node, as the engine leaves it (step 3)."""
    base = Session(
        caller=CALLER,
        flow_id=flow.id,
        flow_version=flow.version,
        call_sid=CALL_SID,
        node="wait",
        waiting=Waiting.PAGE,
        step=3,
        conversation=CONVERSATION,
        variables={"name": "Ana", "flights": FLIGHTS},
        call_status="in-progress",
        started_at=1000.0,
        updated_at=1000.0,
    )
    return base.evolve(**changes)


def record_for(
    flow: Flow, page: str = "flights", link: str = "LK" + "1" * 20, **changes: Any
) -> LinkRecord:
    fields: dict[str, Any] = {
        "id": link,
        "caller": CALLER,
        "flow": flow.id,
        "page": page,
        "conversation": CONVERSATION,
        "call_sid": CALL_SID,
        "issued_at": 1000.0,
        "expires": 3600,
        "via": "sms",
    }
    fields.update(changes)
    return LinkRecord(**fields)


def issue(links: LinkStore, record: LinkRecord) -> str:
    """The path (``/p/<token>``) of a link issued for ``record``."""
    url = links.issue(record)
    return url[url.index("/p/") :]


def texted_link(app: Any, caller: str = CALLER) -> str:
    """The path of the page link in the latest text queued for ``caller``, issued as the
    sender issues it when it sends the text (from the sealed job of the ``message_queued``
    event)."""
    stream = app.extensions["omnivoice.events"]
    found = [orjson.loads(f[b"e"]) for _id, f in stream.redis.xrange(stream.key_for(caller))]
    queued = [e for e in found if e["name"] == "message_queued"]
    assert queued, "no text was queued"
    job = open_job(queued[-1]["data"], app.extensions["omnivoice.store"].codec.sealer)
    [link] = job["links"]
    assert marks(job["body"]) == [link["id"]]
    record = LinkRecord(
        id=link["id"],
        caller=job["caller"],
        flow=job["flow"],
        page=link["page"],
        conversation=job["conversation"],
        call_sid=job["call_sid"],
        issued_at=time.time(),
        expires=int(link["expires"]),
        via=job.get("via") or "sms",
    )
    return issue(app.extensions["omnivoice.links"], record)

"""The TwiML of transfers, part of :mod:`webhooks.twiml`: queue, number, client and SIP.

Every transfer carries its handoff (see :mod:`ivr.handoff`) the way its target can read it:

- a queue: ``<Enqueue>`` with a ``waitUrl`` (hold prompts, the caller's position) and, when a
  TaskRouter workflow is configured, ``workflowSid`` and a ``<Task>`` whose attributes follow
  what Flex plugins read (``type``, ``name``, ``from``) plus ``handoff_id`` and the bundle;
- a number: ``<Dial><Number url>`` whose URL reads the agent the bundle's one-sentence summary
  before the caller is connected (a whisper);
- a client: ``<Dial><Client><Identity/><Parameter/>...`` with the bundle's keys, which the
  agent's Voice SDK reads as ``customParameters``;
- SIP: ``<Dial><Sip>`` with the handoff id in an ``X-Handoff-Id`` header.

Each posts its ``action`` to the transfer URL, so how it ended (``QueueResult``,
``DialCallStatus``) goes back to the flow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from ivr.turn import Transfer
from webhooks.voice_urls import transfer_url, wait_url, whisper_url

PARAMETER_CHARS = 256  # a <Parameter> value is kept short: it travels in SIP signalling
PARAMETERS = 12
TASK_BUNDLE_BYTES = 12_000  # TaskRouter attributes stay well within Twilio's size limit
BUNDLE_KEYS = ("reason", "summary")
CALLER_KEYS = ("number", "name", "confidence", "customer")


def render(
    response: VoiceResponse, transfer: Transfer, root: str, step: int, workflow: str | None
) -> None:
    """Add ``transfer`` to ``response``; its result comes back to the transfer URL of ``step``."""
    action = transfer_url(root, step)
    if transfer.route == "queue":
        workflow_sid = transfer.workflow or workflow
        enqueue = response.enqueue(
            None if workflow_sid else transfer.target,
            action=action,
            method="POST",
            wait_url=wait_url(root, transfer.flow, transfer.node, transfer.handoff_id),
            wait_url_method="POST",
            workflow_sid=workflow_sid,
        )
        if workflow_sid:
            enqueue.task(json.dumps(task_attributes(transfer), default=str))
        return
    dial = response.dial(action=action, method="POST", timeout=transfer.timeout)
    if transfer.route == "number":
        dial.number(transfer.target, url=whisper_url(root, transfer.handoff_id), method="POST")
    elif transfer.route == "client":
        client = dial.client()
        client.identity(transfer.target)
        for name, value in parameters(transfer).items():
            client.parameter(name=name, value=value)
    else:
        separator = "&" if "?" in transfer.target else "?"
        dial.sip(f"{transfer.target}{separator}X-Handoff-Id={transfer.handoff_id}")


def parameters(transfer: Transfer) -> dict[str, str]:
    """The ``<Parameter>``\\ s of a client transfer: the handoff id, who, why, and the context."""
    bundle = transfer.bundle
    caller: Mapping[str, Any] = bundle.get("caller") or {}
    found: dict[str, Any] = {"handoff_id": transfer.handoff_id}
    found.update({f"caller_{key}": caller.get(key) for key in CALLER_KEYS})
    found.update({key: bundle.get(key) for key in BUNDLE_KEYS})
    found.update(bundle.get("context") or {})
    texts: dict[str, str] = {}
    for name, value in found.items():
        if value is None or len(texts) == PARAMETERS:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        texts[str(name)[:64]] = text[:PARAMETER_CHARS]
    return texts


def task_attributes(transfer: Transfer) -> dict[str, Any]:
    """TaskRouter task attributes: Flex's conventions, the handoff id, and the bundle."""
    bundle = dict(transfer.bundle)
    caller: Mapping[str, Any] = bundle.get("caller") or {}
    attributes: dict[str, Any] = {
        "type": "inbound",
        "name": caller.get("name") or caller.get("number") or "Caller",
        "from": caller.get("number"),
        "queue": transfer.target,
        "handoff_id": transfer.handoff_id,
        "reason": bundle.get("reason"),
    }
    if caller.get("customer") is not None:
        attributes["crmid"] = caller["customer"]
    # The whole bundle when it fits; else without its longest lists (the API has all of it).
    for dropped in ((), ("recent_contacts", "path"), ("recent_contacts", "path", "notes")):
        slim = {k: v for k, v in bundle.items() if k not in dropped}
        if len(json.dumps(slim, default=str)) <= TASK_BUNDLE_BYTES:
            attributes["omnivoice"] = slim
            break
    return attributes

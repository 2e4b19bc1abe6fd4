"""The handoff bundle: everything known about a caller at a transfer, in one versioned shape.

An agent must never ask what the caller already told the IVR. :func:`bundle` gathers it when a
``transfer`` node runs: who is calling and how sure we are, the flow and version, the path taken
(node ids with labels), what the caller entered, how many tries each question took, why the
caller is being handed over, how long they were in self-service, how often the conversation was
picked up again, links sent, the customer's recent contacts and the notes agents wrote before.
The shape is published as JSON Schema in ``docs/handoff-bundle.schema.json`` (version
:data:`BUNDLE_VERSION`); a change that is not an addition gets a new version.

Nothing sensitive goes in: values at the flow's ``sensitive`` paths are masked where they are
named (inputs, context) and wherever their text shows up (a reason template that used one).
Pure, like the rest of ``ivr/``: the shell stores and publishes the bundle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ivr import attempts, sensitive
from ivr.flow import Flow
from ivr.session import Session

BUNDLE_VERSION = 1
RECENT_CONTACTS = 5
NOTES = 5
MAX_TEXT = 500

# How we know who is calling, strongest first; the confidence each gives.
_STRONG = ("verified", "stir_a")
_FAIR = ("resume_code", "caller_id")


def handoff_id(call_sid: str, step: int, node: str) -> str:
    """The id of the handoff a call makes at ``step`` from ``node``.

    Derived, not random: a webhook Twilio retries makes the same handoff, not a second one.
    """
    digest = hashlib.sha256(f"{call_sid}\x00{step}\x00{node}".encode()).hexdigest()
    return f"HO{digest[:32]}"


def confidence(
    identified: tuple[str, ...], card: Mapping[str, Any], number: str | None = None
) -> str:
    """How sure we are of who is calling: ``high``, ``medium``, ``low`` or ``unknown``.

    ``number`` is the caller's; without it, any shared number of the customer's counts.
    """
    shared = card.get("shared")
    if shared and (number is None or not isinstance(shared, list) or number in shared):
        return "low"  # several people share this number of the customer: it may be another one
    if any(way in identified for way in _STRONG):
        return "high"
    if any(way in identified for way in _FAIR):
        return "medium"
    return "unknown"


def bundle(
    flow: Flow,
    session: Session,
    node: str,
    *,
    handoff: str,
    route: str,
    target: str,
    reason: str,
    context: Mapping[str, Any],
    at: float,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The bundle of a transfer from ``node`` (``session`` as it is at the transfer).

    ``labels`` say what each visited node is about (rendered descriptions); a node without one
    is labelled by its description as written, else its name.
    """
    labels = labels or {}
    paths = tuple(flow.spec.sensitive)
    card = session.card or {}
    number = session.caller if session.caller.startswith("+") else None
    previous = [h for h in session.handoffs if h != handoff]
    found: dict[str, Any] = {
        "v": BUNDLE_VERSION,
        "id": handoff,
        "at": round(at, 3),
        "call_sid": session.call_sid,
        "conversation": session.conversation,
        "caller": {
            "number": number,
            "name": card.get("name"),
            "customer": card.get("customer"),
            "language": card.get("language"),
            "identified_by": list(session.identified),
            "confidence": confidence(session.identified, card, number),
            "possible_customers": _possible(card, number),
        },
        "flow": {"id": flow.id, "version": flow.version},
        "route": {"kind": route, "target": target},
        "reason": reason[:MAX_TEXT],
        "path": [
            {
                "node": visit.node,
                "label": labels.get(visit.node) or _label(flow, visit.node),
                "answer": visit.answer,
                "outcome": visit.outcome,
            }
            for visit in session.trail
        ],
        "inputs": _inputs(flow, session, paths),
        "attempts": _attempts(session.attempts),
        "context": {key: sensitive.masked(paths, key, value) for key, value in context.items()},
        "ivr_seconds": round(max(0.0, at - session.started_at), 1) if session.started_at else 0.0,
        "resumes": session.resumes,
        "links": [],
        "topic": (card.get("open_conversation") or {}).get("topic"),
        "recent_contacts": [_contact(c) for c in _list(card.get("contacts"))[:RECENT_CONTACTS]],
        "notes": [_note(n) for n in _list(card.get("notes"))[:NOTES]],
        "previous": previous[-3:],
    }
    found["summary"] = summary(found)
    secrets = secrets_of(session, paths)
    found = scrub(found, secrets)  # text anywhere: a reason or a label that used a secret
    for key in ("inputs", "context"):  # numbers too, where the caller's values are
        found[key] = scrub(found[key], secrets, numbers=True)
    return found


def summary(found: Mapping[str, Any]) -> str:
    """One sentence for the agent before the call connects (a number transfer's whisper)."""
    caller = found.get("caller") or {}
    who = caller.get("name") or _spoken_number(caller.get("number")) or "A caller"
    how = {
        "high": "identity confirmed",
        "medium": "identified by caller ID",
        "low": "identity uncertain",
    }.get(str(caller.get("confidence")), "not identified")
    minutes = int(float(found.get("ivr_seconds") or 0) // 60)
    spent = f"{minutes} minute{'s' if minutes != 1 else ''}" if minutes else "under a minute"
    # Handed over before in an earlier call (a resumed conversation), not earlier in this one
    # (a second queue after a full one).
    back = ", calling back" if found.get("previous") and found.get("resumes") else ""
    return (
        f"{who}, {how}{back}: {found.get('reason') or 'asked for an agent'}; {spent} in the menu."
    )


def scrub(value: Any, secrets: set[str], numbers: bool = False) -> Any:
    """``value`` with every text equal to (or, for four characters or more, holding) one of
    ``secrets`` masked; numbers equal to one too with ``numbers`` (not in the bundle's own
    counts: a PIN of ``1`` must not mask ``resumes: 1``)."""
    if not secrets:
        return value
    if isinstance(value, Mapping):
        return {key: scrub(item, secrets, numbers) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item, secrets, numbers) for item in value]
    if isinstance(value, str):
        if value in secrets:
            return sensitive.MASK
        for secret in secrets:
            if len(secret) >= 4 and secret in value:
                value = value.replace(secret, sensitive.MASK)
        return value
    if (
        numbers
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and str(value) in secrets
    ):
        return sensitive.MASK
    return value


def secrets_of(session: Session, paths: tuple[str, ...]) -> set[str]:
    """The text of every sensitive value ``session`` holds (to mask wherever it appears)."""
    _, taken = sensitive.take(paths, session.variables)
    return set(sensitive.texts([*taken.values(), *session.held.values()]))


def _label(flow: Flow, node: str) -> str:
    spec = flow.spec.nodes.get(node)
    if spec is None:
        return node
    return (spec.description or spec.topic or node)[:200]


def _inputs(flow: Flow, session: Session, paths: tuple[str, ...]) -> dict[str, Any]:
    """What the caller entered: every variable a gather saved, masked where sensitive."""
    names = [n.save_as for n in flow.spec.nodes.values() if n.gather is not None and n.save_as]
    return {
        name: sensitive.masked(paths, name, session.variables[name])
        for name in dict.fromkeys(names)
        if name in session.variables
    }


def _attempts(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The tries per node; ``inputs`` (failed answers, already masked) only where there are any."""
    found: dict[str, dict[str, Any]] = {}
    for node, counts in raw.items():
        if isinstance(counts, Mapping):
            entry: dict[str, Any] = {
                kind: int(counts.get(kind) or 0)
                for kind in ("no_input", "no_match")
                if isinstance(counts.get(kind), int)
            }
            if inputs := attempts.of(raw, str(node))["inputs"]:
                entry["inputs"] = inputs
            found[str(node)] = entry
    return found


def _possible(card: Mapping[str, Any], number: str | None) -> int:
    """How many customers the caller may be: 0 (a number we do not know), 1, or 2 for "more
    than one" (a number several people share: the card may be another person's)."""
    if not card:
        return 0
    shared = card.get("shared")
    return 2 if isinstance(shared, list) and number in shared else 1


def _contact(contact: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("sid", "channel", "direction", "at", "outcome", "summary", "flow", "topic")
    return {key: contact.get(key) for key in keys}


def _note(note: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("at", "agent", "text", "disposition", "call_sid")
    return {key: note.get(key) for key in keys}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _spoken_number(number: Any) -> str | None:
    if not isinstance(number, str) or len(number) < 4:
        return None
    return f"A caller from the number ending {' '.join(number[-4:])}"

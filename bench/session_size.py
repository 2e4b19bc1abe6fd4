"""How big a caller's session is in Redis, mid-call on the demo flow.

``python -m bench.session_size`` walks the demo flow in-process on real Redis (change a booking,
say the confirmation code, hear the rebooking options) and measures the session hash where the
call waits at the rebooking menu, the fullest point of a normal call: ``MEMORY USAGE`` of the
hash, the length of its ``doc`` field (the JSON document) and of every field. It measures the
same after the rebooking and at the end of the call for comparison. Target: at most 2 KB.
Results go to ``bench/results/session_size.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import redis

from bench import report
from bench.inprocess import app_on_redis
from bench.servers import AUTH_TOKEN
from simulator import Call, FlaskTransport

TARGET_BYTES = 2048
CALLER = "+12125550199"
WALK: list[tuple[str, Callable[[Call], object]]] = [
    ("at the main menu", lambda c: c.dial()),
    ("giving the confirmation code", lambda c: c.press("2")),
    ("at the rebooking menu (target)", lambda c: c.say("A B C 1 2 3")),
    ("after rebooking", lambda c: c.press("1")),
    ("call completed", lambda c: c.press("2")),
]
MEASURED = "at the rebooking menu (target)"


def snapshot(connection: redis.Redis, key: str) -> dict[str, Any]:
    """The sizes of one session hash."""
    fields = connection.hgetall(key)
    doc = fields.get(b"doc", b"")
    memory = connection.memory_usage(key, samples=0)
    return {
        "memory_usage_bytes": int(memory or 0),
        "doc_bytes": len(doc),
        "field_bytes": {_text(k): len(v) for k, v in fields.items()},
        "doc": json.loads(doc) if doc else None,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def measure() -> dict[str, Any]:
    """Walk the demo flow and take a snapshot of the session after each step."""
    points = []
    with app_on_redis("size") as (app, connection, prefix):
        key = f"{prefix}:{{{CALLER}}}:session"
        call = Call(FlaskTransport(app), AUTH_TOKEN, caller=CALLER)
        for label, action in WALK:
            action(call)
            points.append({"point": label, "heard": call.last_heard, **snapshot(connection, key)})
    target = next(p for p in points if p["point"] == MEASURED)
    return {
        "key_layout": "<prefix>:{<caller>}:session, a hash of seq, call and doc (JSON)",
        "target": f"<= {TARGET_BYTES} bytes (MEMORY USAGE and len(doc)) at the rebooking menu",
        "memory_usage_bytes": target["memory_usage_bytes"],
        "doc_bytes": target["doc_bytes"],
        "results": {
            "memory_usage": report.verdict(target["memory_usage_bytes"] <= TARGET_BYTES),
            "doc": report.verdict(target["doc_bytes"] <= TARGET_BYTES),
        },
        "points": points,
    }


def print_report(doc: dict[str, Any]) -> None:
    """A table of sizes along the call, then the verdicts."""
    print(
        report.table(
            ["where the call is", "MEMORY USAGE", "len(doc)", "fields"],
            [
                [p["point"], p["memory_usage_bytes"], p["doc_bytes"], p["field_bytes"]]
                for p in doc["points"]
            ],
        )
    )
    print(f"\ntarget {doc['target']}: MEMORY USAGE {doc['memory_usage_bytes']} B "
          f"{doc['results']['memory_usage']}, len(doc) {doc['doc_bytes']} B "
          f"{doc['results']['doc']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write ``bench/results/session_size.json``."""
    argparse.ArgumentParser(prog="python -m bench.session_size", description=__doc__).parse_args(
        argv
    )
    doc = measure()
    print_report(doc)
    print(f"\nwritten: {report.write('session_size', doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Redis round trips per webhook, counted on the wire inside the app's own Redis client.

``python -m bench.roundtrips`` builds the real app (``create_app``) on real Redis with a client
whose connections record every write to the socket: one write is one round trip (a pipeline is
one write, whatever it holds), and the command names in it are decoded from the RESP bytes. A
warm-up call first absorbs one-off work (connection set-up, script loading, publishing the flow
version), then a simulated call walks the demo flow's normal path and each webhook's round trips
and commands are printed and stored in ``bench/results/roundtrips.json``. Target: at most 2
round trips for ``/voice`` and ``/voice/answer``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from bench import report
from bench.inprocess import app_on_redis
from bench.servers import AUTH_TOKEN, REDIS_URL
from simulator import Call, FlaskTransport

TARGET = 2
TWO_WORD_COMMANDS = {b"SCRIPT", b"CLIENT", b"CONFIG", b"MEMORY", b"OBJECT"}


@dataclass
class Recorder:
    """Every round trip since the last :meth:`take`, as the list of commands it carried."""

    trips: list[list[str]] = field(default_factory=list)

    def record(self, packed: Any) -> None:
        """Note one write of packed RESP commands."""
        data = packed if isinstance(packed, bytes) else b"".join(bytes(p) for p in packed)
        self.trips.append(command_names(data))

    def take(self) -> list[list[str]]:
        """The round trips recorded so far; start again from none."""
        trips, self.trips = self.trips, []
        return trips


def command_names(data: bytes) -> list[str]:
    """The command names in a buffer of RESP arrays (``SCRIPT EXISTS`` keeps both words)."""
    names: list[str] = []
    at = 0
    while at < len(data) and data[at : at + 1] == b"*":
        end = data.index(b"\r\n", at)
        count = int(data[at + 1 : end])
        at = end + 2
        words: list[bytes] = []
        for _ in range(count):
            end = data.index(b"\r\n", at)
            size = int(data[at + 1 : end])
            words.append(data[end + 2 : end + 2 + size])
            at = end + 2 + size + 2
        name = words[0].upper() if words else b"?"
        if name in TWO_WORD_COMMANDS and len(words) > 1:
            name += b" " + words[1].upper()
        names.append(name.decode("ascii", "replace"))
    return names


def counting_client(recorder: Recorder) -> redis.Redis:
    """A client configured like the app's (:func:`context.redis_client.connect`) that records."""

    class CountingConnection(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            recorder.record(command)
            super().send_packed_command(command, check_health)

    return redis.Redis.from_url(
        REDIS_URL,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        health_check_interval=30,
        retry_on_timeout=False,
        connection_class=CountingConnection,
    )


class CountingTransport(FlaskTransport):
    """Posts in-process and notes the round trips each webhook made."""

    def __init__(self, app: Any, recorder: Recorder) -> None:
        super().__init__(app)
        self.recorder = recorder
        self.webhooks: list[dict[str, Any]] = []
        self.label = ""

    def post(self, url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST, then record the round trips the request made."""
        self.recorder.take()
        status, body = super().post(url, params, headers)
        trips = self.recorder.take()
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        self.webhooks.append(
            {
                "webhook": "/" + path,
                "caller_did": self.label,
                "status": status,
                "round_trips": len(trips),
                "dip_claims": sum(trip == ["SET"] for trip in trips),
                "commands": [" + ".join(trip) for trip in trips],
            }
        )
        return status, body


NORMAL_PATH: list[tuple[str, Callable[[Call], object]]] = [
    ("dial", lambda c: c.dial()),
    ("press 9 at the main menu (no match)", lambda c: c.press("9")),
    ("silence at the main menu (no input)", lambda c: c.silence()),
    ("press 2: change a booking", lambda c: c.press("2")),
    ("say the code A B C 1 2 3 (data dips)", lambda c: c.say("A B C 1 2 3")),
    ("press 1: rebook (data dip)", lambda c: c.press("1")),
    ("press 2: end the call", lambda c: c.press("2")),
    ("status callback: completed", lambda c: c.hang_up("completed")),
]


def measure() -> dict[str, Any]:
    """Walk the normal path twice (cold, then warm) and count round trips per webhook."""
    recorder = Recorder()
    client = counting_client(recorder)
    runs = {}
    try:
        with app_on_redis("trips", client) as (app, _, _):
            for phase, caller in (("cold", "+12125550101"), ("warm", "+12125550102")):
                transport = CountingTransport(app, recorder)
                call = Call(transport, AUTH_TOKEN, caller=caller)
                for label, action in NORMAL_PATH:
                    transport.label = label
                    action(call)
                runs[phase] = transport.webhooks
    finally:
        client.close()
    return document(runs)


def document(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-webhook counts, the worst case per endpoint on the warm path, and the verdict."""
    worst: dict[str, int] = {}
    for hook in runs["warm"]:
        endpoint = hook["webhook"].split("?", 1)[0]
        own = hook["round_trips"] - hook["dip_claims"]
        worst[endpoint] = max(worst.get(endpoint, 0), own)
    gated = {k: v for k, v in worst.items() if k in ("/voice", "/voice/answer")}
    return {
        "method": "in-process create_app on real Redis; a client connection class counts socket "
        "writes (one write = one round trip; a pipeline is one write)",
        "target": f"<= {TARGET} round trips for /voice and /voice/answer (warm path), not "
        "counting the claim a data dip whose method is not GET adds (a lone SET NX)",
        "worst_round_trips": worst,
        "result": report.verdict(all(v <= TARGET for v in gated.values())),
        "webhooks": runs,
    }


def commands(hook: dict[str, Any]) -> str:
    """A webhook's commands, round trip by round trip."""
    return " | ".join(hook["commands"])


def print_report(doc: dict[str, Any]) -> None:
    """One table per phase, then the verdict."""
    for phase, hooks in doc["webhooks"].items():
        print(f"\n{phase} path")
        print(
            report.table(
                ["caller did", "webhook", "round trips", "dip claims", "commands per round trip"],
                [
                    [h["caller_did"], h["webhook"], h["round_trips"], h["dip_claims"], commands(h)]
                    for h in hooks
                ],
            )
        )
    print(f"\nworst warm round trips: {doc['worst_round_trips']}  target {doc['target']}: "
          f"{doc['result']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Count, print, write ``bench/results/roundtrips.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrips", description=__doc__)
    parser.parse_args(argv)
    doc = measure()
    print_report(doc)
    print(f"\nwritten: {report.write('roundtrips', doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

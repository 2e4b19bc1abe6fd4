"""The simulator keys and logs the way a real call does.

Twilio ends keypad input at the finish key (``#`` by default, not sent in ``Digits``) or at
``numDigits``; a finish key alone sends nothing and the call moves on as after silence. The
terminal simulator keeps the server's logs out of the transcript unless ``--verbose``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.test_cli import FLASK, REPO

ECHO = """\
numbers: ["+14155550100"]
start: ask
nodes:
  ask:
    gather: {{prompt: Key it in., {gather}}}
    save_as: keyed
    next: echo
    no_input: {{retries: 1, reprompt: Nothing heard., then: bye}}
  echo:
    say: "You keyed {{{{ keyed }}}}."
    next: ask
  bye: {{say: Goodbye., hangup: true}}
"""


@pytest.fixture
def keypad(make_app: Callable[..., Flask], flows_dir: Path) -> Callable[[str], Call]:
    """A call into a flow that reads back what was keyed, its gather set by the argument."""

    def dial(gather: str) -> Call:
        (flows_dir / "airline.yaml").unlink(missing_ok=True)
        (flows_dir / "echo.yaml").write_text(ECHO.format(gather=gather))
        return Call(FlaskTransport(make_app()), AUTH_TOKEN).dial()

    return dial


def test_the_finish_key_ends_input_and_is_not_sent(keypad: Callable[[str], Call]) -> None:
    c = keypad("timeout: 5")
    c.press("1234#")
    assert c.last_heard == "You keyed 1234. Key it in."
    c.press("56#78")  # what follows the finish key is not part of this answer
    assert c.last_heard == "You keyed 56. Key it in."


def test_input_stops_at_num_digits(keypad: Callable[[str], Call]) -> None:
    c = keypad("num_digits: 3")
    c.press("98765")
    assert c.last_heard == "You keyed 987. Key it in."


def test_the_finish_key_alone_is_silence(keypad: Callable[[str], Call]) -> None:
    c = keypad("timeout: 5")
    c.press("#")
    assert c.last_heard == "Nothing heard. Key it in."


def test_another_finish_key_makes_pound_a_digit(keypad: Callable[[str], Call]) -> None:
    c = keypad('finish_on_key: "*"')
    c.press("12#*9")
    assert c.last_heard == "You keyed 12#. Key it in."


def test_no_finish_key_sends_every_key(keypad: Callable[[str], Call]) -> None:
    c = keypad('finish_on_key: ""')
    c.press("#1#")
    assert c.last_heard == "You keyed #1#. Key it in."


# ---- the terminal simulator's logs --------------------------------------------------------
def simulated_call(*options: str) -> subprocess.CompletedProcess[str]:
    """``flask --app app call --script 1`` on the demo, as a designer runs it."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        OMNIVOICE_DEV="1", LOG_LEVEL="DEBUG", HISTORY_IN_PROCESS="0",
        HANDOFF_WEBHOOK_IN_PROCESS="0",
    )  # fmt: skip
    return subprocess.run(
        [*FLASK, "--app", "app", "call", "--script", "1", *options],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def logged(output: str) -> list[dict[str, object]]:
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_the_transcript_has_no_logs_unless_verbose() -> None:
    quiet = simulated_call()
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines()[0].startswith("omnivoice: Thanks for calling")
    assert logged(quiet.stdout) == [] and logged(quiet.stderr) == []
    verbose = simulated_call("--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert {"DEV MODE" in str(entry["msg"]) for entry in logged(verbose.stderr)} >= {True}

"""What a returning caller hears: a checkpoint's description, never a node's name.

A node's name (``get_account``) is for designers. Without a ``description`` the welcome-back
line is worded without a place; a custom ``resume.prompt`` gets ``where`` empty and can test it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from ivr import resume
from ivr.flow import load_flow_text
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

FLOW = """\
numbers: ["+14155550100"]
resume: {within: 30m, ask: true{prompt}}
fallback: bye
start: get_account
nodes:
  get_account:
{description}    gather: {prompt: Enter your account number.}
    save_as: account
    next: amount
  amount:
    gather: {prompt: "Account {{ account }}. Enter an amount."}
    save_as: amount
    next: bye
  bye: {say: Goodbye., hangup: true}
"""


def flow_text(description: str = "", prompt: str = "") -> str:
    return FLOW.replace("{description}", description).replace("{prompt}", prompt)


def dropped_and_back(make_app: Callable[..., Flask], flows_dir: Path, text: str) -> Call:
    """A caller who hangs up at the account question and calls back."""
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "bank.yaml").write_text(text)
    app = make_app()
    first = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert first.last_heard == "Enter your account number."
    first.hang_up()
    return Call(FlaskTransport(app), AUTH_TOKEN).dial()


def heard_words(call: Call) -> str:
    return call.last_heard.lower().replace("_", " ")


def test_without_a_description_the_welcome_back_names_no_place(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    back = dropped_and_back(make_app, flows_dir, flow_text())
    assert back.last_heard == resume.PLAIN_PROMPT
    assert "get account" not in heard_words(back) and "last time" not in heard_words(back)
    back.press("1")
    assert back.last_heard == "Enter your account number."


def test_a_description_is_spoken_as_the_place(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    text = flow_text(description="    description: giving us your account number\n")
    back = dropped_and_back(make_app, flows_dir, text)
    assert back.last_heard.startswith(
        "Welcome back. Last time you were giving us your account number. To pick up"
    )


def test_a_custom_prompt_gets_where_empty_without_a_description(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    prompt = (
        ', prompt: "Welcome back{% if where %}, you were {{ where }}{% endif %}. Press 1 to go on."'
    )
    back = dropped_and_back(make_app, flows_dir, flow_text(prompt=prompt))
    assert back.last_heard == "Welcome back. Press 1 to go on."


def test_where_is_the_description_or_nothing() -> None:
    loaded: Any = load_flow_text(
        flow_text(description="    description: at the account question\n"), "f.yaml", "f"
    )
    assert resume.where(loaded, "get_account") == "at the account question"
    assert resume.where(loaded, "amount") is None
    assert resume.where(loaded, "no_such_node") is None

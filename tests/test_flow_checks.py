"""The checks ``flows validate`` makes of a flow's shape, and that the call behaves as they say.

Each warning names something a caller would otherwise be the first to find: a loop that asks
nothing, retries that run out into the built-in goodbye, a say written below a branch. Errors
that refuse a flow are in ``tests/bad_flows/`` (see tests/test_flow_loading.py).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from ivr import engine, flow_checks
from ivr.errors import FlowLoadError, Problem
from ivr.flow import Flow, load_flow_text
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.test_cli import flows_cli, located


def load(text: str) -> Flow:
    return load_flow_text(textwrap.dedent(text), "flow.yaml", "flow")


def warnings_of(text: str) -> list[Problem]:
    found = list(load(text).warnings)
    assert all(w.severity == "warning" for w in found)
    return found


def test_the_loop_guard_named_in_messages_is_the_engines() -> None:
    assert flow_checks.MAX_HOPS == engine.MAX_HOPS


# ---- loops that ask nothing -----------------------------------------------------------------
def test_a_loop_with_no_way_out_is_refused_at_its_first_node() -> None:
    with pytest.raises(FlowLoadError) as caught:
        load(
            """\
            start: a
            nodes:
              a: {say: One., next: b}
              b: {set: {n: 1}, next: c}
              c: {goto: b}
            """
        )
    [problem] = caught.value.problems
    assert (problem.line, problem.col, problem.severity) == (4, 3, "error")
    assert problem.message.startswith("Nodes 'b', 'c' go round forever")


def test_a_node_that_goes_to_itself_is_a_loop() -> None:
    with pytest.raises(FlowLoadError) as caught:
        load("start: a\nnodes:\n  a: {say: Again., next: a}\n")
    [problem] = caught.value.problems
    assert "Nodes 'a' go round forever" in problem.message


def test_a_loop_only_a_branch_leaves_is_a_warning() -> None:
    [warning] = warnings_of(
        """\
        start: count
        nodes:
          count:
            set: {n: "{{ (n or 0) + 1 }}"}
            branch: [{if: n > 3, then: done}]
            next: count
          done: {say: Done., hangup: true}
        """
    )
    assert (warning.line, warning.col) == (3, 3)
    assert "'count' can go round without asking the caller anything" in warning.message
    assert "within 64 steps" in warning.message


@pytest.mark.parametrize(
    "stop",
    [
        "gather: {prompt: Press 1.}\n    on: {'1': a}",
        "transfer: {queue: support}",
        "hangup: true",
    ],
)
def test_a_loop_through_a_node_that_waits_or_ends_is_fine(stop: str) -> None:
    flow = load(f"start: a\nnodes:\n  a: {{say: Hi., next: b}}\n  b:\n    {stop}\n")
    assert not [w for w in flow.warnings if "go round" in w.message]


def test_a_loop_through_a_data_dip_is_left_on_its_failure() -> None:
    flow = load(
        """\
        fallback: agent
        start: poll
        nodes:
          poll:
            http: {url: "https://api.example.com/ready"}
            next: wait
          wait: {pause: 2s, next: poll}
          agent: {transfer: {queue: support}}
        """
    )
    [warning] = [w for w in flow.warnings if "go round" in w.message]
    assert "'poll', 'wait'" in warning.message


# ---- retries that run out -------------------------------------------------------------------
MENU = """\
start: menu
nodes:
  menu:
    gather: {prompt: Press 1.}
    on: {"1": done}
{extra}
  done: {say: Bye., hangup: true}
"""


def menu(extra: str = "") -> str:
    """The menu flow with ``extra`` lines in its gather node."""
    return MENU.replace("{extra}\n", extra + "\n" if extra else "")


def test_retries_without_then_or_fallback_warn_at_the_gather() -> None:
    [warning] = warnings_of(menu())
    assert (warning.line, warning.col) == (4, 5)
    assert "says nothing or gives no usable answer at 'menu'" in warning.message
    assert "built-in goodbye" in warning.message
    assert "no_input.then and no_match.then" in warning.message


def test_the_warning_points_at_the_retry_that_lacks_then() -> None:
    extra = "    no_input: {retries: 1}\n    no_match: {then: done}"
    [warning] = warnings_of(menu(extra))
    assert (warning.line, warning.col) == (6, 5)
    assert "A caller who says nothing at 'menu'" in warning.message
    assert "no_match" not in warning.message.split("Add")[1]


@pytest.mark.parametrize(
    "head",
    [
        "defaults:\n  no_input: {then: done}\n  no_match: {then: done}\n",
        "fallback: done\n",
    ],
)
def test_defaults_or_a_fallback_catch_every_retry(head: str) -> None:
    assert warnings_of(head + menu()) == []


def test_a_gather_that_is_itself_the_fallback_still_warns() -> None:
    [warning] = warnings_of("fallback: menu\n" + menu())
    assert "a fallback other than this node" in warning.message


def test_when_retries_run_out_with_no_way_on_the_caller_hears_the_goodbye(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    """What the warning says happens on a real call through the signed front."""
    (flows_dir / "airline.yaml").unlink()
    text = menu("    no_input: {retries: 1, reprompt: Are you there?}")
    text = text.replace("start: menu", 'numbers: ["+14155550100"]\nstart: menu')
    (flows_dir / "menu.yaml").write_text(text)
    [warning] = load(text).warnings
    assert "built-in goodbye" in warning.message
    c = Call(FlaskTransport(make_app()), AUTH_TOKEN).dial()
    assert c.last_heard == "Press 1."
    c.silence()
    assert c.last_heard == "Are you there? Press 1."
    c.silence()
    assert c.last_heard == engine.GIVE_UP_TEXT
    assert c.ended == "hangup"


# ---- a say below a branch -------------------------------------------------------------------
HOURS = """\
start: hours
nodes:
  hours:
{body}
  menu: {say: Welcome., hangup: true}
  voicemail: {say: Leave a message., hangup: true}
"""


def test_a_say_written_below_a_branch_warns_at_the_say() -> None:
    body = "    branch: [{if: open, then: menu}]\n    say: We are closed.\n    next: voicemail"
    [warning] = warnings_of(HOURS.replace("{body}", body))
    assert (warning.line, warning.col) == (5, 5)
    assert "speaks its say before the branch, although it is written after it" in warning.message


def test_a_say_written_above_a_branch_is_plain_to_see() -> None:
    body = "    say: Thanks for calling.\n    branch: [{if: open, then: menu}]\n    next: voicemail"
    assert warnings_of(HOURS.replace("{body}", body)) == []


def test_everyone_hears_the_say_below_a_branch(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    """The engine speaks it before the branch, as the warning says: an open line hears it too."""
    (flows_dir / "airline.yaml").unlink()
    body = (
        '    set: {open: "{{ true }}"}\n'
        "    branch: [{if: open, then: menu}]\n"
        "    say: We are closed.\n"
        "    next: voicemail"
    )
    text = 'numbers: ["+14155550100"]\n' + HOURS.replace("{body}", body)
    (flows_dir / "hours.yaml").write_text(text)
    c = Call(FlaskTransport(make_app()), AUTH_TOKEN).dial()
    assert c.last_heard == "We are closed. Welcome."


# ---- verified nodes -------------------------------------------------------------------------
VERIFY = """\
resume: {{verify: pin}}
sensitive: [account]
start: account
nodes:
  account:
    checkpoint: true
    gather: {{prompt: Enter your account.}}
    save_as: account
    next: {after_account}
    no_input: {{then: bye}}
    no_match: {{then: bye}}
  pin:
    gather: {{prompt: Enter your PIN.}}
    on: {{"4321": pin_ok}}
    no_input: {{then: bye}}
    no_match: {{then: bye}}
  pin_ok:
    verified: true
    say: Thank you.
  bye: {{say: Goodbye., hangup: true}}
"""


def test_a_verified_node_that_resume_verify_leads_to_is_no_dead_end() -> None:
    assert warnings_of(VERIFY.format(after_account="bye")) == []


def test_a_verified_node_other_callers_reach_too_warns_for_them() -> None:
    [warning] = warnings_of(VERIFY.format(after_account="pin"))
    assert (warning.line, warning.col) == (18, 5)
    assert "leads nowhere for a caller who is not resuming" in warning.message


def test_a_verified_node_nothing_verifies_through_is_a_dead_end() -> None:
    text = VERIFY.format(after_account="pin").replace("resume: {verify: pin}\n", "")
    [warning] = warnings_of(text)
    assert "'pin_ok' leads nowhere: the call hangs up after it" in warning.message


# ---- the command line -----------------------------------------------------------------------
def test_validate_prints_the_new_findings_with_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "menu.yaml"
    path.write_text(menu())
    result = flows_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    [finding] = located(result.stdout + result.stderr)
    assert (finding["path"], finding["line"], finding["col"]) == (str(path), "4", "5")
    assert finding["severity"] == "warning"
    assert re.search(r"built-in goodbye", finding["msg"])


# ---- waits that never end -------------------------------------------------------------------
WAITING = """\
start: wait
nodes:
  wait:
    wait_for: {page: seat, timeout: 2m, on_submit: bye, on_timeout: %s}
  again:
    say: Still waiting for your answer.
    next: wait
  ask:
    gather: {prompt: Press 1 to keep waiting.}
    on: {"1": wait}
    next: bye
  bye:
    say: Goodbye.
    hangup: true
pages:
  seat: {title: Your seat}
"""


@pytest.mark.parametrize("target", ["wait", "again"])
def test_a_wait_whose_timeout_comes_straight_back_to_it_is_a_warning(target: str) -> None:
    found = [w for w in warnings_of(WAITING % target) if "never times out" in w.message]
    assert len(found) == 1
    assert "'wait'" in found[0].message and found[0].line == 4


def test_a_wait_whose_timeout_asks_the_caller_first_is_fine() -> None:
    assert not [w for w in warnings_of(WAITING % "ask") if "never times out" in w.message]

"""Whole calls through the signed Twilio front that follow the flow's clock and business hours."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask

from simulator.call import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

SHOP = "+14155550177"
SHOP_FLOW = f"""\
id: shop
numbers: ["{SHOP}"]
timezone: America/Chicago
hours:
  weekly:
    mon-fri: 08:00-18:00
    sat: 09:00-13:00
  holidays:
    2026-12-25: Christmas Day
  exceptions:
    2026-12-24: 08:00-12:00
resume:
  within: 10m
  ask: false
start: welcome
nodes:
  welcome:
    branch:
      - if: holiday
        then: holiday
      - if: not open_now
        then: closed
    next: menu
  menu:
    checkpoint: true
    description: choosing a department
    gather:
      prompt: We are open. Press 1 for orders.
      num_digits: 1
    on:
      "1": orders
  orders:
    checkpoint: true
    description: giving the order number
    gather:
      prompt: Key your order number at {{{{ now.time }}}}.
    save_as: order
    next: done
  done:
    say: Thanks.
    hangup: true
  holiday:
    say: We are closed for {{{{ holiday }}}} and open again {{{{ opens_next.weekday }}}} at {{{{ opens_next.time }}}}.
    hangup: true
  closed:
    say: We are closed. We open again {{{{ opens_next.weekday }}}} at {{{{ opens_next.time }}}}.
    hangup: true
"""
CHICAGO = ZoneInfo("America/Chicago")


class Clock:
    """A clock a test sets by hand."""

    def __init__(self, when: str) -> None:
        self.now = 0.0
        self.set(when)

    def set(self, when: str) -> None:
        self.now = datetime.fromisoformat(when).replace(tzinfo=CHICAGO).timestamp()

    def __call__(self) -> float:
        return self.now


def shop_app(make_app: Callable[..., Flask], flows_dir: Path, clock: Clock) -> Flask:
    (flows_dir / "shop.yaml").write_text(SHOP_FLOW)
    return make_app(CLOCK=clock)


def dial(app: Flask) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, called=SHOP).dial()


def heard_on_a_fresh_call(app: Flask, caller: str) -> str:
    """What a new caller hears first (each call from a number of its own: no resume)."""
    answered = Call(FlaskTransport(app), AUTH_TOKEN, caller=caller, called=SHOP).dial()
    answered.hang_up()
    return answered.last_heard


def test_calls_in_and_out_of_hours_hear_what_the_schedule_says(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    clock = Clock("2026-12-21T17:59")  # a Monday
    app = shop_app(make_app, flows_dir, clock)
    assert heard_on_a_fresh_call(app, "+14155550101") == "We are open. Press 1 for orders."
    clock.set("2026-12-21T18:00")
    closed = Call(FlaskTransport(app), AUTH_TOKEN, caller="+14155550102", called=SHOP).dial()
    assert closed.last_heard == "We are closed. We open again tue at 08:00."
    assert closed.ended == "hangup"
    clock.set("2026-12-24T12:30")  # Christmas Eve closes at noon; Christmas is a holiday
    assert heard_on_a_fresh_call(app, "+14155550103") == (
        "We are closed. We open again sat at 09:00."
    )
    clock.set("2026-12-25T10:00")
    assert heard_on_a_fresh_call(app, "+14155550104") == (
        "We are closed for Christmas Day and open again sat at 09:00."
    )


def test_a_dropped_call_resumes_within_the_window_and_starts_afresh_after_it(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    clock = Clock("2026-12-22T10:00")
    app = shop_app(make_app, flows_dir, clock)
    first = dial(app).press("1")
    assert first.last_heard == "Key your order number at 10:00."
    first.hang_up()
    clock.now += 5 * 60
    back = dial(app)
    assert back.last_heard.endswith("Key your order number at 10:05.")
    back.hang_up()
    clock.now += 11 * 60
    assert dial(app).last_heard == "We are open. Press 1 for orders."


def test_the_simulator_pretends_a_time_and_calls_back_later(app: Flask, flows_dir: Path) -> None:
    (flows_dir / "shop.yaml").write_text(SHOP_FLOW)
    app.extensions["omnivoice.catalog"].refresh()
    runner = app.test_cli_runner()
    args = ["call", "--to", SHOP, "--at", "2026-12-24T11:58", "--script", "1,/hangup,4711"]
    result = runner.invoke(args=[*args, "--after", "5m"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "[calling at Thu 2026-12-24 11:58 America/Chicago]"
    assert lines[1] == "omnivoice: We are open. Press 1 for orders."
    assert lines[3] == "omnivoice: Key your order number at 11:58."
    assert lines[4] == "[call ended: caller-hangup]"
    assert lines[5] == "[5m later]"
    assert lines[6] == "[calling at Thu 2026-12-24 12:03 America/Chicago]"
    # Closed by now, but the caller was mid-order: the call resumes where it dropped.
    assert lines[7].endswith("Key your order number at 12:03.")
    assert lines[-2:] == ["omnivoice: Thanks.", "[call ended: hangup]"]
    late = runner.invoke(args=["call", "--to", SHOP, "--at", "2026-12-24T12:30-06:00"])
    assert late.output.splitlines()[1] == "omnivoice: We are closed. We open again sat at 09:00."


def test_the_simulator_refuses_a_bad_time_or_duration_and_a_pretend_time_on_a_server(
    app: Flask,
) -> None:
    runner = app.test_cli_runner()
    bad_at = runner.invoke(args=["call", "--at", "Christmas Eve", "--script", ""])
    assert bad_at.exit_code == 2
    assert "'Christmas Eve' is not a date and time such as 2026-12-24T18:00" in bad_at.output
    bad_after = runner.invoke(args=["call", "--after", "soon", "--script", ""])
    assert bad_after.exit_code == 2
    assert "'soon' is not a duration such as 5m, 2h or 90s." in bad_after.output
    remote = runner.invoke(args=["call", "--url", "http://127.0.0.1:9", "--after", "5m"])
    assert remote.exit_code == 2
    assert "a running server (--url) keeps its own clock" in remote.output

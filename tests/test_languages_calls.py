"""Whole calls through the signed Twilio front: a caller picks Spanish, an after-hours holiday."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask

from simulator.call import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

LINE = "+14155550166"
FLOW = f"""\
id: bilingual
numbers: ["{LINE}"]
language: en-US
voice: Polly.Joanna
timezone: America/Mexico_City
hours:
  weekly: {{mon-sat: 09:00-19:00}}
  holidays: {{2026-12-25: Navidad}}
messages:
  es-MX:
    welcome_back: Bienvenido de nuevo. Para seguir {{{{ where }}}}, oprima 1. Para empezar de nuevo, oprima 2.
resume: {{within: 30m, ask: true}}
start: choose
nodes:
  choose:
    gather:
      prompt: For English, press 1. Para español, oprima 2.
      num_digits: 1
    on: {{"1": hours, "2": spanish}}
  spanish:
    set: {{language: es-MX, voice: Polly.Mia}}
    next: hours
  hours:
    branch:
      - if: holiday
        then: holiday
    next: menu
  holiday:
    say: "{{% if language == 'es-MX' %}}Hoy es {{{{ holiday }}}}: estamos cerrados.{{% else %}}We are closed for {{{{ holiday }}}}.{{% endif %}}"
    hangup: true
  menu:
    checkpoint: true
    description: "{{% if language == 'es-MX' %}}en el menú{{% else %}}at the menu{{% endif %}}"
    gather:
      prompt: "{{% if language == 'es-MX' %}}Para su saldo, oprima 1.{{% else %}}For your balance, press 1.{{% endif %}}"
      input: [dtmf, speech]  # the language is what speech is recognised in
      num_digits: 1
    on: {{"1": balance}}
  balance:
    say: "{{% if language == 'es-MX' %}}Su saldo es cero.{{% else %}}Your balance is zero.{{% endif %}}"
    hangup: true
"""
MEXICO = ZoneInfo("America/Mexico_City")


def line_app(make_app: Callable[..., Flask], flows_dir: Path, when: str) -> Flask:
    (flows_dir / "bilingual.yaml").write_text(FLOW)
    moment = datetime.fromisoformat(when).replace(tzinfo=MEXICO).timestamp()
    return make_app(CLOCK=lambda: moment)


def dial(app: Flask) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, called=LINE).dial()


def says(call: Call) -> list[tuple[str, str | None, str | None]]:
    """The <Say> elements of the last TwiML document: text, voice, language."""
    return [
        ((say.text or "").strip(), say.get("voice"), say.get("language"))
        for say in call.last.iter("Say")
    ]


def test_a_caller_who_picks_spanish_hears_spanish_twiml_and_is_welcomed_back_in_spanish(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = line_app(make_app, flows_dir, "2026-12-22T10:00")
    call = dial(app)
    assert says(call) == [
        ("For English, press 1. Para español, oprima 2.", "Polly.Joanna", "en-US")
    ]
    call.press("2")
    assert says(call) == [("Para su saldo, oprima 1.", "Polly.Mia", "es-MX")]
    gather = call.last.find("Gather")
    assert gather is not None and gather.get("language") == "es-MX"
    call.hang_up()
    back = dial(app)
    assert says(back) == [
        (
            "Bienvenido de nuevo. Para seguir en el menú, oprima 1. Para empezar de nuevo, oprima 2.",
            "Polly.Mia",
            "es-MX",
        )
    ]
    back.press("1")
    back.press("1")
    assert back.heard[-1] == "Su saldo es cero."
    assert back.ended == "hangup"


def test_on_a_holiday_each_caller_hears_it_in_their_own_language(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = line_app(make_app, flows_dir, "2026-12-25T10:00")
    spanish = dial(app).press("2")
    assert says(spanish) == [("Hoy es Navidad: estamos cerrados.", "Polly.Mia", "es-MX")]
    assert spanish.ended == "hangup"
    english = Call(FlaskTransport(app), AUTH_TOKEN, caller="+14155550111", called=LINE)
    english.dial().press("1")
    assert says(english) == [("We are closed for Navidad.", "Polly.Joanna", "en-US")]


def test_a_taken_over_call_and_a_returning_caller_hear_the_flow_wording(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    path = flows_dir / "airline.yaml"
    text = path.read_text().replace("  ask: true", "  ask: true\n  concurrent: takeover")
    words = (
        "default: true\nvoice: Polly.Amy\nlanguage: en-GB\nmessages:\n"
        "  superseded: This call carries on elsewhere. Cheerio.\n"
        "  en-GB:\n    welcome_back: Hello again. You were {{ where }}. Press 1 to carry on.\n"
    )
    path.write_text(text.replace("default: true\n", words))
    app = make_app()
    first = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    first.press("1")
    second = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    assert says(second) == [
        (
            "Hello again. You were giving us your confirmation code. Press 1 to carry on.",
            "Polly.Amy",
            "en-GB",
        )
    ]
    first.press("123456")
    assert first.ended == "hangup"
    assert says(first) == [("This call carries on elsewhere. Cheerio.", "Polly.Amy", "en-GB")]

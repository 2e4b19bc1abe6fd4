"""A flow's own words for what the engine says by itself: the apology a call hears when
something fails (spoken in the flow's language, through the signed front with Redis down) and
a queued caller's hold loop, per language."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from context.redis_client import connect
from ivr import engine
from ivr.flow import load_flow_text
from ivr.turn import Say
from simulator.call import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, on_topologies
from webhooks.twiml import APOLOGY

LINE = "+14155550177"
FLOW = f"""\
id: lineas
numbers: ["{LINE}"]
language: es-MX
messages:
  apology: Lo sentimos, tenemos problemas en este momento.
  queue_hold: Gracias por esperar. Usted es el número {{{{ queue.position }}}} en la fila.
  en:
    queue_hold: Thanks for holding, you are number {{{{ queue.position }}}}.
start: menu
nodes:
  menu:
    gather: {{prompt: Oprima 1., num_digits: 1}}
    on: {{"1": agent}}
  agent:
    transfer: {{queue: ventas}}
"""

SINGLE = on_topologies("single")  # Redis is down on purpose


@pytest.fixture
def down(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "lineas.yaml").write_text(FLOW)
    dead = connect("redis://127.0.0.1:1/0", timeout=0.2, dev_mode=False)  # nothing listens
    return make_app(REDIS_CLIENT=dead, FALLBACK_NUMBER="+14155550999")


@SINGLE
def test_a_failed_call_hears_the_flow_s_apology_in_its_language(down: Flask) -> None:
    call = Call(FlaskTransport(down), AUTH_TOKEN, called=LINE).dial()
    says = call.last.findall("Say")
    assert says[0].text == "Lo sentimos, tenemos problemas en este momento."
    assert says[0].get("language") == "es-MX"
    assert call.ended == "dial"  # then a person, as configured
    assert len(says) == 1  # the built-in English sentences are left out


@SINGLE
def test_another_number_keeps_the_built_in_apology(down: Flask) -> None:
    call = Call(FlaskTransport(down), AUTH_TOKEN).dial()  # the demo flow's number
    assert call.last_heard.startswith(APOLOGY)


def test_the_hold_loop_speaks_the_flow_s_words_per_language() -> None:
    flow = load_flow_text(textwrap.dedent(FLOW), "lineas.yaml", "lineas")
    [spanish] = engine.hold_prompt(flow, "agent", {"position": 3})
    assert isinstance(spanish, Say)
    assert spanish.text == "Gracias por esperar. Usted es el número 3 en la fila."
    english = textwrap.dedent(FLOW).replace("language: es-MX", "language: en-US")
    [said] = engine.hold_prompt(load_flow_text(english, "l.yaml", "l"), "agent", {"position": 2})
    assert isinstance(said, Say) and said.text == "Thanks for holding, you are number 2."


def test_a_hold_sentence_naming_what_twilio_did_not_send_falls_back_to_the_built_in() -> None:
    flow = load_flow_text(textwrap.dedent(FLOW), "lineas.yaml", "lineas")
    [said] = engine.hold_prompt(flow, "agent", {"position": None})
    assert isinstance(said, Say)
    assert said.text == "Thank you for waiting. Someone will be with you shortly."

"""Data dips with form-encoded bodies, and a failed dip's status in a prompt.

``form:`` sends ``name: value`` pairs as ``application/x-www-form-urlencoded`` (values are
templates; booleans go as ``true``/``false``), beside ``json:`` for JSON back ends. A dip that
failed without an HTTP status (a timeout, a refused connection) has no ``http_error.status``
to speak: it is empty text, never the word "None".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from flask import Flask

from ivr import templates
from ivr.errors import FlowLoadError
from ivr.flow import load_flow_text
from ivr.schema import flow_json_schema
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_backend import Backend
from tests.support_twilio import free_port

NUMBER = "+14155550146"
FLOW = """\
id: forms
numbers: ["{number}"]
start: ask
nodes:
  ask:
    gather: {{prompt: Your account?, num_digits: 4}}
    save_as: account
    next: lookup
  lookup:
    http:
      url: "{url}"
      method: POST
      form:
        account: "{{{{ account }}}}"
        vip: true
        note: "a&b=c d"
        empty:
      save_as: found
      timeout: 1s
    on_error: failed
    say: "Hello {{{{ found.name }}}}."
    hangup: true
  failed:
    say: "Sorry, error {{{{ http_error.status }}}}, {{{{ http_error.error }}}}."
    hangup: true
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def dial(make_app: Callable[..., Flask], flows_dir: Path) -> Callable[[str], Call]:
    """Call the form flow posting to ``url``; the caller keys account 1234."""

    def run(url: str) -> Call:
        (flows_dir / "forms.yaml").write_text(FLOW.format(number=NUMBER, url=url))
        app = make_app()
        call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER).dial()
        call.press("1234")
        app.extensions["omnivoice.calls"].fetcher.session.close()
        return call

    return run


def test_a_form_is_posted_form_encoded(dial: Callable[[str], Call], backend: Backend) -> None:
    call = dial(f"{backend.url}/customer")
    assert call.last_heard == "Hello Ada Lovelace."
    [request] = backend.requests
    assert request["method"] == "POST"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert "idempotency-key" in headers  # not GET: once per call step, as for json
    fields = parse_qs(request["body"].decode(), keep_blank_values=True)
    assert fields == {"account": ["1234"], "vip": ["true"], "note": ["a&b=c d"], "empty": [""]}


def test_a_dip_with_no_status_never_speaks_none(dial: Callable[[str], Call]) -> None:
    call = dial(f"http://127.0.0.1:{free_port()}/customer")  # nothing listens: no HTTP status
    assert call.last_heard.startswith("Sorry, error , request failed")
    assert "None" not in call.last_heard


def test_a_failed_dip_with_a_status_speaks_it(
    dial: Callable[[str], Call], backend: Backend
) -> None:
    call = dial(f"{backend.url}/not-found")
    assert call.last_heard == "Sorry, error 404, HTTP 404."


# ---- the schema -----------------------------------------------------------------------------
def refused(http: str) -> list[str]:
    text = f"start: a\nnodes:\n  a:\n    http: {http}\n    next: b\n  b: {{hangup: true}}\n"
    with pytest.raises(FlowLoadError) as caught:
        load_flow_text(text, "f.yaml", "f")
    return [str(p) for p in caught.value.problems]


def test_form_and_json_together_are_refused() -> None:
    [problem] = refused('{url: "https://x.example", method: POST, json: {a: 1}, form: {a: 1}}')
    assert problem.startswith("f.yaml:4:11: error: ")
    assert "json or form, not both" in problem


def test_a_form_with_get_is_refused_with_the_fix() -> None:
    [problem] = refused('{url: "https://x.example", form: {a: 1}}')
    assert "add method: POST" in problem


def test_a_form_value_must_be_plain() -> None:
    [problem] = refused('{url: "https://x.example", method: POST, form: {a: {b: 1}}}')
    assert problem.startswith("f.yaml:4:")
    assert "form.a" in problem


def test_a_form_template_error_is_located() -> None:
    [problem] = refused('{url: "https://x.example", method: POST, form: {a: "{{ x"}}')
    assert problem.startswith("f.yaml:4:")


def test_the_json_schema_has_form() -> None:
    spec = flow_json_schema()["$defs"]["HttpSpec"]["properties"]
    assert "form" in spec and "json" in spec


# ---- None in templates ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["Gate {{ gate }}.", "Gate {{ g.gate }}.", "Gate {{ g['gate'] }}."],
)
def test_none_is_empty_text_in_a_prompt(text: str) -> None:
    scope = {"gate": None, "g": {"gate": None}}
    assert templates.render(templates.compile_template(text), scope) == "Gate ."


def test_none_is_empty_in_a_url() -> None:
    url = templates.compile_url("https://x.example/{{ gate }}?g={{ g.gate }}")
    assert templates.render(url, {"gate": None, "g": {"gate": None}}) == "https://x.example/?g="

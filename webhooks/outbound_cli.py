"""``flask --app app outbound ...``: reach a customer first from the command line.

``outbound call TO --flow FLOW [--var NAME=VALUE ...] [--purpose service]`` places a call that
runs FLOW; ``outbound sms TO --body TEXT`` sends a text. The same checks as ``POST
/api/outbound`` apply (consent, quiet hours, pacing), and a refusal exits 1 with its reason.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from conversation.outbound import OutboundRefused, OutboundRequest, OutboundService

outbound = AppGroup("outbound", help="Place outbound calls and texts.")


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        found[name.strip()] = value
    return found


def _place(request: OutboundRequest) -> None:
    service: OutboundService = current_app.extensions["omnivoice.outbound"]
    try:
        placed = service.place(request)
    except OutboundRefused as refused:
        raise click.ClickException(f"refused ({refused.status}): {refused.reason}") from None
    click.echo(f"{placed.channel} to {placed.to}: {placed.sid}")


@outbound.command("call")
@click.argument("to")
@click.option("--flow", required=True, help="The flow the call runs.")
@click.option("--var", "pairs", multiple=True, help="A flow variable, NAME=VALUE (repeatable).")
@click.option("--purpose", default="service", show_default=True, help="Why we call (consent).")
def call(to: str, flow: str, pairs: tuple[str, ...], purpose: str) -> None:
    """Call TO and run FLOW when they answer."""
    _place(OutboundRequest(to=to, flow=flow, variables=_variables(pairs), purpose=purpose))


@outbound.command("sms")
@click.argument("to")
@click.option("--body", required=True, help="The text to send.")
@click.option("--purpose", default="service", show_default=True, help="Why we text (consent).")
def sms(to: str, body: str, purpose: str) -> None:
    """Send TO a text."""
    _place(OutboundRequest(to=to, channel="sms", body=body, purpose=purpose))

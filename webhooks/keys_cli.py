"""``flask --app app keys ...``: keys that seal sensitive session values at rest.

``keys new`` prints a fresh key for ``SENSITIVE_DATA_KEYS``; ``keys check`` says whether the
configured keys are usable and which one seals, without printing any key.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from context.sealing import KEYS_SETTING, Sealer, new_key
from ivr.errors import ConfigError

keys = AppGroup("keys", help="Make and check the keys that seal sensitive session values.")


@keys.command("new")
def new() -> None:
    """Print a new key; put it first in SENSITIVE_DATA_KEYS to rotate."""
    click.echo(new_key())


@keys.command("check")
def check() -> None:
    """Check the configured SENSITIVE_DATA_KEYS (exit 1 when one is unusable)."""
    configured = current_app.config.get(KEYS_SETTING) or ""
    count = len([part for part in configured.split(",") if part.strip()])
    try:
        Sealer.from_settings(configured, current_app.config["SECRET_KEY"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if count == 0:
        click.echo(f"{KEYS_SETTING} is not set: sealing with a key derived from SECRET_KEY")
    else:
        click.echo(f"{count} key(s) usable; the first seals, all of them open")

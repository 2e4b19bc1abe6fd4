"""Settings from the environment (app.settings_from_env): a bad value stops the app at start.

Each error names the variable and the value it held, so the log line that stopped a deploy says
what to fix; ``SECRET_KEY`` is required outside dev mode, except by command-line commands.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from flask import Flask

from app import settings_from_env
from ivr.errors import ConfigError, OmnivoiceError
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_TIMEOUT", "abc"),
        ("REDIS_TIMEOUT", "0"),
        ("REDIS_TIMEOUT", "nan"),
        ("SESSION_TTL", "-5"),
        ("SESSION_TTL", "1.5"),
        ("TRUST_PROXY", "x"),
        ("TRUST_PROXY", "-1"),
        ("FLOW_RELOAD_SECONDS", "soon"),
        ("FLOW_RELOAD_SECONDS", "inf"),
        ("FLOW_MAX_BYTES", "0"),
        ("FLOW_MAX_BYTES", "1MiB"),
        ("WEBHOOK_BUDGET_SECONDS", "0"),
        ("WEBHOOK_BUDGET_SECONDS", "20"),
        ("RESUME_CODE_FAILURES_PER_MINUTE", "0"),
        ("RESUME_CODE_FAILURES_PER_MINUTE", "many"),
        ("REDIS_KEY_PREFIX", "omni{voice}"),
        ("REDIS_KEY_PREFIX", "omni}"),
        ("REDIS_KEY_PREFIX", ""),
        ("OMNIVOICE_DEV", "maybe"),
        ("DEMO_API", "sure"),
        ("EVENT_STREAM_SHARDS", "0"),
        ("EVENT_STREAM_SHARDS", "eight"),
        ("HANDOFF_TTL", "0"),
        ("HISTORY_WRITER_NICE", "20"),
        ("HISTORY_WRITER_NICE", "-1"),
        ("HISTORY_WRITER_NICE", "low"),
        ("TASKROUTER_WORKFLOW_SID", "WW123"),
        ("TASKROUTER_WORKFLOW_SID", "AC" + "0" * 32),
    ],
)
def test_a_bad_setting_is_refused_with_its_name_and_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_env({name: value})
    assert raised.value.name == name
    assert raised.value.value == value
    assert f"{name}={value!r}" in str(raised.value)
    assert isinstance(raised.value, OmnivoiceError)


def test_a_brace_in_the_key_prefix_is_refused_because_of_cluster_hash_tags() -> None:
    with pytest.raises(ConfigError, match="Redis Cluster hash tag"):
        settings_from_env({"REDIS_KEY_PREFIX": "a{b"})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REDIS_TIMEOUT", " 1.5 ", 1.5),
        ("FLOW_RELOAD_SECONDS", "-1", -1.0),  # negative: never reload
        ("FLOW_MAX_BYTES", "2097152", 2097152),
        ("TRUST_PROXY", "0", 0),
        ("OMNIVOICE_DEV", "off", False),
        ("OMNIVOICE_DEV", "Yes", True),
        ("TASKROUTER_WORKFLOW_SID", " WW" + "a" * 32 + " ", "WW" + "a" * 32),
        ("TASKROUTER_WORKFLOW_SID", "", None),
    ],
)
def test_good_values_are_read(name: str, value: str, expected: object) -> None:
    key = "DEV_MODE" if name == "OMNIVOICE_DEV" else name
    assert settings_from_env({name: value})[key] == expected


def test_the_defaults_are_all_usable() -> None:
    settings = settings_from_env({})
    assert settings["SESSION_TTL"] == 86400
    assert settings["FLOW_MAX_BYTES"] == 1024 * 1024
    assert settings["SECRET_KEY"] is None


def test_without_secret_key_a_server_refuses_to_start(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(SECRET_KEY=None, DEV_MODE=False)
    message = str(raised.value)
    assert message.startswith("SECRET_KEY is not set")
    assert "shared by all workers" in message
    assert "secrets.token_hex(32)" in message


def test_dev_mode_makes_up_a_secret_key_and_says_so(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="omnivoice"):
        first = make_app(SECRET_KEY=None, DEV_MODE=True)
        second = make_app(SECRET_KEY=None, DEV_MODE=True)
    assert len(first.secret_key) >= 64
    assert first.secret_key != second.secret_key
    assert "SECRET_KEY is not set" in caplog.text


def test_a_configured_secret_key_is_used(make_app: Callable[..., Flask]) -> None:
    assert make_app(SECRET_KEY="s" * 64).secret_key == "s" * 64


def _without_secret(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "OMNIVOICE_DEV")}
    return {**env, **extra}


def test_command_line_commands_work_without_a_secret_key() -> None:
    flask = [sys.executable, "-m", "flask", "--app", "app", "flows", "validate"]
    done = subprocess.run(
        flask, cwd=REPO, env=_without_secret(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "ok: airline" in done.stdout


def test_importing_the_app_without_a_secret_key_fails_with_the_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=REPO,
        env=_without_secret(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ConfigError: SECRET_KEY is not set" in done.stderr

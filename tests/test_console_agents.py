"""``flask --app app agents ...``: agent accounts, on SQLite and PostgreSQL.

The commands run through Flask's CLI runner (standard input piped), and once in a subprocess on
a pseudo-terminal, where the password is asked twice. Passwords are stored only as hashes.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.security import check_password_hash

from console.agents import AgentDirectory, directory_of
from context.history import database
from context.history.models import Agent
from tests.conftest import REPO, app_for_tests
from tests.support_console import FAST_HASH, PASSWORD, close_history
from tests.test_history import postgres_url  # noqa: F401  (the fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    engine = database.open_engine(url)
    database.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def app(flows_dir: Path, history_url: str) -> Iterator[Flask]:
    built = app_for_tests(
        flows_dir,
        DATABASE_URL=history_url,
        AGENT_PASSWORD_METHOD=FAST_HASH,
        REDIS_KEY_PREFIX=f"test-{uuid.uuid4().hex[:12]}",
    )
    yield built
    close_history(built)


def agents(app: Flask, *args: str, password: str | None = PASSWORD) -> tuple[int, str]:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["agents", *args], input=None if password is None else password + "\n"
    )
    return result.exit_code, result.output


def stored(app: Flask, name: str) -> Agent:
    engine = database.open_engine(app.config["DATABASE_URL"])
    try:
        with database.sessions(engine)() as db:
            return db.scalars(select(Agent).where(Agent.name == name)).one()
    finally:
        engine.dispose()


def test_add_stores_a_hash_and_the_agents_details(app: Flask) -> None:
    code, output = agents(
        app, "add", "ann", "--display-name", "Ann Lee", "--phone", "+1 415 555 0188",
        "--supervisor",
    )  # fmt: skip
    assert (code, output.strip()) == (0, "agent ann added")
    agent = stored(app, "ann")
    assert agent.password_hash != PASSWORD and PASSWORD not in agent.password_hash
    assert check_password_hash(agent.password_hash, PASSWORD)
    assert (agent.display_name, agent.phone, agent.supervisor, agent.disabled) == (
        "Ann Lee", "+14155550188", True, False,
    )  # fmt: skip
    code, output = agents(app, "list", password=None)
    assert code == 0
    assert output.splitlines() == ["ann\tAnn Lee\t+14155550188\tsupervisor\tactive"]


def test_a_duplicate_name_is_a_clear_error(app: Flask) -> None:
    assert agents(app, "add", "ann")[0] == 0
    code, output = agents(app, "add", "ann", "--client", "ann_desk")
    assert code == 1
    assert "an agent named 'ann' already exists" in output
    assert stored(app, "ann").client is None  # the first one is untouched


@pytest.mark.parametrize(
    ("args", "password", "says"),
    [
        (["add", "ann"], "short", "at least 10 characters"),
        (["add", "ann"], "", "at least 10 characters"),
        (["add", "ann", "--phone", "12"], PASSWORD, "not a valid phone number"),
        (["add", "a b"], PASSWORD, "cannot be an agent name"),
        (["disable", "nobody"], None, "there is no agent named 'nobody'"),
        (["passwd", "nobody"], PASSWORD, "there is no agent named 'nobody'"),
    ],
)
def test_bad_input_gets_one_sentence_and_exit_1(
    app: Flask, args: list[str], password: str | None, says: str
) -> None:
    code, output = agents(app, *args, password=password)
    assert code == 1
    assert says in output
    assert directory_of(app).all() == []


def test_disable_and_passwd(app: Flask) -> None:
    agents(app, "add", "ann")
    directory = directory_of(app)
    assert agents(app, "passwd", "ann", password="a brand new password")[0] == 0
    assert directory.authenticate("ann", PASSWORD) is None
    assert directory.authenticate("ann", "a brand new password") is not None
    assert agents(app, "passwd", "ann", password="short")[0] == 1
    assert directory.authenticate("ann", "a brand new password") is not None
    assert agents(app, "disable", "ann", password=None)[0] == 0
    assert directory.authenticate("ann", "a brand new password") is None
    assert agents(app, "list", password=None)[1].split("\t")[-1].strip() == "disabled"


def test_an_unknown_name_costs_a_hash_check_too(app: Flask) -> None:
    slow = AgentDirectory(app.extensions["omnivoice.console.history"], "pbkdf2:sha256:200000")
    slow.add("ann", PASSWORD)
    slow.authenticate("nobody", "warm up the dummy hash")
    started = time.perf_counter()
    assert slow.authenticate("ann", "not the password") is None
    known = time.perf_counter() - started
    started = time.perf_counter()
    assert slow.authenticate("nobody", "not the password") is None
    unknown = time.perf_counter() - started
    assert unknown > known / 3, (known, unknown)  # both did the slow hash, not one


def test_at_a_terminal_the_password_is_asked_twice(flows_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    database.upgrade(database.open_engine(url))
    env = {
        **{k: v for k, v in os.environ.items() if k != "OMNIVOICE_DEV"},
        "DATABASE_URL": url, "FLOWS_DIR": str(flows_dir), "AGENT_PASSWORD_METHOD": FAST_HASH,
        "LOG_LEVEL": "ERROR", "FLOW_RELOAD_SECONDS": "0",
    }  # fmt: skip
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "agents", "add", "ann"],
        cwd=REPO, env=env, stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    shown = b""

    def read_until(text: bytes) -> None:
        nonlocal shown
        deadline = time.monotonic() + 30
        while text not in shown and time.monotonic() < deadline:
            shown += os.read(leader, 1024)

    read_until(b"Password:")
    os.write(leader, (PASSWORD + "\n").encode())
    read_until(b"Repeat for confirmation:")
    os.write(leader, (PASSWORD + "\n").encode())
    assert process.wait(timeout=30) == 0
    read_until(b"agent ann added")
    os.close(leader)
    assert PASSWORD.encode() not in shown  # not echoed
    engine = database.open_engine(url)
    with database.sessions(engine)() as db:
        assert db.scalars(select(Agent.name)).all() == ["ann"]
    engine.dispose()

"""Store errors in the logs: a real Redis refuses, and no caller number appears in full.

A private ``redis-server`` is made to answer each way a save or load can be refused: out of
memory (``maxmemory 1`` with ``noeviction``), read-only (it becomes a replica), and a plain
error reply (an event stream key holding another type). The caller hears the spoken fallback,
the log names the session by its masked key, and no record holds the number: not its message,
its arguments, its extra fields, its exception text or its traceback (redis-py copies the failed
command, keys and values, into a pipeline's error).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from redis.exceptions import RedisClusterException

from context.event_stream import EventStream
from context.keys import Keys
from context.redis_errors import describe
from simulator import Call, FlaskTransport
from tests import support_topologies
from tests.conftest import AUTH_TOKEN, REPO, app_for_tests
from tests.support_topologies import free_ports, start_server
from tests.support_twilio import CALLED, form, post, spoken, twiml
from webhooks import twiml as twiml_module

CALLER = "+14155557391"
NATIONAL = CALLER.removeprefix("+1")
PREFIX = "masked"
CALL_SID = "CA" + "9" * 32

pytestmark = pytest.mark.skipif(
    not support_topologies.have_redis_server(), reason="needs redis-server to make refuse"
)


@pytest.fixture(scope="module")
def server() -> Iterator[support_topologies.LocalServer]:
    started = start_server()
    yield started
    started.stop()


@pytest.fixture
def connection(server: support_topologies.LocalServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    client.flushall()
    yield client
    # Back to a writable master with room, whatever the test did to it.
    client.execute_command("REPLICAOF", "NO", "ONE")
    client.config_set("maxmemory", "0")
    client.flushall()
    client.close()


@pytest.fixture
def app(connection: redis.Redis, tmp_path: Path) -> Flask:
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "flows", flows)
    return app_for_tests(flows, REDIS_CLIENT=connection, REDIS_KEY_PREFIX=PREFIX)


def out_of_memory(connection: redis.Redis) -> None:
    connection.config_set("maxmemory-policy", "noeviction")
    connection.config_set("maxmemory", "1")


def read_only(connection: redis.Redis) -> None:
    # A replica of a master that is not there keeps its data and refuses every write.
    [port] = free_ports(1)
    connection.execute_command("REPLICAOF", support_topologies.HOST, str(port))


def stream_of_another_type(connection: redis.Redis) -> None:
    # The save script appends the turn's events to the caller's stream shard: WRONGTYPE.
    key = EventStream(connection, Keys(PREFIX)).key_for(CALLER)
    connection.set(key, "not a stream")


def everything_logged(records: list[logging.LogRecord]) -> str:
    """Every record's message, arguments, extra fields, exception text and traceback."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.__dict__))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def assert_nothing_shows_the_number(caplog: pytest.LogCaptureFixture) -> str:
    text = everything_logged(caplog.records)
    assert NATIONAL not in text, "a caller's number is in the log"
    return text


@pytest.mark.parametrize("refuse", [out_of_memory, read_only, stream_of_another_type])
def test_a_first_save_refused_logs_only_the_masked_key(
    app: Flask, connection: redis.Redis, caplog: pytest.LogCaptureFixture, refuse: object
) -> None:
    refuse(connection)  # type: ignore[operator]
    with caplog.at_level(logging.DEBUG):
        root = twiml(post(app.test_client(), "/voice", form(CALL_SID, From=CALLER, To=CALLED)))
    assert spoken(root)[0] == twiml_module.APOLOGY
    text = assert_nothing_shows_the_number(caplog)
    assert f"{PREFIX}:{{***{CALLER[-4:]}}}:session" in text


@pytest.mark.parametrize("refuse", [out_of_memory, read_only, stream_of_another_type])
def test_a_later_save_refused_logs_only_the_masked_key(
    app: Flask, connection: redis.Redis, caplog: pytest.LogCaptureFixture, refuse: object
) -> None:
    call = Call(FlaskTransport(app), AUTH_TOKEN, caller=CALLER).dial()  # its flow is published
    refuse(connection)  # type: ignore[operator]
    with caplog.at_level(logging.DEBUG):
        call.press("1")
    assert call.last_heard.startswith(twiml_module.APOLOGY)
    text = assert_nothing_shows_the_number(caplog)
    assert f"{PREFIX}:{{***{CALLER[-4:]}}}:session" in text


def test_the_events_of_a_cluster_save_lost_to_a_refusal_are_logged_masked(
    connection: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # On a cluster the events follow the save in a pipeline of their own.
    stream = EventStream(connection, Keys(PREFIX))
    stream_of_another_type(connection)
    event = stream.encode({"caller": CALLER, "event": "input", "data": {"value": CALLER}})
    with caplog.at_level(logging.DEBUG):
        assert stream.append(CALLER, [event]) is False
    assert "lost 1 event(s)" in assert_nothing_shows_the_number(caplog)


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError(
            f"Command # 1 (EVALSHA 0123 4 {PREFIX}:{{{CALLER}}}:session ...) of pipeline caused "
            "error: OOM command not allowed when used memory > 'maxmemory'."
        ),
        RedisClusterException(
            "No way to dispatch this command to Redis Cluster. Missing key.\nYou can execute the "
            f"command by specifying target nodes.\nCommand: ('XADD', 'e', '{CALLER}')"
        ),
        RedisClusterException(f"Invalid args in command: ('EVALSHA', '{CALLER}')"),
        RedisClusterException(f"No targets were found to execute ('GET', '{CALLER}') command on"),
        redis.ConnectionError(f"Error 111 reading {PREFIX}:{{{CALLER}}}:session"),
    ],
    ids=["pipeline", "no key", "invalid args", "no targets", "a key in braces"],
)
def test_redis_py_s_copies_of_a_command_are_left_out(error: Exception) -> None:
    described = describe(error)
    assert NATIONAL not in described
    assert described.startswith(f"{type(error).__name__}: ")

"""The session store's direct lane to Redis (:mod:`context.redis_direct`), on a real Redis.

It must behave as the client it stands in for: the same script replies and error replies, one retry
on a fresh connection after a connection error, a timeout raised (and its connection never
reused), connections closed with the client, and none shared across a fork.
"""

from __future__ import annotations

import os
import socket
import time

import fakeredis
import pytest
import redis

from context import redis_direct
from context.redis_client import connect
from context.redis_direct import DirectCommands, commands_for
from tests.conftest import REDIS_URL

STALL = "local t = redis.call('TIME'); while tonumber(redis.call('TIME')[1]) < t[1] + 1 do end"


def client_id(send: DirectCommands) -> int:
    return int(send("CLIENT", "ID"))


@pytest.fixture
def client() -> redis.Redis:
    made = connect(REDIS_URL, timeout=0.5, dev_mode=False)
    yield made
    made.close()


def test_replies_come_back_as_the_client_gives_them_on_one_kept_connection(
    client: redis.Redis,
) -> None:
    send = DirectCommands(client.connection_pool)
    key = f"direct-{os.getpid()}-{time.time_ns()}"
    try:
        script = "redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return {1, 'two', false, ARGV[1]}"
        assert send("EVAL", script, 1, key, "v") == [1, b"two", None, b"v"]
        assert send("EVAL", script, 1, key, "v") == client.execute_command(
            "EVAL", script, 1, key, "v"
        )
        assert send("GET", key) == client.get(key) == b"v"
        first = client_id(send)
        assert all(client_id(send) == first for _ in range(5))  # the same connection each time
    finally:
        client.delete(key)


def test_an_error_reply_is_raised_and_leaves_the_connection_usable(client: redis.Redis) -> None:
    send = DirectCommands(client.connection_pool)
    first = client_id(send)
    with pytest.raises(redis.exceptions.NoScriptError):
        send("EVALSHA", "0" * 40, 0)
    with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
        send("GET")
    assert client_id(send) == first


def test_a_connection_redis_dropped_is_replaced_by_the_one_retry(client: redis.Redis) -> None:
    send = DirectCommands(client.connection_pool)
    first = client_id(send)
    client.execute_command("CLIENT", "KILL", "ID", first)
    assert send("PING") == b"PONG"  # sent again on a fresh connection
    assert client_id(send) != first


def test_redis_down_raises_the_clients_connection_error(unused_port: int) -> None:
    down = connect(f"redis://127.0.0.1:{unused_port}/0", timeout=0.2, dev_mode=False)
    send = DirectCommands(down.connection_pool)
    with pytest.raises(redis.exceptions.ConnectionError):
        send("PING")
    with pytest.raises(redis.exceptions.ConnectionError):
        down.execute_command("PING")  # the same error the client itself raises
    down.close()


def test_a_timeout_is_raised_and_its_connection_is_not_used_again(client: redis.Redis) -> None:
    stalled = connect(REDIS_URL, timeout=0.2, dev_mode=False)
    send = DirectCommands(stalled.connection_pool)
    first = client_id(send)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        send("EVAL", STALL, 0)  # sent twice (the retry), each times out
    assert time.monotonic() - started < 1.5
    time.sleep(2.5)  # the stalled scripts end
    assert client_id(send) != first  # never a connection with a reply still to come
    stalled.close()


def test_closing_the_client_closes_the_lanes_connections(client: redis.Redis) -> None:
    send = DirectCommands(client.connection_pool)
    mine = client_id(send)
    client.close()
    with redis.Redis.from_url(REDIS_URL) as other:
        listed = other.execute_command("CLIENT", "LIST").decode()
    assert f"id={mine} " not in listed
    assert send("PING") == b"PONG"  # and it connects again when asked


def test_a_forked_child_makes_connections_of_its_own(client: redis.Redis) -> None:
    send = DirectCommands(client.connection_pool)
    parent = client_id(send)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        try:
            os.write(write, str(client_id(send)).encode())
        finally:
            os._exit(0)
    os.close(write)
    theirs = int(os.read(read, 64))
    os.close(read)
    os.waitpid(child, 0)
    assert theirs != parent
    assert client_id(send) == parent  # the parent's connection is still its own


def test_only_a_plain_client_gets_the_direct_lane_and_a_lazy_cluster_stays_lazy() -> None:
    plain = connect(REDIS_URL, timeout=0.5, dev_mode=False)
    assert isinstance(commands_for(plain), DirectCommands)
    plain.close()
    embedded = fakeredis.FakeRedis()
    send = commands_for(embedded)
    assert not isinstance(send, DirectCommands) and send("PING") is True
    lazy = connect("redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout=0.2, dev_mode=False)
    send = commands_for(lazy)
    assert not isinstance(send, DirectCommands)
    assert not lazy.built  # type: ignore[attr-defined]  # nothing connected yet
    with pytest.raises(redis.exceptions.RedisError):
        send("PING")  # it connects (and fails) only when a command is sent


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "{+14155550123}:k", "{x}", 0, "José ☎", b"\x00\xffraw", 1.5, -3),
        ("SET", "key", ""),
    ],
    ids=["a save's kinds of argument", "an empty value"],
)
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(
    client: redis.Redis, args: tuple[object, ...]
) -> None:
    sent: list[bytes] = []
    connection = client.connection_pool.get_connection()
    try:
        connection.send_packed_command = lambda packed, check_health=True: sent.append(  # type: ignore[method-assign]
            b"".join(packed)
        )
        redis_direct._send(connection, args)
        assert sent == [b"".join(connection.pack_command(*args))]
    finally:
        client.connection_pool.release(connection)


def test_a_command_named_in_two_words_is_split_as_redis_py_splits_it(client: redis.Redis) -> None:
    send = DirectCommands(client.connection_pool)
    assert send("SCRIPT EXISTS", "0" * 40) == [0]
    assert send(b"CLIENT ID") == client_id(send)  # bytes too, on the same kept connection

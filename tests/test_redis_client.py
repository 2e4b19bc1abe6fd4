"""Clients from ``REDIS_URL``: lazy, fast to give up, and telling their topology."""

from __future__ import annotations

import time
from collections.abc import Callable

import fakeredis
import pytest
import redis
from flask import Flask
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.sentinel import MasterNotFoundError

from context.redis_client import LazyCluster, Topology, connect, topology_of
from context.redis_errors import STORE_UNAVAILABLE, is_store_unavailable
from ivr.errors import ConfigError
from tests.conftest import on_topologies
from tests.support_twilio import form, free_port, post, twiml

FALLBACK = "+14155550999"


def test_no_url_is_the_embedded_stand_in() -> None:
    client = connect(None, dev_mode=True)
    assert isinstance(client, fakeredis.FakeRedis)
    assert topology_of(client) is Topology.SINGLE


@pytest.mark.parametrize(
    ("url", "topology"),
    [
        ("redis://127.0.0.1:1/0", Topology.SINGLE),
        ("redis+cluster://127.0.0.1:1,127.0.0.1:2", Topology.CLUSTER),
        ("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc", Topology.SENTINEL),
    ],
)
def test_clients_connect_nothing_until_the_first_command(url: str, topology: Topology) -> None:
    started = time.monotonic()
    client = connect(url, timeout=0.2, dev_mode=False)
    assert time.monotonic() - started < 0.1
    assert topology_of(client) is topology
    if isinstance(client, LazyCluster):
        assert not client.built
    with pytest.raises(STORE_UNAVAILABLE):
        client.get("anything")
    assert time.monotonic() - started < 2


def test_a_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigError, match="REDIS_URL='redis\\+cluster://:\\*\\*\\*@a:x' is not usable"
    ):
        connect("redis+cluster://:pw@a:x", dev_mode=False)


def test_a_lazy_cluster_serves_once_built(redis_cluster_url: str) -> None:
    client = connect(redis_cluster_url, timeout=0.5, dev_mode=False)
    assert isinstance(client, LazyCluster)
    assert client.set("omnivoice-test:{lazy}", "1", ex=5)
    assert client.built and isinstance(client.client, RedisCluster)
    assert topology_of(client.client) is Topology.CLUSTER
    client.close()


@on_topologies("single")  # the app builds its own client from the URL
def test_the_app_starts_and_apologises_fast_with_a_dead_cluster(
    make_app: Callable[..., Flask],
) -> None:
    dead = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    app = make_app(REDIS_CLIENT=None, REDIS_URL=dead, REDIS_TIMEOUT=0.2, FALLBACK_NUMBER=FALLBACK)
    assert app.test_cli_runner().invoke(args=["flows", "validate"]).exit_code == 0
    client = app.test_client()
    started = time.monotonic()
    root = twiml(post(client, "/voice", form()))
    assert time.monotonic() - started < 2.0
    assert root.find("Dial") is not None
    assert client.get("/healthz").status_code == 503


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("slow"),
        ConnectionResetError("reset"),
        ClusterDownError("The cluster is down"),
        ReadOnlyError("You can't write against a read only replica."),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        MasterNotFoundError("No master found for 'svc'"),
        ResponseError(
            "Error running script: OOM command not allowed when used memory > 'maxmemory'"
        ),
    ],
)
def test_outages_are_store_unavailable(error: Exception) -> None:
    assert is_store_unavailable(error)


@pytest.mark.parametrize(
    "error", [ResponseError("WRONGTYPE Operation against a key"), ValueError("bug"), KeyError("x")]
)
def test_bugs_and_bad_data_are_not_outages(error: Exception) -> None:
    assert not is_store_unavailable(error)

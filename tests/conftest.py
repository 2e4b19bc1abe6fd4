"""Shared fixtures: a real Redis with a key prefix per test, the app, and simulated calls.

Every test that uses ``redis_client`` runs on each topology: ``single`` (the Redis at
``REDIS_URL``, default the local one), ``cluster`` and ``sentinel`` (at ``REDIS_CLUSTER_URL`` and
``REDIS_SENTINEL_URL``, else started for the test run by :mod:`tests.support_topologies`). Each
test gets its own key prefix, and its keys are deleted (on every master) before and after.
Without ``redis-server`` the cluster and sentinel cases skip, unless
``OMNIVOICE_REQUIRE_TOPOLOGIES=1`` makes that a failure. Requests are signed with the SDK's
``RequestValidator`` exactly as Twilio signs them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

REDIS_URL = os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# Outside dev mode the app refuses to start without a SECRET_KEY (every worker must share one).
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "0" * 48)

from app import create_app  # noqa: E402  (importing app builds its default app on REDIS_URL)
from context.redis_client import Topology, topology_of  # noqa: E402
from simulator import Call, FlaskTransport  # noqa: E402
from tests import support_topologies  # noqa: E402
from webhooks import logs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
AUTH_TOKEN = "test-auth-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _log_lines_stay_with_their_test() -> Iterator[None]:
    """Write a test's pending log lines before it ends (the app's writer thread would write them
    later, into another test's output or after the run)."""
    yield
    logs.flush()


TOPOLOGIES = [Topology.SINGLE.value, Topology.CLUSTER.value, Topology.SENTINEL.value]
REQUIRE_TOPOLOGIES = os.environ.get("OMNIVOICE_REQUIRE_TOPOLOGIES", "") == "1"


def client_for(url: str) -> Any:
    """A client on ``url`` (any ``REDIS_URL`` form) with the test suite's patient timeout."""
    from context.redis_client import cluster_of, connect

    client = connect(url, timeout=2, dev_mode=False)
    return cluster_of(client) if topology_of(client) is Topology.CLUSTER else client


def delete_under(connection: Any, prefix: str) -> None:
    """Delete every key under ``prefix``; on a cluster, on every master, one slot at a time."""
    if topology_of(connection) is Topology.CLUSTER:
        for node in connection.get_primaries():
            keys = list(node.redis_connection.scan_iter(f"{prefix}:*", count=1000))
            for key in keys:  # keys of one node may sit in many slots: DEL them one by one
                connection.delete(key)
        return
    keys = list(connection.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        connection.delete(*keys)


def _topology_url(name: str, env: str, start: Callable[[], Any]) -> Iterator[str]:
    """The URL in ``env``, else a topology started now and torn down after the test run."""
    if os.environ.get(env):
        yield os.environ[env]
        return
    if not support_topologies.have_redis_server():
        reason = (
            f"redis-server/redis-cli are not installed and {env} is not set: no {name} to test on"
        )
        if REQUIRE_TOPOLOGIES:
            pytest.fail(f"{reason} (OMNIVOICE_REQUIRE_TOPOLOGIES=1)")
        pytest.skip(reason)
    topology = start()
    try:
        yield topology.url
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster (3 masters, 3 replicas) shared by the test run."""
    yield from _topology_url("Redis Cluster", "REDIS_CLUSTER_URL", support_topologies.start_cluster)


@pytest.fixture(scope="session")
def redis_sentinel_url() -> Iterator[str]:
    """A master, a replica and three Sentinels shared by the test run."""
    yield from _topology_url(
        "Sentinel set", "REDIS_SENTINEL_URL", support_topologies.start_sentinels
    )


def on_topologies(*names: str) -> pytest.MarkDecorator:
    """Run a test only on the topologies ``names`` (say why where it is used)."""
    return pytest.mark.parametrize("redis_url", names, indirect=True)


@pytest.fixture(params=TOPOLOGIES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """The ``REDIS_URL`` of the topology this test runs on."""
    if request.param == Topology.CLUSTER:
        return str(request.getfixturevalue("redis_cluster_url"))
    if request.param == Topology.SENTINEL:
        return str(request.getfixturevalue("redis_sentinel_url"))
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A real Redis connection; the test owns the keys under ``redis_client.test_prefix``."""
    connection = client_for(redis_url)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    connection.test_prefix = prefix
    connection.omnivoice_url = redis_url
    delete_under(connection, prefix)
    yield connection
    delete_under(connection, prefix)
    connection.close()


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    """A copy of the repository's flows, which a test may edit."""
    target = tmp_path / "flows"
    shutil.copytree(REPO / "flows", target)
    return target


def app_for_tests(flows_dir: Path, **overrides: Any) -> Flask:
    """The app as tests build it (signed webhooks, no dev mode, no reloads, no logging set-up),
    on the flows in ``flows_dir``; ``overrides`` name the Redis to use and anything else."""
    config = {
        "TESTING": True,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "FLOWS_DIR": str(flows_dir),
        "DEV_MODE": False,
        "PUBLIC_BASE_URL": None,
        "FLOW_RELOAD_SECONDS": 0,
        "CONFIGURE_LOGGING": False,
        "HISTORY_IN_PROCESS": False,
        "DEMO_API": True,  # the demo flow's data dips (outside dev mode only when asked for)
        **overrides,
    }
    return create_app(config)


@pytest.fixture
def make_app(redis_client: redis.Redis, flows_dir: Path) -> Callable[..., Flask]:
    """Build an app on the test's Redis prefix and flows copy; keyword overrides go to config."""

    def build(**overrides: Any) -> Flask:
        prefix = redis_client.test_prefix  # type: ignore[attr-defined]
        own = {"REDIS_CLIENT": redis_client, "REDIS_KEY_PREFIX": prefix}
        return app_for_tests(flows_dir, **{**own, **overrides})

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with default test configuration."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> Any:
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def call(app: Flask) -> Callable[..., Call]:
    """Make a simulated call into ``app`` (not yet dialled)."""

    def make(**kwargs: Any) -> Call:
        return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs)

    return make

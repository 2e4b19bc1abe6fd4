"""``/healthz``: one line per check, on real servers in the states that really happen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests import support_topologies
from tests.conftest import on_topologies
from tests.support_topologies import HOST, SERVICE, Servers, free_ports, start_server
from tests.support_twilio import free_port

BAD_FLOW = "id: broken\nstart: nowhere\nnodes:\n  hello:\n    say: Hi.\n    hangup: true\n"

needs_redis_server = pytest.mark.skipif(
    not support_topologies.have_redis_server(), reason="redis-server/redis-cli are not installed"
)


def health(app: Flask) -> tuple[int, list[str]]:
    response = app.test_client().get("/healthz")
    print(response.get_data(as_text=True))  # what an operator would read (shown with -s)
    return response.status_code, response.get_data(as_text=True).splitlines()


# These tests build their own client from a URL: the fixture's topology does not matter.
own_store = on_topologies("single")


def url_app(make_app: Callable[..., Flask], url: str) -> Flask:
    """An app whose client is built from ``url``, as in production."""
    return make_app(REDIS_CLIENT=None, REDIS_URL=url, REDIS_TIMEOUT=0.5)


def test_every_topology_reports_its_store_and_flows(app: Flask) -> None:
    status, lines = health(app)
    assert status == 200
    assert lines[-1] == "flows: ok: 1 flow(s) serving"
    store = lines[:-1]
    assert store and all(line.startswith("redis: ok: ") for line in store)
    assert all("accepts writes" in line for line in store)


@own_store
def test_a_cluster_names_every_master(
    make_app: Callable[..., Flask], redis_cluster_url: str
) -> None:
    status, lines = health(url_app(make_app, redis_cluster_url))
    assert status == 200
    masters = [line for line in lines if line.startswith("redis: ok: cluster master ")]
    assert len(masters) == 3 and all("cluster_state:ok" in line for line in masters)


@own_store
def test_sentinel_names_the_master(make_app: Callable[..., Flask], redis_sentinel_url: str) -> None:
    status, lines = health(url_app(make_app, redis_sentinel_url))
    assert status == 200
    assert lines[0].startswith(f"redis: ok: sentinel master {SERVICE!r} at {HOST}:")
    assert "role:master" in lines[0]


@own_store
def test_a_refused_file_degrades_but_serves(app: Flask, flows_dir: Path) -> None:
    (flows_dir / "broken.yaml").write_text(BAD_FLOW)
    app.extensions["omnivoice.catalog"].refresh()
    status, lines = health(app)
    assert status == 200
    assert "flows: ok: 1 flow(s) serving" in lines
    [degraded] = [line for line in lines if line.startswith("degraded: ")]
    assert degraded.startswith(f"degraded: refused: {flows_dir / 'broken.yaml'}:2:8: error: ")
    assert "nowhere" in degraded


@own_store
def test_a_refused_edit_names_the_file_and_the_version_still_serving(
    app: Flask, flows_dir: Path
) -> None:
    catalog = app.extensions["omnivoice.catalog"]
    [good] = catalog.flows()
    path = flows_dir / "airline.yaml"
    path.write_text(path.read_text().replace("start: welcome", "start: welcom"))
    catalog.refresh()
    status, lines = health(app)
    assert status == 200
    [degraded] = [line for line in lines if line.startswith("degraded: ")]
    assert degraded.startswith(f"degraded: refused: {path}:")
    assert "There is no node named 'welcom'" in degraded
    assert degraded.endswith(f"(its last good version {good.version} still serves)")


@own_store
def test_no_servable_flow_is_unavailable(make_app: Callable[..., Flask], flows_dir: Path) -> None:
    (flows_dir / "airline.yaml").write_text(BAD_FLOW)
    status, lines = health(make_app())
    assert status == 503
    assert "flows: FAIL: no flow can serve (1 file(s) refused)" in lines
    assert any(line.startswith("degraded: ") and "airline.yaml" in line for line in lines)


@own_store
def test_an_empty_flows_directory_is_unavailable(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    (flows_dir / "airline.yaml").unlink()
    status, lines = health(make_app())
    assert status == 503
    assert "flows: FAIL: no flow can serve (0 file(s) refused)" in lines


@own_store
def test_a_dead_server_fails_the_store_line(make_app: Callable[..., Flask]) -> None:
    status, lines = health(url_app(make_app, f"redis://{HOST}:{free_port()}/0"))
    assert status == 503
    assert lines[0].startswith("redis: FAIL: single store: unavailable: ConnectionError")
    assert lines[-1] == "flows: ok: 1 flow(s) serving"


@pytest.fixture
def odd_server() -> Iterator[Callable[..., str]]:
    started: list[support_topologies.LocalServer] = []

    def start(*options: str) -> str:
        server = start_server(*options)
        started.append(server)
        return server.url

    yield start
    for server in started:
        server.stop()


@own_store
@needs_redis_server
def test_out_of_memory_is_a_failure(
    make_app: Callable[..., Flask], odd_server: Callable[..., str]
) -> None:
    url = odd_server("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    status, lines = health(url_app(make_app, url))
    assert status == 503
    assert lines[0].startswith("redis: FAIL: single store: unavailable: OutOfMemoryError")


@own_store
@needs_redis_server
def test_a_read_only_replica_is_a_failure(
    make_app: Callable[..., Flask], odd_server: Callable[..., str]
) -> None:
    url = odd_server("--replicaof", HOST, str(free_port()))
    status, lines = health(url_app(make_app, url))
    assert status == 503
    assert lines[0].startswith("redis: FAIL: single store: unavailable: ReadOnlyError")


@own_store
@needs_redis_server
def test_a_cluster_that_serves_no_slot_is_a_failure(
    make_app: Callable[..., Flask], odd_server: Callable[..., str]
) -> None:
    url = odd_server("--cluster-enabled", "yes").replace("redis://", "redis+cluster://")
    status, lines = health(url_app(make_app, url.removesuffix("/0")))
    assert status == 503
    assert lines[0].startswith("redis: FAIL: cluster store: unavailable: ConnectionError")
    assert "usable cluster layout" in lines[0]


@pytest.fixture
def sentinel_watching() -> Iterator[Callable[[int], str]]:
    """One Sentinel watching the server on a port (quorum 1): its redis+sentinel:// URL."""
    started: list[Servers] = []

    def start(master: int) -> str:
        import tempfile

        servers = Servers(Path(tempfile.mkdtemp(prefix="omnivoice-sentinel-")))
        started.append(servers)
        [port] = free_ports(1)
        config = f"sentinel monitor {SERVICE} {HOST} {master} 1\n"
        servers.start(port, "--sentinel", config=config)
        return f"redis+sentinel://{HOST}:{port}/{SERVICE}"

    yield start
    for servers in started:
        servers.stop()


@own_store
@needs_redis_server
def test_sentinel_naming_a_dead_master_is_a_failure(
    make_app: Callable[..., Flask], sentinel_watching: Callable[[int], str]
) -> None:
    status, lines = health(url_app(make_app, sentinel_watching(free_port())))
    assert status == 503
    assert lines[0].startswith(f"redis: FAIL: sentinel master {SERVICE!r} at {HOST}:")
    assert "unavailable: ConnectionError" in lines[0]


@own_store
@needs_redis_server
def test_sentinel_naming_a_replica_is_a_failure(
    make_app: Callable[..., Flask],
    sentinel_watching: Callable[[int], str],
    odd_server: Callable[..., str],
) -> None:
    replica = odd_server("--replicaof", HOST, str(free_port()))
    port = int(replica.rsplit(":", 1)[1].split("/")[0])
    status, lines = health(url_app(make_app, sentinel_watching(port)))
    assert status == 503
    assert lines[0] == (
        f"redis: FAIL: sentinel master {SERVICE!r} at {HOST}:{port} says role:slave, not role:master"
    )


def test_a_consumer_of_the_event_stream_that_fell_behind_degrades_but_serves(app: Flask) -> None:
    stream = app.extensions["omnivoice.events"]
    key = stream.keys.events(0)
    stream.ensure_group("history")  # a history writer ran once, then stopped
    minutes_ago = int((time.time() - 150) * 1000)
    stream.redis.xadd(key, {"e": b"{}"}, id=f"{minutes_ago}-0")
    status, lines = health(app)
    assert status == 200
    [line] = [line for line in lines if line.startswith("degraded: the history writer")]
    assert " s behind on the event stream" in line and "flask --app app worker" in line
    seconds = int(line.split(" is ")[1].split(" s ")[0])
    assert 140 <= seconds <= 400
    stream.redis.xreadgroup("history", "w1", {key: ">"}, count=10)  # caught up again
    assert not [line for line in health(app)[1] if "behind" in line]


def test_a_consumer_that_never_ran_is_not_reported(app: Flask) -> None:
    stream = app.extensions["omnivoice.events"]
    minutes_ago = int((time.time() - 150) * 1000)
    stream.redis.xadd(stream.keys.events(0), {"e": b"{}"}, id=f"{minutes_ago}-0")
    assert not [line for line in health(app)[1] if "behind" in line]

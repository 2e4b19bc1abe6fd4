"""The console's live stream on a real gunicorn with the gevent worker (as the Procfile runs it):
200 connects and disconnects leave no thread, greenlet-held Redis connection or blocked read
behind.

The worker's threads are counted in ``/proc/<pid>/task``, its Redis connections from its own
socket descriptors (``/proc/<pid>/fd`` matched with ``/proc/<pid>/net/tcp``), and reads still
blocked for it from Redis's ``CLIENT LIST`` (flag ``b``), before and after the cycles.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from console.agents import AgentDirectory
from context.history import database
from tests.conftest import REDIS_URL, REPO
from tests.support_console import FAST_HASH, PASSWORD, history_database
from tests.support_twilio import free_port
from tests.test_live_server import CLEARED_ENV, _delete, _gunicorn, _wait_for_health

CYCLES = 200
SETTLE_SECONDS = 15.0


@dataclass(frozen=True)
class Server:
    base_url: str
    master: int
    prefix: str
    redis: redis.Redis


@pytest.fixture(scope="module")
def gevent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    prefix = f"test-console-live-{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("console-live")
    log = folder / "server.log"
    url = history_database(folder)
    AgentDirectory(lambda: database.sessions(database.open_engine(url)), FAST_HASH).add(
        "ann", PASSWORD, phone="+14155550188"
    )
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=prefix,
        REDIS_TIMEOUT="0.2",
        TWILIO_AUTH_TOKEN="console-live-" + uuid.uuid4().hex,
        FLOWS_DIR=str(REPO / "flows"),
        DATABASE_URL=url,
        AGENT_PASSWORD_METHOD=FAST_HASH,
        CONSOLE_HEARTBEAT_SECONDS="0.1",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        LOG_FORMAT="text",
        LOG_LEVEL="WARNING",
    )
    command = [
        _gunicorn(), "--workers", "1", "--worker-class", "gevent", "--worker-connections", "1000",
        "--bind", f"127.0.0.1:{port}", "app:app",
    ]  # fmt: skip
    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base_url, process, log)
        yield Server(base_url, process.pid, prefix, connection)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        _delete(connection, prefix)
        connection.close()


def worker_of(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def redis_ports(pid: int, redis_port: int) -> set[int]:
    """Local ports of ``pid``'s established TCP connections to Redis."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        found = re.match(r"socket:\[(\d+)\]", target)
        if found:
            inodes.add(found.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state == "01" and int(remote.split(":")[1], 16) == redis_port:
                ports.add(int(local.split(":")[1], 16))
    return ports


def blocked_reads(connection: redis.Redis, ports: set[int]) -> int:
    """How many of the connections on ``ports`` are blocked in a read (``XREAD BLOCK``)."""
    count = 0
    for client in connection.client_list():
        port = int(str(client["addr"]).rsplit(":", 1)[1])
        if port in ports and "b" in str(client.get("flags", "")):
            count += 1
    return count


def log_in(base_url: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base_url}/agent/login", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    answer = session.post(
        f"{base_url}/agent/login",
        data={"name": "ann", "password": PASSWORD, "csrf_token": token.group(1)},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 302, answer.text
    return session


def connect_and_leave(session: requests.Session, url: str) -> None:
    response = session.get(url, stream=True, timeout=5, headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    first = response.raw.read(11)  # the stream began: "retry: 2000"
    assert first.startswith(b"retry: 2000")
    response.close()  # the browser tab goes away mid-stream


def settled(measure: object, baseline: object, seconds: float = SETTLE_SECONDS) -> object:
    deadline = time.monotonic() + seconds
    value = measure()  # type: ignore[operator]
    while value != baseline and time.monotonic() < deadline:
        time.sleep(0.2)
        value = measure()  # type: ignore[operator]
    return value


def test_connects_and_disconnects_leak_nothing(gevent_server: Server) -> None:
    worker = worker_of(gevent_server.master)
    redis_port = gevent_server.redis.connection_pool.connection_kwargs["port"]
    session = log_in(gevent_server.base_url)
    url = f"{gevent_server.base_url}/agent/events"
    for _ in range(5):  # warm up: the pool's first connections, gevent's hub and resolver
        connect_and_leave(session, url)
    time.sleep(1.0)
    base_threads = threads(worker)
    base_connections = len(redis_ports(worker, redis_port))
    assert (
        settled(lambda: blocked_reads(gevent_server.redis, redis_ports(worker, redis_port)), 0) == 0
    )

    def blocked() -> int:
        return blocked_reads(gevent_server.redis, redis_ports(worker, redis_port))

    pooled = []
    for _round in range(2):
        for _ in range(CYCLES // 2):
            connect_and_leave(session, url)
        assert settled(lambda: threads(worker), base_threads) == base_threads
        assert settled(blocked, 0) == 0, "a stream of a gone client is still reading Redis"
        pooled.append(len(redis_ports(worker, redis_port)))
    # Connections that overlapping streams needed stay pooled, idle, for the next ones: the
    # second round reuses them. A leak would add connections with every cycle.
    assert pooled[1] <= pooled[0] + 3, (base_connections, pooled)
    assert pooled[0] < base_connections + CYCLES // 4, (base_connections, pooled)
    print(f"threads {base_threads}; redis connections {base_connections}, then {pooled}")
    session.close()

"""Real Redis topologies on loopback ports: a 3-shard Cluster and a Sentinel-watched master.

Plain Python on ``redis-server`` and ``redis-cli`` (no Python Redis client, so CI can run it
before any virtualenv exists). Each topology lives in its own temporary directory, records the
PID of every process it starts, and is torn down by killing them and removing the directory.
Tests use them through fixtures; ``.ci/run`` uses the command line::

    python3 -m tests.support_topologies up STATE_FILE    # prints REDIS_CLUSTER_URL=... lines
    python3 -m tests.support_topologies down STATE_FILE

The Cluster runs with ``cluster-require-full-coverage no``: while one shard has no master, the
other shards keep serving (the default stops the whole cluster), which is what a voice gateway
wants.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SERVICE = "omnivoice"
CLUSTER_TIMEOUT_MS = 2000


class TopologyError(RuntimeError):
    """A topology did not come up in time; the message says what was waited for."""


def have_redis_server() -> bool:
    """Whether ``redis-server`` and ``redis-cli`` are on PATH."""
    return bool(shutil.which("redis-server") and shutil.which("redis-cli"))


def cli(port: int, *args: str, timeout: float = 5) -> str:
    """``redis-cli -p port args...``: its output, or ``""`` when the server does not answer."""
    try:
        done = subprocess.run(
            ["redis-cli", "-h", HOST, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if done.returncode == 0 else ""


def fields(text: str) -> dict[str, str]:
    """The ``name:value`` lines of an INFO or CLUSTER INFO reply."""
    pairs = (line.strip().partition(":") for line in text.splitlines())
    return {name: value for name, sep, value in pairs if sep}


def _ephemeral_start() -> int:
    """The first port the kernel hands to outgoing connections (Linux: 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, bus: bool = False) -> list[int]:
    """``count`` free loopback ports (with ``bus``, ``port + 10000`` is free too).

    They lie below the ephemeral range: a port in it can be taken by any outgoing connection
    (the suite opens thousands) between this check and the server's bind, and the server would
    then fail to start.
    """
    top = max(_ephemeral_start(), 12000) - (10000 if bus else 0) - 1
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(min(11000, top), top)
        wanted = [port, port + 10000] if bus else [port]
        if port not in ports and all(_is_free(p) for p in wanted):
            ports.append(port)
    return ports


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def wait_for(what: str, check: object, timeout: float = 20.0) -> None:
    """Poll ``check()`` until it is true; :class:`TopologyError` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TopologyError(f"timed out after {timeout:.0f} s waiting for {what}")


def replicated(port: int) -> bool:
    """Whether every replica of the master on ``port`` has all it wrote (offsets equal)."""
    info = fields(cli(port, "INFO", "replication"))
    offset = info.get("master_repl_offset")
    replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
    return bool(replicas) and all(f"offset={offset}," in f"{r}," for r in replicas)


@dataclass
class Servers:
    """Processes started in one directory; :meth:`stop` kills them all and removes it."""

    directory: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # by port
    args: dict[int, list[str]] = field(default_factory=dict)  # port -> command line

    def start(self, port: int, *options: str, config: str | None = None) -> int:
        """Start ``redis-server`` on ``port``; return its PID once it answers PING."""
        command = ["redis-server"]
        if config is not None:
            path = self.directory / f"{port}.conf"
            path.write_text(config)
            command.append(str(path))
        command += [
            *options,
            "--port", str(port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.directory / f"{port}.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.args[port] = command
        return self.restart(port)

    def restart(self, port: int) -> int:
        """Start the server of ``port`` (again), with its command line; its PID once it answers."""
        # A session of its own: a Ctrl-C in the terminal reaches the tests, not the servers,
        # so teardown still finds them.
        process = subprocess.Popen(
            self.args[port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes[port] = process

        def answers() -> bool:
            if process.poll() is not None:  # it exited: say why now, not after the timeout
                log = self.directory / f"{port}.log"
                tail = log.read_text()[-600:] if log.exists() else "(no log)"
                raise TopologyError(f"redis-server on port {port} exited: {tail}")
            return cli(port, "PING").strip() == "PONG"

        wait_for(f"redis-server on port {port}", answers)
        return process.pid

    def pid(self, port: int) -> int:
        """The PID of the server on ``port``."""
        return self.processes[port].pid

    def kill(self, port: int) -> None:
        """Kill the server on ``port`` at once (SIGKILL: a crash, not a shutdown)."""
        process = self.processes[port]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        """Kill every process started here and remove the directory."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def state(self) -> dict[str, object]:
        """What another process needs to tear this down: the directory and the PIDs."""
        return {
            "directory": str(self.directory),
            "pids": [p.pid for p in self.processes.values() if p.poll() is None],
        }


def _kill(pid: int) -> None:
    """Kill a server recorded by another process (it is not our child: nothing to reap)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class LocalServer:
    """One plain ``redis-server`` (for checks that need a server in an odd state)."""

    servers: Servers
    port: int

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stop(self) -> None:
        self.servers.stop()


def start_server(*options: str) -> LocalServer:
    """A plain server with extra ``options`` (``--maxmemory 1``, ``--replicaof ...``)."""
    servers = Servers(Path(tempfile.mkdtemp(prefix="omnivoice-redis-")))
    [port] = free_ports(1, bus="--cluster-enabled" in options)
    try:
        servers.start(port, *options)
    except BaseException:
        servers.stop()
        raise
    return LocalServer(servers, port)


@dataclass
class LocalCluster:
    """Three masters and three replicas; ``ports`` in creation order."""

    servers: Servers
    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports[:3])

    def masters(self) -> dict[int, tuple[int, int]]:
        """Port of each master that serves slots, with the slot ranges' first and last slot."""
        found: dict[int, tuple[int, int]] = {}
        for port in self.ports:
            for line in cli(port, "CLUSTER", "NODES").splitlines():
                parts = line.split()
                if len(parts) > 8 and "myself" in parts[2] and "master" in parts[2]:
                    first, _, last = parts[8].partition("-")
                    found[port] = (int(first), int(last or first))
        return found

    def state_ok(self, ports: list[int] | None = None) -> bool:
        """Whether every node of ``ports`` (default all) says ``cluster_state:ok``."""
        return all(
            fields(cli(p, "CLUSTER", "INFO")).get("cluster_state") == "ok"
            for p in (ports or self.ports)
        )

    def stop(self) -> None:
        self.servers.stop()


def start_cluster() -> LocalCluster:
    """Start six cluster nodes, join them (one replica per master), wait until all agree."""
    servers = Servers(Path(tempfile.mkdtemp(prefix="omnivoice-cluster-")))
    ports = free_ports(6, bus=True)
    try:
        for port in ports:
            servers.start(
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(CLUSTER_TIMEOUT_MS),
                "--cluster-require-full-coverage", "no",
            )  # fmt: skip
        nodes = [f"{HOST}:{p}" for p in ports]
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise TopologyError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        cluster = LocalCluster(servers, ports)
        wait_for("cluster_state:ok on all six nodes", cluster.state_ok, timeout=30)
        wait_for("every node to know three replicas", lambda: _replicas_known(ports), timeout=30)
    except BaseException:
        servers.stop()
        raise
    return cluster


def _replicas_known(ports: list[int]) -> bool:
    for port in ports:
        lines = cli(port, "CLUSTER", "NODES").splitlines()
        if sum("slave" in line.split()[2].split(",") for line in lines if line.strip()) != 3:
            return False
    return True


@dataclass
class LocalSentinels:
    """A master, its replica and three Sentinels watching them under :data:`SERVICE`."""

    servers: Servers
    master: int
    replica: int
    sentinels: list[int]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"{HOST}:{p}" for p in self.sentinels) + f"/{SERVICE}"

    def master_port(self) -> int | None:
        """The port the Sentinels agree is the master (``None`` while they disagree)."""
        named = set()
        for port in self.sentinels:
            reply = cli(port, "SENTINEL", "get-master-addr-by-name", SERVICE).split()
            named.add(int(reply[1]) if len(reply) == 2 else None)
        return named.pop() if len(named) == 1 else None

    def stop(self) -> None:
        self.servers.stop()


SENTINEL_CONFIG = """\
sentinel monitor {service} {host} {master} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 3000
sentinel parallel-syncs {service} 1
"""


def start_sentinels() -> LocalSentinels:
    """Start the master, a replica in sync with it and three Sentinels that see both."""
    servers = Servers(Path(tempfile.mkdtemp(prefix="omnivoice-sentinel-")))
    master, replica, *sentinels = free_ports(5)
    try:
        servers.start(master)
        servers.start(replica, "--replicaof", HOST, str(master))
        wait_for(
            "the replica to sync",
            lambda: fields(cli(replica, "INFO", "replication")).get("master_link_status") == "up",
        )
        config = SENTINEL_CONFIG.format(service=SERVICE, host=HOST, master=master)
        for port in sentinels:
            servers.start(port, "--sentinel", config=config)
        watched = LocalSentinels(servers, master, replica, sentinels)
        wait_for(
            "the Sentinels to find each other and the replica", lambda: _sentinels_ready(watched)
        )
    except BaseException:
        servers.stop()
        raise
    return watched


def _sentinels_ready(watched: LocalSentinels) -> bool:
    for port in watched.sentinels:
        reply = cli(port, "SENTINEL", "MASTER", SERVICE).splitlines()
        pairs = dict(zip(reply[0::2], reply[1::2], strict=False))
        if pairs.get("num-other-sentinels") != "2" or pairs.get("num-slaves") != "1":
            return False
    return watched.master_port() == watched.master


def _up(state_file: Path) -> None:
    cluster = start_cluster()
    try:
        watched = start_sentinels()
    except BaseException:
        cluster.stop()
        raise
    state = {"cluster": cluster.servers.state(), "sentinel": watched.servers.state()}
    state_file.write_text(json.dumps(state))
    print(f"REDIS_CLUSTER_URL={cluster.url}")
    print(f"REDIS_SENTINEL_URL={watched.url}")


def _down(state_file: Path) -> None:
    if not state_file.exists():
        return
    for part in json.loads(state_file.read_text()).values():
        for pid in part["pids"]:
            _kill(pid)
        shutil.rmtree(part["directory"], ignore_errors=True)
    state_file.unlink()


def main(argv: list[str]) -> int:
    """``up STATE_FILE`` or ``down STATE_FILE``."""
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python3 -m tests.support_topologies up|down STATE_FILE", file=sys.stderr)
        return 2
    (_up if argv[0] == "up" else _down)(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

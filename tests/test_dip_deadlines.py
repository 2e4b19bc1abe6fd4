"""A data dip finishes or fails within its timeout, wall clock, whatever the back-end does.

Real TCP peers (:mod:`tests.support_slow_peers`) send each byte well inside any per-read timeout:
headers a byte at a time, the body a byte at a time, a TLS handshake record a byte at a time, or
nothing at all. A ``timeout: 1s`` dip must fail between 1.0 and 1.5 s, through a Twilio-signed
webhook to the flow's ``on_error`` path, and leave no socket or thread behind. Name lookups have no
socket to bound: a slow resolver stand-in runs inside the real :class:`SystemResolver`, whose
fixed pool of lookup threads is all a stalled lookup may hold.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from data_dips.http import HttpFetcher
from data_dips.resolver import Address, StaticResolver, SystemResolver
from ivr.turn import HttpRequest
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN, on_topologies
from tests.support_backend import CUSTOMER, Backend
from tests.support_slow_peers import Behaviour, SlowPeer
from tests.support_twilio import stored

NUMBER = "+14155550143"
UNAVAILABLE = "Our records are unavailable right now."
FLOW = """
id: deadlines
numbers: ["{number}"]
start: lookup
nodes:
  lookup:
    http: {{url: "{url}", timeout: 1s, save_as: customer}}
    on_error: unavailable
    say: "Hello {{{{ customer.name }}}}."
    hangup: true
  unavailable:
    say: {unavailable}
    hangup: true
"""


@pytest.fixture(params=list(Behaviour), ids=[b.value for b in Behaviour])
def peer(request: pytest.FixtureRequest) -> Iterator[SlowPeer]:
    server = SlowPeer(request.param)
    yield server
    server.close()


@pytest.fixture
def fetcher() -> Iterator[HttpFetcher]:
    fetcher = HttpFetcher()
    yield fetcher
    fetcher.session.close()


def _timed(fetcher: HttpFetcher, url: str, timeout: float = 1.0) -> tuple[Any, float]:
    started = time.monotonic()
    result = fetcher.fetch(HttpRequest(url=url, timeout=timeout))
    return result, time.monotonic() - started


def test_a_slow_peer_is_cut_off_at_the_deadline(fetcher: HttpFetcher, peer: SlowPeer) -> None:
    threads = set(threading.enumerate())
    result, seconds = _timed(fetcher, f"{peer.url}/customer")
    assert not result.ok
    assert result.error == "timed out after 1s"
    assert 1.0 <= seconds < 1.5, seconds
    # The connection was closed, not kept in the pool or left to the peer.
    assert peer.wait_closed(1), (peer.connections, peer.closed_by_client)
    left_behind = set(threading.enumerate()) - threads - set(peer.threads)
    assert left_behind == set()  # the dip ran on the calling thread and started none


def test_timed_out_dips_leave_no_socket_open(fetcher: HttpFetcher) -> None:
    peer = SlowPeer(Behaviour.DRIP_HEADERS, interval=0.05)
    try:
        fetcher.fetch(HttpRequest(url=f"{peer.url}/warm-up", timeout=0.2))
        assert peer.wait_closed(1)
        descriptors = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            result, seconds = _timed(fetcher, f"{peer.url}/customer", timeout=0.3)
            assert not result.ok and seconds < 0.6, (result, seconds)
        assert peer.wait_closed(6)
        time.sleep(0.1)  # the peer's side of the last connection closes just after it counts it
        assert len(os.listdir("/proc/self/fd")) <= descriptors
    finally:
        peer.close()


@pytest.fixture
def dial(make_app: Callable[..., Flask], flows_dir: Path) -> Callable[..., tuple[Call, float]]:
    """Write the flow for ``url``, place a signed call, say how long its first webhook took."""

    def run(url: str, **config: Any) -> tuple[Call, float]:
        (flows_dir / "deadlines.yaml").write_text(
            FLOW.format(number=NUMBER, url=url, unavailable=UNAVAILABLE)
        )
        app = make_app(**config)
        call = Call(FlaskTransport(app), AUTH_TOKEN, called=NUMBER)
        started = time.monotonic()
        call.dial()
        seconds = time.monotonic() - started
        app.extensions["omnivoice.calls"].fetcher.session.close()
        return call, seconds

    return run


@on_topologies("single")  # deadlines do not depend on how Redis is deployed
def test_a_slow_peer_sends_the_caller_down_on_error(
    dial: Callable[..., tuple[Call, float]], peer: SlowPeer, redis_client: redis.Redis
) -> None:
    call, seconds = dial(f"{peer.url}/customer")
    assert call.last_heard == UNAVAILABLE
    assert call.ended == "hangup"
    assert call.statuses == [200]
    assert 1.0 <= seconds < 1.5, seconds
    failure = stored(redis_client).doc["variables"]["http_error"]
    assert failure == {"status": None, "error": "timed out after 1s"}


class SlowLookup:
    """A resolver stand-in: each lookup stalls until released (or 10 s), then answers localhost."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def __call__(self, host: str, port: int, *args: Any) -> list[Address]:
        self.started += 1
        self.release.wait(10)
        return socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_STREAM)


@pytest.fixture
def slow_dns() -> Iterator[tuple[SlowLookup, SystemResolver]]:
    lookup = SlowLookup()
    resolver = SystemResolver(lookup, threads=2)
    yield lookup, resolver
    lookup.release.set()
    resolver.close()


@on_topologies("single")
def test_a_slow_name_lookup_sends_the_caller_down_on_error(
    dial: Callable[..., tuple[Call, float]],
    slow_dns: tuple[SlowLookup, SystemResolver],
    redis_client: redis.Redis,
) -> None:
    lookup, resolver = slow_dns
    backend = Backend()
    try:
        url = f"http://customers.example:{backend.server.server_port}/customer"
        call, seconds = dial(url, DATA_DIP_RESOLVER=resolver)
    finally:
        backend.close()
    assert call.last_heard == UNAVAILABLE
    assert 1.0 <= seconds < 1.5, seconds
    assert stored(redis_client).doc["variables"]["http_error"]["error"] == "timed out after 1s"
    assert lookup.started == 1
    assert backend.requests == []


def test_stalled_lookups_hold_no_more_than_the_lookup_threads(
    slow_dns: tuple[SlowLookup, SystemResolver],
) -> None:
    lookup, resolver = slow_dns
    fetcher = HttpFetcher(resolver=resolver)
    threads = threading.active_count()
    try:
        for _ in range(5):
            result, seconds = _timed(fetcher, "http://stalled.example/customer", timeout=0.2)
            assert result.error == "timed out after 0.2s"
            assert seconds < 0.5, seconds
    finally:
        fetcher.session.close()
    assert threading.active_count() <= threads + 2  # the resolver's two threads, no more
    lookup.release.set()


def test_names_resolve_through_the_resolver() -> None:
    backend = Backend()
    named = HttpFetcher(resolver=StaticResolver({"customers.example": "127.0.0.1"}))
    try:
        port = backend.server.server_port
        found = named.fetch(HttpRequest(url=f"http://customers.example:{port}/customer"))
        unknown = named.fetch(HttpRequest(url=f"http://nowhere.example:{port}/customer"))
    finally:
        named.session.close()
        backend.close()
    assert found.ok and found.data == CUSTOMER
    assert not unknown.ok and unknown.error == "request failed: ConnectionError"


# ---- TLS that works ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_dips_still_verify_and_read_within_the_deadline(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            body = b'{"name": "Ada"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    fetcher = HttpFetcher()
    url = f"https://127.0.0.1:{server.server_port}/customer"
    try:
        untrusted = fetcher.fetch(HttpRequest(url=url, timeout=2))
        fetcher.session.verify = str(cert)
        trusted = fetcher.fetch(HttpRequest(url=url, timeout=2))
    finally:
        fetcher.session.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not untrusted.ok and untrusted.error == "request failed: SSLError"
    assert trusted.ok and trusted.data == {"name": "Ada"}, trusted

"""Wall-clock deadlines for data dips, enforced on every socket operation.

``requests``' timeout bounds each socket read, not a request: a back-end sending one header byte
every 2.5 s never trips a 3 s timeout, and holds the webhook's thread for as long as it likes.
Here a dip runs inside :func:`within`, which puts its :class:`Budget` (deadline and resolver) in a
context variable; the sessions made by :func:`dip_session` connect with sockets that, just before
every connect, send, receive and TLS handshake, set their timeout to the time left, and fail at
once with ``TimeoutError`` past the deadline. So the calling thread comes back at the deadline
whatever the peer does (drips headers, drips the body, stalls the TLS handshake, never answers),
and urllib3 closes the connection as for any timeout: it never goes back to the pool. Name
lookups cannot be bounded on a socket; they go through the budget's
:class:`~data_dips.resolver.Resolver`, which waits for them only until the deadline.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context

from data_dips.resolver import Resolver


@dataclass(frozen=True)
class Budget:
    """How long a dip may take (``deadline``, on the monotonic clock) and how it looks up names."""

    deadline: float
    resolver: Resolver

    def left(self) -> float:
        """Seconds until the deadline; ``TimeoutError`` when it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the data dip's deadline has passed")
        return left


_BUDGET: ContextVar[Budget | None] = ContextVar("data_dip_budget", default=None)


@contextmanager
def within(budget: Budget) -> Iterator[None]:
    """Run the body with every socket of a :func:`dip_session` held to ``budget``."""
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _bound(sock: socket.socket) -> None:
    """Give the next operation on ``sock`` only the time left (nothing to do outside a dip)."""
    budget = _BUDGET.get()
    if budget is not None:
        sock.settimeout(budget.left())


class _DeadlineSocket(socket.socket):
    """A TCP socket whose every send and receive ends by the dip's deadline."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _bound(self)
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        _bound(self)
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        _bound(self)
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        _bound(self)  # since Python 3.5 a timeout bounds the whole sendall, not each send
        super().sendall(data, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """A TLS socket whose handshake, reads and writes end by the dip's deadline.

    The handshake, a read and a write each hold their own timeout as a deadline across all
    the records they wait for, so setting it to the time left before each one bounds them.
    ``recv``/``recv_into`` read through :meth:`read`, ``sendall`` writes through :meth:`send`.
    """

    def do_handshake(self, block: bool = False) -> None:
        _bound(self)
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        _bound(self)
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        _bound(self)
        return super().write(data)

    def send(self, data: Any, flags: int = 0) -> int:
        _bound(self)
        return super().send(data, flags)


def _connect(connection: HTTPConnection) -> socket.socket:
    """Resolve and connect within the dip's budget (urllib3's own way outside a dip)."""
    budget = _BUDGET.get()
    host = connection._dns_host
    try:
        if budget is None:
            return HTTPConnection._new_conn(connection)
        failure: OSError = OSError(f"{host} has no address")
        for family, kind, proto, _, address in budget.resolver.resolve(
            host, connection.port, budget.left()
        ):
            sock = _DeadlineSocket(family, kind, proto)
            try:
                for option in connection.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(budget.left())
                sock.connect(address)
            except OSError as exc:
                sock.close()
                if isinstance(exc, TimeoutError):
                    raise
                failure = exc
                continue
            sys.audit("http.client.connect", connection, connection.host, connection.port)
            return sock
        raise failure
    except socket.gaierror as exc:
        raise NameResolutionError(connection.host, connection, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(connection, f"Connection to {host} timed out ({exc})") from exc
    except OSError as exc:
        raise NewConnectionError(
            connection, f"Failed to establish a new connection: {exc}"
        ) from exc


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """A ``requests`` transport adapter whose connections keep to the running dip's budget."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        """Build urllib3's pool manager with deadline-keeping pools and TLS sockets."""
        context = create_urllib3_context()
        context.load_default_certs()
        context.sslsocket_class = _DeadlineSSLSocket
        pool_kwargs.setdefault("ssl_context", context)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def dip_session() -> requests.Session:
    """A ``requests`` session for data dips: deadline-keeping connections, no proxies.

    Environment proxy settings (``HTTPS_PROXY``...) are not used: a proxy's connection would
    not keep the deadline, and a data dip goes to the back-end the flow names.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

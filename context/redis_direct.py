"""The session store's two commands per webhook, sent without redis-py's per-command machinery.

A webhook makes two round trips, the load and the save script. Through ``Redis.execute_command``
each costs about three times the CPU of the command's own send and read: the retry wrapper,
the operation metrics redis-py records, and the pool's checks on every checkout (a lock, and a
``poll`` of the socket for stray data). :class:`DirectCommands` keeps connections of its own,
made by the client's pool (so with its settings: address, timeouts, TLS, password, and for
Sentinel the master discovery), and sends on them directly:

- A connection goes back to the idle list only after a complete reply (an error reply
  included), so it can never hold stray data and needs no check on the way out.
- A connection error or timeout closes the connection, and the command is sent once more on
  it, reconnected (for Sentinel, to the master it names now), as the client's own retry does
  (``Retry(NoBackoff(), 1)``, see :mod:`context.redis_client`); a second failure is raised, as
  the client raises it, and the closed connection goes back to the pool.
- Its connections are checked out of the client's pool once and kept: the pool counts them in
  use, so closing the client (``pool.disconnect()``) closes them too. After a fork the child
  forgets its parent's connections.

Replies come back as Redis sent them, without the client's response callbacks: the same as the
client gives for ``EVAL``/``EVALSHA``, which have none (a ``PING`` here is ``b"PONG"``, not
``True``). The store sends only its scripts this way.

Only a plain :class:`redis.Redis` on a connection pool gets it (one server or a
Sentinel-managed master); anything else (a Cluster client, the embedded stand-in) is sent
through its own ``execute_command``: see :func:`commands_for`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from hiredis import pack_command
from redis.connection import Connection, ConnectionPool, HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_RETRIED = (RedisConnectionError, RedisTimeoutError, OSError)


def _send(connection: Connection, args: tuple[Any, ...]) -> None:
    """Send ``args`` as one command on ``connection``.

    A connection that packs with hiredis gets ``hiredis.pack_command`` straight: redis-py's
    serializer first copies the arguments into a new tuple, turning any ``bytearray`` or
    ``memoryview`` into ``bytes`` (the store sends neither), which cost 4-5 us of the command's
    CPU for the save's two dozen arguments. A command name of several words (``SCRIPT LOAD``,
    which redis-py splits) and any other connection are packed the connection's own way.
    """
    name = args[0]
    packer = getattr(connection, "_command_packer", None)  # redis-py's, chosen per connection
    if type(packer) is HiredisRespSerializer and type(name) is str and " " not in name:
        connection.send_packed_command([pack_command(args)])
    else:
        connection.send_command(*args)


class DirectCommands:
    """Send commands on idle connections of the client's pool settings; see the module."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(self, *args: Any) -> Any:
        """Send ``args`` as one command; its reply (an error reply is raised)."""
        connection = self._take()
        try:
            try:
                _send(connection, args)
                reply = connection.read_response()
            except _RETRIED:
                # Once more on it, as the client's retry does. connect(), not the send's own
                # reconnect: a Sentinel-managed connection asks the Sentinels for the master
                # only there (the send would dial the address it had).
                connection.disconnect()
                connection.connect()
                _send(connection, args)
                reply = connection.read_response()
        except ResponseError:
            self._give(connection)  # the reply was read whole: the connection is clean
            raise
        except BaseException:
            connection.disconnect()  # whatever it holds now cannot be trusted
            self.pool.release(connection)  # the pool reconnects it (asking Sentinel) if reused
            raise
        self._give(connection)
        return reply

    def _take(self) -> Connection:
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not share its parent's sockets
                self._idle.clear()
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        return self.pool.get_connection()  # connected, and counted in use by the pool

    def _give(self, connection: Connection) -> None:
        with self._lock:
            self._idle.append(connection)


def commands_for(client: Any) -> Callable[..., Any]:
    """How to send a command on ``client``: :class:`DirectCommands` for a plain Redis client,
    else its own ``execute_command``."""
    if type(client) is redis.Redis and isinstance(client.connection_pool, ConnectionPool):
        return DirectCommands(client.connection_pool)

    def send(*args: Any) -> Any:  # looked up when sent: a lazy Cluster client connects then
        return client.execute_command(*args)

    return send

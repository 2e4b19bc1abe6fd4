"""Which Redis errors mean "the session store is unavailable", on every topology.

A caller must hear the spoken fallback, never an HTTP error, when Redis cannot serve: the server
is down or slow (connection and timeout errors), a Cluster shard has no master yet (CLUSTERDOWN,
MASTERDOWN, TRYAGAIN, a slot nobody covers, redirections that never settle), Sentinel names no
master, the node answering is a replica (READONLY: an old master that came back) or the server
is out of memory (OOM). :data:`STORE_UNAVAILABLE` lists them for ``except`` clauses;
:func:`is_store_unavailable` also recognises an OOM refusal that reached us as a plain error
(from inside a script). :func:`describe` says what went wrong in words fit for a log: no caller
in it is shown in full.
"""

from __future__ import annotations

import re

import redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.sentinel import MasterNotFoundError, SlaveNotFoundError

from context.callers import masked

OOM_MESSAGE = "OOM command not allowed"

STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # AuthenticationError among them
    redis.TimeoutError,
    BusyLoadingError,  # LOADING: a restarted server still reading its data
    ConnectionError,
    TimeoutError,
    OSError,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    SlotNotCoveredError,
    ClusterError,  # redirections exhausted the request's TTL: the layout is still moving
    # No seed node answered, or none knew the layout, while the client re-read it. redis-py
    # raises the same class for misuse a test would catch (a pipelined EVALSHA on a cluster);
    # such a bug is logged as "store unavailable" rather than "unexpected failure".
    RedisClusterException,
    MasterNotFoundError,
    SlaveNotFoundError,
    ReadOnlyError,
    OutOfMemoryError,
)


def is_store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis cannot serve now (as opposed to a bug or bad data)."""
    if isinstance(exc, STORE_UNAVAILABLE):
        return True
    return isinstance(exc, redis.ResponseError) and OOM_MESSAGE in str(exc)


# redis-py copies the failed command into some messages (a pipeline's error, a command a
# cluster cannot route): keys, so callers, and values, such as a session document or an event.
_COMMAND_COPIES = (
    (
        re.compile(r"Command # (\d+) \(.*\) of pipeline caused error: ", re.S),
        r"Command # \1 of pipeline: ",
    ),
    (re.compile(r"\nCommand: .*", re.S), ""),
    (re.compile(r"Invalid args in command: .*", re.S), "Invalid args in command"),
    (re.compile(r"No targets were found to execute .* command on", re.S), "No targets were found"),
)
_HASH_TAG = re.compile(r"\{([^}]*)\}")


def describe(exc: BaseException) -> str:
    """``exc``'s class and reason for a log or an error message, with no caller in full.

    redis-py's copy of the failed command is left out, and whatever is inside a ``{hash tag}``
    (the caller of every per-caller key) is masked.
    """
    text = str(exc)
    for copy, replacement in _COMMAND_COPIES:
        text = copy.sub(replacement, text)
    return f"{type(exc).__name__}: {masked_keys(text)}"


def masked_keys(text: str) -> str:
    """``text`` with the caller inside each ``{hash tag}`` masked (see :func:`masked`)."""
    return _HASH_TAG.sub(lambda found: "{" + masked(found.group(1)) + "}", text)

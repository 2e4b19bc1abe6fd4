"""What a ``REDIS_URL`` names: one server, a Redis Cluster, or a master watched by Sentinels.

Four forms are accepted: ``redis://`` and ``rediss://`` (one server, as redis-py reads them),
``redis+cluster://[user:pass@]host1:port1,host2:port2`` (seed nodes of a cluster, which has only
database 0) and ``redis+sentinel://[user:pass@]host1:port1,host2:port2/SERVICE[?db=N]`` (the
Sentinels to ask for the master of ``SERVICE``; the credentials are the master's). Parsing is
strict, because a typo here would otherwise surface as a caller's apology at the first webhook:
anything unusable is a :class:`~ivr.errors.ConfigError` that names ``REDIS_URL`` and shows
the value with its password masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from ivr.errors import ConfigError

SETTING = "REDIS_URL"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"

_PASSWORD = re.compile(r"(//[^/@?#]*?:)[^@/?#]*@")


class Topology(StrEnum):
    """How the Redis behind ``REDIS_URL`` is laid out."""

    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``REDIS_URL``: the topology and what is needed to reach it."""

    topology: Topology
    url: str  # as given (for SINGLE, what redis-py parses itself)
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seeds or Sentinels
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str | None = None  # the Sentinel service name
    db: int = 0

    @property
    def masked(self) -> str:
        """The URL fit for logs and error messages."""
        return masked_url(self.url)


def masked_url(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", url)


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``url`` into a :class:`RedisTarget`.

    Raises:
        ConfigError: the URL has an unknown scheme, no host, a bad port, a database a
            cluster cannot have, no Sentinel service name, or options Omnivoice does not know.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        _refuse(
            url, "it has no scheme; use redis://, rediss://, redis+cluster:// or redis+sentinel://"
        )
    if scheme in SINGLE_SCHEMES:
        return _single(url, scheme)
    if scheme not in (CLUSTER_SCHEME, SENTINEL_SCHEME):
        _refuse(
            url, f"the scheme {scheme!r} is not one of redis, rediss, redis+cluster, redis+sentinel"
        )
    authority, path, query = _split(rest)
    userinfo, at, hosts = authority.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    if scheme == CLUSTER_SCHEME:
        nodes = _nodes(url, hosts, DEFAULT_PORT)
        if path not in ("", "/", "/0"):
            _refuse(url, "a Redis Cluster has only database 0; leave the path out")
        if query:
            _refuse(url, f"redis+cluster:// takes no options, got {query!r}")
        return RedisTarget(Topology.CLUSTER, url, nodes, username, password)
    nodes = _nodes(url, hosts, DEFAULT_SENTINEL_PORT)
    service = path.strip("/")
    if not service or "/" in service:
        _refuse(
            url,
            "name the Sentinel service after the hosts, as in redis+sentinel://h:26379/mymaster",
        )
    return RedisTarget(
        Topology.SENTINEL, url, nodes, username, password, unquote(service), _db(url, query)
    )


def _single(url: str, scheme: str) -> RedisTarget:
    if scheme == "unix":
        return RedisTarget(Topology.SINGLE, url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when it is not a number in range
    except ValueError as exc:
        _refuse(url, f"{exc}")
    if not parts.hostname:
        _refuse(url, "it names no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        _refuse(url, f"the database {path!r} is not a number")
    return RedisTarget(Topology.SINGLE, url, ((parts.hostname, port or DEFAULT_PORT),))


def _split(rest: str) -> tuple[str, str, str]:
    """``authority``, ``path`` and ``query`` of what follows ``scheme://``."""
    rest, _hash, _fragment = rest.partition("#")
    rest, _q, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    return authority, slash + path, query


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _nodes(url: str, hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    if not hosts:
        _refuse(url, "it names no host; list host:port pairs separated by commas")
    return tuple(_node(url, item.strip(), default_port) for item in hosts.split(","))


def _node(url: str, item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, bracket, tail = item[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            _refuse(url, f"{item!r} is not a host:port pair")
        port_text = tail[1:]
    else:
        host, _colon, port_text = item.partition(":")
    if not host:
        _refuse(url, f"{item!r} names no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        _refuse(url, f"the port of {item!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _db(url: str, query: str) -> int:
    try:
        options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        _refuse(url, f"the options {query!r} are not name=value pairs")
    unknown = sorted(set(options) - {"db"})
    if unknown:
        _refuse(url, f"unknown option(s) {', '.join(unknown)}; only db=N is understood")
    values = options.get("db", ["0"])
    if len(values) != 1 or not values[0].isdigit():
        _refuse(url, f"db must be one number, got {values!r}")
    return int(values[0])


def _refuse(url: str, reason: str) -> NoReturn:
    raise ConfigError(SETTING, masked_url(url), reason)

"""Reading ``REDIS_URL``: every accepted form, and the mistakes refused with a clear message."""

from __future__ import annotations

import pytest

from context.redis_url import RedisTarget, Topology, masked_url, parse_redis_url
from ivr.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisTarget(Topology.SINGLE, "redis://127.0.0.1:6379/0", (("127.0.0.1", 6379),))),
        ("redis://cache", RedisTarget(Topology.SINGLE, "redis://cache", (("cache", 6379),))),
        ("rediss://:pw@cache:6380/2", RedisTarget(Topology.SINGLE, "rediss://:pw@cache:6380/2", (("cache", 6380),))),
        ("unix:///run/redis.sock", RedisTarget(Topology.SINGLE, "unix:///run/redis.sock")),
        (
            "redis+cluster://a:7000,b:7001,c",
            RedisTarget(Topology.CLUSTER, "redis+cluster://a:7000,b:7001,c", (("a", 7000), ("b", 7001), ("c", 6379))),
        ),
        (
            "redis+cluster://app:s%40cret@a:7000/0",
            RedisTarget(Topology.CLUSTER, "redis+cluster://app:s%40cret@a:7000/0", (("a", 7000),), "app", "s@cret"),
        ),
        (
            "redis+cluster://[::1]:7000,[fe80::1]:7001/",
            RedisTarget(Topology.CLUSTER, "redis+cluster://[::1]:7000,[fe80::1]:7001/", (("::1", 7000), ("fe80::1", 7001))),
        ),
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster",
            RedisTarget(Topology.SENTINEL, "redis+sentinel://s1:26379,s2:26380/mymaster", (("s1", 26379), ("s2", 26380)), service="mymaster"),
        ),
        (
            "redis+sentinel://:pw@s1,s2:5000/omnivoice?db=3",
            RedisTarget(Topology.SENTINEL, "redis+sentinel://:pw@s1,s2:5000/omnivoice?db=3", (("s1", 26379), ("s2", 5000)), None, "pw", "omnivoice", 3),
        ),
        (
            "REDIS+SENTINEL://s1/svc",
            RedisTarget(Topology.SENTINEL, "REDIS+SENTINEL://s1/svc", (("s1", 26379),), service="svc"),
        ),
    ],
)  # fmt: skip
def test_accepted_forms(url: str, expected: RedisTarget) -> None:
    parsed = parse_redis_url(url)
    assert parsed == expected
    assert parsed.password == expected.password  # not part of the repr, so checked on its own


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("127.0.0.1:6379", "no scheme"),
        ("http://cache:6379", "'http' is not one of"),
        ("redis+clusters://a:1", "'redis+clusters' is not one of"),
        ("redis://:secret@cache:notaport/0", "Port could not be cast"),
        ("redis://:secret@cache:99999/0", "Port out of range"),
        ("redis:///0", "names no host"),
        ("redis://cache/zero", "database 'zero' is not a number"),
        ("redis+cluster://", "names no host"),
        ("redis+cluster://:secret@", "names no host"),
        ("redis+cluster://a:7000,,b:7001", "'' names no host"),
        ("redis+cluster://a:70000", "not a number from 1 to 65535"),
        ("redis+cluster://a:x", "not a number from 1 to 65535"),
        ("redis+cluster://a:0", "not a number from 1 to 65535"),
        ("redis+cluster://[::1:7000", "is not a host:port pair"),
        ("redis+cluster://a:7000/1", "only database 0"),
        ("redis+cluster://a:7000?db=0", "takes no options"),
        ("redis+sentinel://s1:26379", "name the Sentinel service"),
        ("redis+sentinel://s1:26379/", "name the Sentinel service"),
        ("redis+sentinel://s1:26379/a/b", "name the Sentinel service"),
        ("redis+sentinel://:secret@s1/svc?db=x", "db must be one number"),
        ("redis+sentinel://s1/svc?db=1&db=2", "db must be one number"),
        ("redis+sentinel://s1/svc?timeout=1", "unknown option(s) timeout"),
        ("redis+sentinel://s1/svc?db", "not name=value pairs"),
    ],
)
def test_malformed_urls_name_the_setting_and_hide_the_password(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert message.startswith("REDIS_URL='")
    assert reason in message
    assert "secret" not in message
    assert caught.value.name == "REDIS_URL" and "secret" not in str(caught.value.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis+cluster://user:p%40ss@a:1,b:2", "redis+cluster://user:***@a:1,b:2"),
        ("redis+sentinel://:pw@s1,s2/svc?db=1", "redis+sentinel://:***@s1,s2/svc?db=1"),
        ("redis://user@h:1", "redis://user@h:1"),
        ("redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_masked_urls_keep_everything_but_the_password(url: str, masked: str) -> None:
    assert masked_url(url) == masked

"""LIVECOACH_REDIS_URL: one server, a Sentinel group, a Cluster; clear one-line errors.

Pure parsing and settings (no server): the Sentinel and Cluster servers themselves are
in test_sentinel.py and test_cluster_topology.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.transport.clients import SentinelRedis, cluster_client, is_cluster, redis_client
from pipeline.transport.driver import _joined_url
from pipeline.transport.urls import parse_redis_url

SECRET = "s3cr@t/pw"


def test_one_server_urls_keep_redis_py_parsing() -> None:
    target = parse_redis_url("rediss://alice:pw@redis.example:6380/2")
    assert (target.kind, target.db, target.username, target.password, target.tls) == (
        "single",
        2,
        "alice",
        "pw",
        True,
    )
    assert parse_redis_url("unix:///run/redis.sock?db=3").db == 3


def test_sentinel_url() -> None:
    target = parse_redis_url(
        f"redis+sentinel://app:{SECRET}@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/4"
        "?sentinel_password=sp"
    )
    assert target.kind == "sentinel"
    assert target.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (target.service, target.db) == ("mymaster", 4)
    assert (target.username, target.password) == ("app", SECRET)
    assert target.sentinel_options()["password"] == "sp"
    assert not target.tls
    assert SECRET not in repr(target)


def test_sentinel_url_with_a_bare_password_and_tls_options() -> None:
    target = parse_redis_url(
        "rediss+sentinel://:pw@s1:26379/main?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false"
    )
    assert (target.username, target.password, target.db, target.tls) == (None, "pw", 0, True)
    assert dict(target.tls_options) == {"ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": False}
    assert target.sentinel_options()["ssl"] is True


def test_cluster_url() -> None:
    target = parse_redis_url("rediss+cluster://bob:pw@h1:7000,h2:7001")
    assert target.kind == "cluster"
    assert target.nodes == (("h1", 7000), ("h2", 7001))
    assert target.auth_options() == {"username": "bob", "password": "pw", "ssl": True}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1", "expected a redis://"),
        ("redis+sentinel://h1:26379", "no Sentinel service name"),
        ("redis+sentinel://h1:26379/m/x", "bad database number 'x'"),
        ("redis+sentinel://h1:26379/m/1/2", "too many path parts"),
        ("redis+cluster://h1:7000,h2:notaport", "bad port 'notaport' of host 'h2'"),
        ("redis+cluster://h1:70000", "bad port '70000'"),
        ("redis+cluster://h1:7000/3", "a cluster has only database 0"),
        ("redis+cluster://", "no host"),
        ("redis+cluster://h1:7000,:7001", "empty host"),
        ("redis+cluster://h1:7000?ssl_ca_certs=/ca.pem", "TLS options without TLS"),
        ("redis+sentinel://h1/m?colour=blue", "unknown query parameter 'colour'"),
        ("redis://h1:7000,h2:7001/0", "several hosts"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis+sentinel://:{SECRET}@h1:26379,h2:bad/m",
        f"redis+cluster://u:{SECRET}@h1:7000/5",
        f"redis+sentinel://h1/m?sentinel_password={SECRET}&x=1",
    ],
)
def test_settings_error_names_the_variable_and_masks_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(redis_url=url)
    text = str(caught.value)
    assert "LIVECOACH_REDIS_URL" in text
    assert "s3cr" not in text and "***" in text, text


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis+sentinel://:{SECRET}@h1:26379", "no Sentinel service name"),
        (f"redis+cluster://:{SECRET}@127.0.0.1:1,127.0.0.1:2", "cannot reach Redis at"),
    ],
)
def test_the_cli_prints_one_line_and_exits_2(url: str, says: str) -> None:
    env = {
        **os.environ,
        "LIVECOACH_REDIS_URL": url,
        "LIVECOACH_DATABASE_URL": "postgresql://127.0.0.1:1/x",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "LIVECOACH_REDIS_URL" in lines[0] and says in lines[0]
    assert "s3cr" not in done.stderr


async def test_the_factory_makes_the_client_for_each_kind() -> None:
    single = redis_client("redis://127.0.0.1:1/0", max_connections=4)
    assert type(single) is aioredis.Redis
    assert single.connection_pool.max_connections == 4
    await single.aclose()
    sentinel = redis_client("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/main/3")
    assert isinstance(sentinel, SentinelRedis)
    assert sentinel.connection_pool.service_name == "main"  # type: ignore[attr-defined]
    assert sentinel.connection_pool.connection_kwargs["db"] == 3
    assert sentinel.connection_pool.connection_kwargs["password"] == "pw"
    assert sentinel.sentinel_manager is not None
    assert len(sentinel.sentinel_manager.sentinels) == 2
    await sentinel.aclose()
    cluster = cluster_client("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    assert isinstance(cluster, RedisCluster)
    await cluster.aclose()
    pooled = redis_client("redis+cluster://:pw@127.0.0.1:7000", max_connections=8)
    assert is_cluster(pooled) and not is_cluster(single)
    assert pooled.get_connection_kwargs()["password"] == "pw"
    assert pooled.get_connection_kwargs()["max_connections"] == 8
    await pooled.aclose()


def test_a_multi_host_broker_url_reaches_the_transport_whole() -> None:
    from faust.utils.urls import urllist

    url = "redis+sentinel://:p%40w@h1:26379,h2:26379/mymaster/2?sentinel_password=x"
    assert _joined_url(urllist(url)) == url
    assert _joined_url(urllist("redis://127.0.0.1:6379/0")) == "redis://127.0.0.1:6379/0"

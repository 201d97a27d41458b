"""The transport's tunables: defaults, the environment, the broker URL, bad values."""

from __future__ import annotations

import subprocess
import sys

import faust
import pytest

from pipeline.transport.clients import connect
from pipeline.transport.errors import TunableError
from pipeline.transport.tunables import Tunables


def test_defaults_without_settings() -> None:
    tunables, url = Tunables.load("redis://127.0.0.1:6379/0", environ={})
    assert tunables == Tunables()
    assert tunables.compaction_interval_s == 5.0 and tunables.producer_linger_turns == 4
    assert url == "redis://127.0.0.1:6379/0"


def test_the_url_wins_over_the_environment_and_keeps_redis_options() -> None:
    environ = {"LIVECOACH_COMPACTION_INTERVAL_S": "60", "LIVECOACH_GROUP_EXPIRY_S": "90"}
    tunables, url = Tunables.load(
        "redis://u:p@h:7000/2?socket_timeout=5&compaction_interval_s=2.5&producer_linger_turns=16",
        environ=environ,
    )
    assert tunables.compaction_interval_s == 2.5  # URL over environment
    assert tunables.group_expiry_s == 90.0  # environment over default
    assert tunables.producer_linger_turns == 16
    assert url == "redis://u:p@h:7000/2?socket_timeout=5"


@pytest.mark.parametrize(
    ("url", "environ", "named"),
    [
        (
            "redis://h/0",
            {"LIVECOACH_COMPACTION_INTERVAL_S": "soon"},
            "LIVECOACH_COMPACTION_INTERVAL_S",
        ),
        ("redis://h/0", {"LIVECOACH_DELETE_RETENTION_S": "-1"}, "LIVECOACH_DELETE_RETENTION_S"),
        ("redis://h/0?group_expiry_s=nan", {}, "group_expiry_s"),
        ("redis://h/0?producer_linger_turns=1.5", {}, "producer_linger_turns"),
        ("redis://h/0?retention_interval_s=inf", {}, "retention_interval_s"),
    ],
)
def test_a_bad_value_names_where_it_was_set(url: str, environ: dict[str, str], named: str) -> None:
    with pytest.raises(TunableError) as caught:
        Tunables.load(url, environ=environ)
    assert named in caught.value.source
    assert named in str(caught.value)


async def test_a_faust_app_reads_them_from_its_broker_url(redis_url: str) -> None:
    """Read when Faust creates the transport; the client connects with the rest."""
    app = faust.App(
        "lc-tunables-test",
        broker=f"{redis_url}?compaction_interval_s=7&producer_state_ttl_s=120",
        store="memory://",
    )
    transport = app.transport
    assert transport.tunables.compaction_interval_s == 7.0
    assert transport.tunables.producer_state_ttl_s == 120.0
    assert "compaction_interval_s" not in transport.redis_url
    client = await connect(transport.redis_url, deadline_s=5)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_the_worker_command_refuses_a_bad_tunable_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker", "--app", "live"],
        env={
            "PATH": "/usr/bin:/bin",
            "LIVECOACH_REDIS_URL": "redis://127.0.0.1:1/0?compaction_interval_s=0",
            "LIVECOACH_DATABASE_URL": "postgresql://127.0.0.1:1/x",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "livecoach: error: the broker URL's compaction_interval_s: must be positive and "
        "finite, not '0'"
    ]


def test_clients_made_from_the_broker_url_drop_the_tunables() -> None:
    from pipeline.transport.tunables import without_tunables

    assert (
        without_tunables("rediss://h:6380/1?compaction_interval_s=2&ssl_cert_reqs=none")
        == "rediss://h:6380/1?ssl_cert_reqs=none"
    )
    assert without_tunables("redis://h/0") == "redis://h/0"

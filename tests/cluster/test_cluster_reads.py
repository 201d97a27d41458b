"""Stream appends and reads on a real Redis Cluster (3 primaries + 3 replicas, loopback).

The pieces of the transport that already run on a cluster client: the append script
(one slot per partition, loaded on every primary), and reads of many partitions
(:func:`pipeline.transport.streams.xread_streams`: one ``XREAD`` per partition, one
round trip per node), which the consumer and the edge's tailer use. Then a kill -9 of
the primary that holds a partition while it is read and written: redis-py's cluster
client finds the promoted replica, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import RedisError

from pipeline.transport import epochs, streams
from pipeline.transport.clients import cluster_client
from pipeline.transport.keys import stream_key
from tests.cluster.topologies import ClusterNodes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 8


def _entry(i: int) -> streams.Entry:
    return (f"k{i}".encode(), f"v{i}".encode(), None, 1_000 + i)


async def test_partitions_on_every_node_are_read_in_one_call(
    redis_cluster: ClusterNodes,
) -> None:
    client = cluster_client(redis_cluster.url)
    try:
        await streams.declare_topic(client, "t", PARTITIONS)
        owners = {client.get_node_from_key(stream_key("t", p)).port for p in range(PARTITIONS)}
        assert len(owners) == 3, owners  # the partitions span every primary
        offsets = await streams.append_many(
            client, "t", {p: [_entry(p), _entry(p + 100)] for p in range(PARTITIONS)}
        )
        assert offsets == {p: [0, 1] for p in range(PARTITIONS)}
        got = await streams.read_many(client, {("t", p): 0 for p in range(PARTITIONS)})
        assert {tp: [o for o, _ in recs] for tp, recs in got.items()} == {
            ("t", p): [0, 1] for p in range(PARTITIONS)
        }
        assert got[("t", 5)][1][1][1] == b"v105"

        # A blocking read returns as soon as a record arrives on any node.
        ends = {("t", p): 2 for p in range(PARTITIONS)}
        reader = asyncio.create_task(streams.read_many(client, ends, block_ms=5_000))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await streams.append(client, "t", 6, [_entry(6)])
        got = await reader
        took = time.monotonic() - started
        assert list(got) == [("t", 6)] and got[("t", 6)][0][0] == 2
        assert took < 0.5, took
        # Nothing new: it waits out the block and answers nothing.
        started = time.monotonic()
        ends[("t", 6)] = 3
        assert await streams.read_many(client, ends, block_ms=300) == {}
        assert 0.29 < time.monotonic() - started < 1.5
    finally:
        await client.aclose()


async def test_reads_and_appends_go_on_after_a_primary_is_killed(
    redis_cluster: ClusterNodes,
) -> None:
    """kill -9 of a partition's primary while appending and reading: the replica is
    promoted, the client follows (slot map refresh on MOVED / connection errors), and
    every append that was acknowledged is read back, in order, without duplicates."""
    client = cluster_client(redis_cluster.url)
    await streams.declare_topic(client, "t", PARTITIONS)
    victim_port = client.get_node_from_key(stream_key("t", 0)).port
    victim = next(n for n in redis_cluster.nodes if n.port == victim_port)
    acked: list[int] = []
    failures = 0
    seen: list[int] = []
    position = 0
    killed_at = 0.0
    recovered_at: float | None = None
    acked_when_recovered = 0
    try:
        for i in range(100_000):
            if i == 300:
                victim.kill()
                killed_at = time.monotonic()
            try:
                await streams.append(client, "t", 0, [_entry(i)])
                acked.append(i)
                got = await streams.read_many(client, {("t", 0): position})
            except (RedisError, OSError):  # the failover: retry
                failures += 1
                await asyncio.sleep(0.05)
                continue
            for offset, (_, value, _, _) in got.get(("t", 0), []):
                seen.append(int(value[1:]))
                position = offset + 1
            if killed_at and recovered_at is None and i in seen:
                recovered_at = time.monotonic()
                acked_when_recovered = len(acked)
            if recovered_at is not None and len(acked) - acked_when_recovered >= 50:
                break
            assert time.monotonic() - (killed_at or time.monotonic()) < 60, (
                f"no recovery: position {position}, last seen {seen[-3:]}, acked {acked[-3:]}, "
                f"highwater {await streams.highwater(client, 't', 0)}, failures {failures}"
            )
    finally:
        await client.aclose()
    assert recovered_at is not None
    new_owner = redis_cluster.primary_ports()
    print(
        f"cluster failover: appends and reads of the killed primary's partition back "
        f"{recovered_at - killed_at:.2f} s after the kill ({failures} failed attempts); "
        f"{len(acked)} acknowledged, {len(set(acked) - set(seen))} of them lost, "
        f"{len(seen) - len(set(seen))} read twice; primaries now {new_owner}"
    )
    assert victim_port not in new_owner
    assert set(acked) <= set(seen)
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)


async def test_each_partitions_server_run_is_its_nodes(redis_cluster: ClusterNodes) -> None:
    """The consumer's check that Redis kept what it read asks each partition's own node:
    on a cluster the run id comes from the primary of the partition's slot."""
    client = cluster_client(redis_cluster.url)
    try:
        runs = await epochs.partition_runs(client, [("t", p) for p in range(PARTITIONS)])
        for p in range(PARTITIONS):
            owner = redis_cluster.primary_of(stream_key("t", p))
            assert runs[("t", p)] == owner.client().info("server")["run_id"]
        assert len(set(runs.values())) == 3
    finally:
        await client.aclose()

"""One append call carries the batches of several partitions (Redis 6.2 and 7).

Each batch has its own result: one refused (fenced) leaves the others appended. A call
that fails as a whole part-way (an error Redis raises inside it) keeps the batches
before the failure; sent again one call each with the same sequences, those are
recognised and not appended twice.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pipeline.transport import streams
from pipeline.transport.idempotence import ProducerIdentity
from pipeline.transport.keys import stream_key

pytestmark = [pytest.mark.integration]

NOW = 1_700_000_000_000


def _entries(*values: bytes) -> list[streams.Entry]:
    return [(b"k", value, {"trace": b"t"}, NOW) for value in values]


async def _run(
    r: aioredis.Redis,
    batches: list[streams.Batch],
    identity: ProducerIdentity | None = None,
    *,
    one_each: bool = False,
) -> list[streams.Outcome | Exception]:
    """Every batch's outcome; a call that failed as a whole gives its error to each."""
    server = await streams.prepare(r)
    calls = streams.append_calls(server, batches, identity=identity, one_each=one_each)
    out: list[streams.Outcome | Exception] = [ResponseError("not sent")] * len(batches)
    async with r.pipeline(transaction=False) as pipe:
        for _, command in calls:
            pipe.execute_command(*command)
        results = await pipe.execute(raise_on_error=False)
    for (indexes, _), result in zip(calls, results, strict=True):
        mine = [batches[i] for i in indexes]
        answers = [result] * len(mine) if isinstance(result, Exception) else None
        for i, outcome in zip(indexes, answers or streams.outcomes(result, mine), strict=True):
            out[i] = outcome
    return out


async def test_one_call_appends_to_several_partitions(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        await streams.append(r, "multi", 1, _entries(b"before"))
        batches = [
            streams.Batch("multi", 0, _entries(b"a0", b"a1")),
            streams.Batch("multi", 1, _entries(b"b0")),
            streams.Batch("multi", 2, _entries(b"c0", b"c1", b"c2"), maxlen=1000),
        ]
        server = await streams.prepare(r)
        assert len(streams.append_calls(server, batches)) == 1
        outcomes = await _run(r, batches)
        assert outcomes == [([0, 1], False), ([1], False), ([0, 1, 2], False)]
        read = await streams.read(r, "multi", 2, 0)
        assert [(o, value, headers) for o, (_, value, headers, _) in read] == [
            (0, b"c0", {"trace": b"t"}), (1, b"c1", {"trace": b"t"}), (2, b"c2", {"trace": b"t"}),
        ]  # fmt: skip
    finally:
        await r.aclose()


async def test_a_refused_batch_leaves_the_others_appended(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        await streams.set_fence(r, "fenced", 1, "7")  # generation 7 owns partition 1
        outcomes = await _run(
            r,
            [
                streams.Batch("fenced", 0, _entries(b"x"), fence="6"),
                streams.Batch("fenced", 1, _entries(b"y"), fence="6"),
                streams.Batch("fenced", 2, _entries(b"z")),
            ],
        )
        assert outcomes[0] == ([0], False)
        refused = outcomes[1]
        assert isinstance(refused, ResponseError), refused
        assert "FENCED" in str(refused) and "generation 7" in str(refused)
        assert outcomes[2] == ([0], False)
        assert await r.xlen(stream_key("fenced", 1)) == 0
    finally:
        await r.aclose()


async def test_a_call_failed_part_way_is_resent_one_batch_each(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    identity = ProducerIdentity(window=4)
    try:
        await r.set(stream_key("partway", 1), "not a stream")
        batches = [
            streams.Batch("partway", p, _entries(f"v{p}".encode()), sequence=1) for p in range(3)
        ]
        whole = await _run(r, batches, identity)
        assert all(isinstance(o, ResponseError) for o in whole), whole
        assert "WRONGTYPE" in str(whole[0])
        # The batch before the failure went in; the one after it did not.
        assert await r.xlen(stream_key("partway", 0)) == 1
        assert await r.xlen(stream_key("partway", 2)) == 0
        again = await _run(r, batches, identity, one_each=True)
        assert again[0] == ([0], True), "the batch already in was appended again"
        assert isinstance(again[1], ResponseError) and "WRONGTYPE" in str(again[1])
        assert again[2] == ([0], False)
        assert await r.xlen(stream_key("partway", 0)) == 1
    finally:
        await r.aclose()

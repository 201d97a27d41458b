"""Writes acknowledged once replicas hold them, on a Redis Cluster: ``WAIT`` per node.

``WAIT n ms`` answers how many replicas have every write made *on its own connection*
so far. On one server (or a Sentinel group's primary) the appends' pipeline simply ends
with it (:func:`.streams.append_many`). On a cluster that does not work: redis-py's
cluster pipeline sends a key-less ``WAIT`` to a default node, not to the nodes that
took the writes, and a write it redirected (``MOVED`` after a failover, ``ASK`` while
its slot moves) leaves the ``WAIT`` behind on a connection that wrote nothing, which
then confirms at once.

So here each node gets its writes and a ``WAIT`` on one of its own connections, in
one round trip (``ClusterNode.execute_pipeline``), the nodes in parallel. A write the
node redirects, or could not run (its connection broke, ``TRYAGAIN``, ``CLUSTERDOWN``),
is sent again, with a ``WAIT`` of its own, to the node that holds its slot then: after
``ASK`` to the importing node (preceded by ``ASKING``), otherwise after the client has
followed the slot (a command on the key through the cluster client, which refreshes
its slot map on ``MOVED`` and on connection errors). The writes must be idempotent:
one may have been applied before its reply was lost (livecoach's appends are, see
:mod:`.idempotence`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.exceptions import AskError, MovedError, SlotNotCoveredError

from pipeline.transport.errors import TRANSIENT_ERRORS, NotReplicated

#: Rounds of sending before the last transient error is raised (a failover takes
#: seconds: the caller, the edge, answers 503 and the device retries).
ATTEMPTS = 5
#: Pause before round ``n`` (n >= 1): ``n`` times this.
RETRY_DELAY_S = 0.1

#: (the key that routes the command, the command's arguments)
Command = tuple[Any, tuple[Any, ...]]


async def execute_with_wait(
    cluster: RedisCluster, commands: Sequence[Command], *, replicas: int, timeout_ms: int
) -> list[Any]:
    """Run ``commands`` (writes, each routed by its key) and return their replies, once
    ``replicas`` replicas of each node that took them confirmed them within
    ``timeout_ms`` (else :class:`~.errors.NotReplicated`).

    An error reply that is not a redirection or a transient failure is raised (the
    writes of other nodes stay done and confirmed); so is the last transient error
    after :data:`ATTEMPTS` rounds.
    """
    replies: list[Any] = [None] * len(commands)
    todo = list(range(len(commands)))
    asking: dict[int, ClusterNode] = {}
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(RETRY_DELAY_S * attempt)
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        retry: list[int] = []
        failed: BaseException | None = None
        for i in todo:
            node = asking.get(i) or cluster.get_node_from_key(commands[i][0])
            if node is None:  # no primary known for the slot (mid-failover)
                failed = SlotNotCoveredError(f"no node serves the slot of {commands[i][0]!r}")
                retry.append(i)
                continue
            by_node.setdefault(node.name, (node, []))[1].append(i)
        outcomes = await asyncio.gather(
            *(
                _run_on(
                    node, [(commands[i][1], i in asking) for i in indexes], replicas, timeout_ms
                )
                for node, indexes in by_node.values()
            ),
            return_exceptions=True,
        )
        for (node, indexes), outcome in zip(by_node.values(), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, TRANSIENT_ERRORS):
                    raise outcome
                failed = outcome
                retry += indexes
                continue
            results, confirmed = outcome
            done = []
            for i, result in zip(indexes, results, strict=True):
                asking.pop(i, None)
                if isinstance(result, AskError) and not isinstance(result, MovedError):
                    target = cluster.get_node(host=result.host, port=result.port)
                    if target is not None:
                        asking[i] = target
                    failed = result
                    retry.append(i)
                elif isinstance(result, TRANSIENT_ERRORS):  # MOVED, TRYAGAIN, CLUSTERDOWN
                    failed = result
                    retry.append(i)
                elif isinstance(result, Exception):
                    raise result
                else:
                    replies[i] = result
                    done.append(i)
            if not done:
                continue
            if isinstance(confirmed, BaseException):  # written, but not known to be copied
                failed = confirmed
                retry += done
            elif int(confirmed) < replicas:
                raise NotReplicated(
                    f"{confirmed} of {replicas} replica(s) of {node.name} confirmed "
                    f"{len(done)} write(s) within {timeout_ms} ms"
                )
        if not retry:
            return replies
        todo = sorted(retry)
        for i in todo:
            if i not in asking:
                await _follow(cluster, commands[i][0])
    assert failed is not None
    raise failed


async def _run_on(
    node: ClusterNode,
    commands: list[tuple[tuple[Any, ...], bool]],
    replicas: int,
    timeout_ms: int,
) -> tuple[list[Any], Any]:
    """Each command (after ``ASKING`` where flagged), then ``WAIT``, on one connection of
    ``node``: (the commands' replies or errors, WAIT's reply or error)."""
    queued: list[PipelineCommand] = []
    mine: list[PipelineCommand] = []
    for args, ask in commands:
        if ask:
            queued.append(PipelineCommand(len(queued), "ASKING"))
        command = PipelineCommand(len(queued), *args)
        queued.append(command)
        mine.append(command)
    wait = PipelineCommand(len(queued), "WAIT", replicas, timeout_ms)
    queued.append(wait)
    await node.execute_pipeline(queued)
    return [command.result for command in mine], wait.result


async def _follow(cluster: RedisCluster, key: Any) -> None:
    """Let the cluster client find the node of ``key``'s slot now: a read on the key
    makes it follow ``MOVED`` and refresh its slot map after a connection error."""
    with contextlib.suppress(*TRANSIENT_ERRORS):
        await cluster.exists(key)

"""The leaderboard agent's output: a group's boards on ``live``, in Redis, and its final
standings on ``store`` (docs/groups.md, "The agents")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust
import orjson

from agents import leaderboard as lb
from pipeline.constants import group_board_key
from pipeline.transport.clients import connect

#: How long a group's newest full board stays in Redis after its last emission.
BOARD_TTL_S = 2 * 86_400


class BoardPublisher:
    """Publishes a group's boards: on ``live`` (keyed by group), the full board to Redis
    at ``group_board_key`` (with each emission, before the event), and the final
    standings to ``store``. Holds the boards of this worker's groups in memory."""

    def __init__(
        self,
        app: faust.App,
        redis_url: str,
        live: faust.TopicT,
        store: faust.TopicT,
        groups: faust.TopicT,
        topic_prefix: str,
        forget: Callable[[bytes], None] = lambda key: None,
    ) -> None:
        self.app = app
        #: Called with a group this worker no longer reads (its working copy is stale).
        self.forget = forget
        self.redis_url = redis_url
        self.live = live
        self.store = store
        self.groups = groups
        #: A replay's boards stay under its own prefix (deleted with the run).
        self.key_prefix = topic_prefix
        self.boards: dict[bytes, lb.Board] = {}
        self.client: Any = None

    async def start(self) -> None:
        await self.live.maybe_declare()
        await self.store.maybe_declare()
        if self.client is None:
            self.client = await connect(self.redis_url)

    def _owned(self, key: bytes) -> bool:
        """Whether this worker reads the group's partition (a rebalance may have moved it)."""
        assignment = self.app.consumer.assignment()
        if not assignment:
            return False
        transport: Any = self.app.transport
        name = self.groups.get_topic_name()
        partition = transport.partition_for(name, key)
        return any(tp.topic == name and tp.partition == partition for tp in assignment)

    async def publish_due(self, key: bytes, board: lb.Board) -> None:
        what = lb.due(board, time.time())
        if what is None:
            return
        if not self._owned(key):
            self.boards.pop(key, None)
            self.forget(key)
            return
        await self.publish(key, board, full=what == "full")

    async def publish(
        self, key: bytes, board: lb.Board, *, full: bool = False, final: bool = False
    ) -> None:
        event, whole = lb.emit(board, time.time(), full=full, final=final)
        if self.client is None:
            await self.start()
        board_key = self.key_prefix + group_board_key(board["id"])
        if event is not None:
            await self.client.set(board_key, orjson.dumps(whole), ex=BOARD_TTL_S)
            # The next board is due a second after this one is sent, not after it was
            # computed: a slow SET must not bring two boards closer than a second.
            board["last_emit_s"] = time.time()
            send = self.app.producer.send
            await send(self.live.get_topic_name(), key, orjson.dumps(event), None, None, None)
        if final:
            standings = {"type": "group_standings", "group_id": board["id"], "rows": whole["rows"]}
            value = orjson.dumps(standings)
            await self.app.producer.send(self.store.get_topic_name(), key, value, None, None, None)
            self.boards.pop(key, None)

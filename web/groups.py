"""Group sessions on the edge's side (docs/groups.md): what the REST and WebSocket
surfaces do for a coach's group and its members.

PostgreSQL first, then the record the agents need: a group's lifecycle as a
:class:`~pipeline.records.GroupControlRecord` on ``groups`` (keyed by group id), a
member's session joining or leaving as a ``group`` :class:`~pipeline.records.ControlRecord`
on ``samples`` (keyed by session, so the live agent sees it in order with the samples),
the coach's messages as ``message`` events on ``live`` keyed by group id, on the
channel ``live:group:{id}``.

Who sees a group: its coach and its members. Anyone else gets the answer of a group
that does not exist (as for sessions: trying ids tells nobody which exist).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from pipeline.constants import group_board_key, group_channel
from pipeline.records import GroupAction, GroupControlRecord, group_key
from pipeline.users import LinkRefused
from web.access import Access, Forbidden, NotFound
from web.actions import Actions, Conflict, group_payload, now_ms
from web.auth import Principal
from web.producer import BatchingProducer
from web.store import Row, Store

__all__ = ["GroupActions", "group_payload", "read_board"]


async def read_board(redis: Any, group_id: UUID | str) -> dict[str, Any] | None:
    """The newest full board the leaderboard agent stored for the group (None: none
    yet, or not a JSON object)."""
    raw = await redis.get(group_board_key(group_id))
    if raw is None:
        return None
    try:
        board = orjson.loads(raw)
    except ValueError:
        return None
    return board if isinstance(board, dict) else None


class GroupActions:
    def __init__(
        self, store: Store, access: Access, actions: Actions, groups: BatchingProducer
    ) -> None:
        self.store = store
        self.access = access
        self.actions = actions
        self.groups = groups

    # --- who sees what -----------------------------------------------------------------

    async def visible(self, principal: Principal, group_id: UUID) -> Row:
        """The group, if the principal is its coach or one of its members."""
        group = await self.store.get_group(group_id)
        if group is not None:
            if group["coach_id"] == principal.user_id:
                return group
            if principal.role == "athlete" and await self.store.group_member(
                group_id, principal.user_id
            ):
                return group
        raise NotFound(f"no group {group_id}")

    async def owned(self, principal: Principal, group_id: UUID, what: str) -> Row:
        """The group, if the principal is its coach (a member is told 403)."""
        group = await self.visible(principal, group_id)
        if group["coach_id"] != principal.user_id:
            raise Forbidden(f"only the group's coach may {what}")
        return group

    async def may_subscribe(self, principal: Principal, group_id: UUID) -> bool:
        """Whether the principal may follow ``live:group:{id}`` (NotFound otherwise);
        True for the coach (who also gets the members' alerts there)."""
        group = await self.visible(principal, group_id)
        return bool(group["coach_id"] == principal.user_id)

    # --- the group ---------------------------------------------------------------------

    async def _control(
        self, group: Row, action: GroupAction, extra: dict[str, Any] | None = None
    ) -> None:
        ingest = now_ms()
        payload = {"group": {**group_payload(group), "coach_id": str(group["coach_id"])}}
        record = GroupControlRecord(
            group_id=group["id"],
            ingest_ms=ingest,
            action=action,
            at_ms=ingest,
            payload={**payload, **(extra or {})},
        )
        await self.groups.send(group_key(group["id"]), record.model_dump_json().encode(), ingest)

    async def create(self, principal: Principal, fields: dict[str, Any]) -> Row:
        if not principal.is_coach:
            raise Forbidden("only a coach creates a group")
        group = await self.store.create_group(principal.user_id, fields)
        await self._control(group, "created")
        return group

    async def finish(self, principal: Principal, group_id: UUID) -> Row:
        """Finish the group; again after a lost answer appends the record again (the
        leaderboard agent ignores a repeat), so a retry is safe."""
        await self.owned(principal, group_id, "finish it")
        group = await self.store.finish_group(group_id)
        if group is None:
            raise NotFound(f"no group {group_id}")
        await self._control(group, "finished")
        return group

    # --- members -----------------------------------------------------------------------

    async def add_member(
        self, principal: Principal, group_id: UUID, athlete_id: UUID
    ) -> tuple[Row, bool]:
        group = await self.owned(principal, group_id, "invite athletes")
        if group["status"] == "finished":
            raise Conflict(f"group {group_id} is finished")
        if athlete_id == principal.user_id or not await self.access.can_see_athlete(
            principal, athlete_id
        ):
            raise LinkRefused(
                "athlete_id", f"athlete {athlete_id} is not linked to coach {principal.user_id}"
            )
        return await self.store.add_group_member(group_id, athlete_id)

    async def remove_member(self, principal: Principal, group_id: UUID, athlete_id: UUID) -> None:
        """Remove a member: off the board (a ``removed`` GroupControlRecord), and a joined
        session leaves. Once finished, 409: the stored standings are final."""
        group = await self.owned(principal, group_id, "remove athletes")
        if group["status"] == "finished":
            raise Conflict(f"group {group_id} is finished: its standings are final")
        row = await self.store.remove_group_member(group_id, athlete_id)
        if row is None:
            raise NotFound(f"athlete {athlete_id} is not a member of group {group_id}")
        session = row["session_id"]
        leaving = session is not None and row["left_at"] is None
        # On ``groups`` before the session's ``left`` goes to ``samples``: the live
        # agent's last input of the session can only come after the removal.
        extra = {"athlete_id": str(athlete_id), "leaving": leaving,
                 "session_id": str(session) if session is not None else None}  # fmt: skip
        await self._control(group, "removed", extra)
        if leaving:
            await self._left(group_id, session, athlete_id)

    async def check_start(self, principal: Principal, athlete_id: UUID, group_id: UUID) -> Row:
        """The group a session about to start for ``athlete_id`` joins: the athlete must
        be a member (else the 404 of a missing group, naming ``group_id``), the group not
        finished (409)."""
        group = await self.store.get_group(group_id)
        member = await self.store.group_member(group_id, athlete_id) if group else None
        if (
            group is None
            or member is None
            or principal.user_id not in (athlete_id, group["coach_id"])
        ):
            raise NotFound(f"group_id: no group {group_id}", field="group_id")
        if group["status"] == "finished":
            raise Conflict(f"group {group_id} is finished")
        return group

    async def join(self, principal: Principal, group_id: UUID, session_id: UUID) -> Row:
        """A member's running session joins the group (late joining included)."""
        group = await self.visible(principal, group_id)
        if group["coach_id"] == principal.user_id:
            raise Forbidden("a member joins with their own session; the coach does not join")
        _, status = await self.access.require_session_owner(principal, session_id)
        if status == "completed":
            raise Conflict(f"session {session_id} is completed")
        if group["status"] == "finished":
            raise Conflict(f"group {group_id} is finished")
        row = await self.store.join_group(group_id, principal.user_id, session_id)
        if row is None:
            raise Conflict(f"group {group_id} is finished")
        await self.actions.control(
            session_id, principal.user_id, "group", payload={"group": group_payload(group)}
        )
        return row

    async def leave(self, principal: Principal, group_id: UUID) -> Row:
        """A member's session leaves the group early."""
        await self.visible(principal, group_id)
        row = await self.store.leave_group(group_id, principal.user_id)
        if row is None:
            raise Conflict(f"not in group {group_id}: join it first")
        await self._left(group_id, row["session_id"], principal.user_id)
        return row

    async def _left(self, group_id: UUID, session_id: UUID, athlete_id: UUID) -> None:
        await self.actions.control(
            session_id, athlete_id, "group", payload={"group": None, "left": str(group_id)}
        )

    # --- chat --------------------------------------------------------------------------

    async def post_message(
        self, principal: Principal, group_id: UUID, text: str, client_message_id: str | None
    ) -> tuple[Row, bool]:
        """The coach's message to everyone in the group: stored, then on the group's
        channel (as a ``message`` event with ``group_id``); (row, created). A retry with
        the same ``client_message_id`` gets the first row and publishes nothing."""
        await self.owned(principal, group_id, "write to the group")
        row, created = await self.store.insert_group_message(
            group_id, principal.user_id, text, client_message_id
        )
        if not created:
            return row, False
        ts = now_ms()
        event = {
            "type": "message",
            "timestamp": ts / 1000.0,
            "group_id": str(group_id),
            "channels": [group_channel(group_id)],
            "message": {
                "id": str(row["id"]),
                "sender_id": str(principal.user_id),
                "recipient_id": None,
                "message": text,
                "from": str(principal.user_id),
                "text": text,
                "role": principal.role,
                "client_message_id": client_message_id,
                "created_at": row["created_at"],
            },
        }
        await self.actions.live.send(group_key(group_id), orjson.dumps(event), ts)
        return row, True

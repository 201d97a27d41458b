"""What the edge does on a client's behalf, shared by the REST and WebSocket surfaces:
accept samples, change a session's lifecycle, post and read chat, acknowledge alerts.

Samples and lifecycle changes go to ``samples`` (keyed by session, so the agents see
them in order); chat, read receipts and acknowledgements are persisted first and then
appended to ``live`` directly, so every dashboard gets them with an offset it can
resume from.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from opentelemetry import trace
from pydantic import ValidationError

from pipeline import tracing
from pipeline.models import Sample
from pipeline.records import ControlAction, ControlRecord, SampleBatchRecord, session_key
from pipeline.users import LinkRefused
from web.access import Access, Forbidden, NotFound
from web.auth import Principal
from web.clock import ClockWindow
from web.errors import EdgeError
from web.observability import EdgeMetrics
from web.producer import BatchingProducer
from web.store import Store


class Conflict(EdgeError):
    """The session is not in a state that allows this (409)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def group_payload(group: dict[str, Any]) -> dict[str, Any]:
    """``payload.group`` of the control records (docs/groups.md): what the agents know
    of a group, from its row."""
    starts_at = dt.datetime.fromisoformat(str(group["starts_at"]).replace("Z", "+00:00"))
    return {
        "id": str(group["id"]),
        "kind": group["kind"],
        "sport": group["sport"],
        "distance_m": group["distance_m"],
        "starts_at_ms": int(starts_at.timestamp() * 1000),
        "plan": group["plan"],
    }


def _dumps(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


@dataclass(frozen=True)
class Accepted:
    session_id: UUID
    accepted: int
    partition: int
    offset: int
    ingest_ms: int


def parse_samples(session_id: UUID, raw: Sequence[Any], window: ClockWindow) -> list[Sample]:
    """Validate raw samples of one session; the path's session id fills in a missing one.
    A sample's ``t`` must lie in ``window`` around the edge's clock.

    Raises ValidationError whose locations start at the sample's index.
    """
    out: list[Sample] = []
    errors: list[Any] = []
    now_s = time.time()
    for i, item in enumerate(raw):
        if isinstance(item, dict):
            item = {"session_id": session_id, **item}
        try:
            sample = Sample.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors():
                errors.append({**err, "loc": (i, *err["loc"])})
            continue
        if sample.session_id != session_id:
            errors.append(
                {
                    "type": "value_error",
                    "loc": (i, "session_id"),
                    "input": sample.session_id,
                    "ctx": {"error": ValueError(f"expected session {session_id}")},
                }
            )
            continue
        refusal = window.refusal(sample.t, now_s)
        if refusal is not None:
            errors.append(
                {
                    "type": "value_error",
                    "loc": (i, "t"),
                    "input": sample.t,
                    "ctx": {"error": ValueError(refusal)},
                }
            )
            continue
        out.append(sample)
    if errors:
        raise ValidationError.from_exception_data("samples", errors)
    return out


class Actions:
    def __init__(
        self,
        store: Store,
        access: Access,
        samples: BatchingProducer,
        live: BatchingProducer,
        metrics: EdgeMetrics,
    ) -> None:
        self.store = store
        self.access = access
        self.samples = samples
        self.live = live
        self.metrics = metrics

    async def accept_samples(
        self, principal: Principal, session_id: UUID, samples: list[Sample]
    ) -> Accepted:
        user_id, status = await self.access.require_session_owner(principal, session_id)
        if status == "completed":
            raise Conflict(f"session {session_id} is completed; start a new one")
        ingest = now_ms()
        # Built without validating again what parse_samples validated.
        record = SampleBatchRecord.model_construct(
            session_id=session_id,
            user_id=user_id,
            ingest_ms=ingest,
            samples=[s.model_dump(mode="json", exclude_none=True) for s in samples],
        )
        headers = None
        if tracing.tracer() is not None:
            # The request's span (web.observability) is the parent of the live agent's.
            span = trace.get_current_span()
            if span.get_span_context().is_valid:
                span.set_attribute("livecoach.session_id", str(session_id))
                span.set_attribute("livecoach.samples", len(samples))
                headers = {tracing.TRACEPARENT: tracing.traceparent(span)}
        partition, offset = await self.samples.send(
            session_key(session_id), record.model_dump_json().encode(), ingest, headers
        )
        self.metrics.samples_accepted.inc(len(samples))
        return Accepted(session_id, len(samples), partition, offset, ingest)

    async def control(
        self,
        session_id: UUID,
        user_id: UUID,
        action: ControlAction,
        *,
        at_ms: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> tuple[int, int]:
        ingest = now_ms()
        record = ControlRecord(
            session_id=session_id,
            user_id=user_id,
            ingest_ms=ingest,
            action=action,
            at_ms=at_ms if at_ms is not None else ingest,
            payload=payload or {},
        )
        return await self.samples.send(
            session_key(session_id), record.model_dump_json().encode(), ingest
        )

    async def start_session(
        self,
        principal: Principal,
        *,
        athlete_id: UUID | None,
        coach_id: UUID | None,
        training_session_id: UUID | None,
        metadata: dict[str, Any],
        created: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        group_id: UUID | None = None,
    ) -> dict[str, Any]:
        """Create the session's row, then announce it to the agents (:meth:`announce_start`).

        ``created`` is called with the row in between: a request whose announcement
        fails (Redis away, no replica in time) can then be finished by its retry instead
        of leaving an open row behind and making a second one. With ``group_id`` (a
        group the athlete is a member of, checked by the caller) the session joins it
        at its start: the member row is written with the session's.
        """
        athlete = athlete_id if athlete_id is not None else principal.user_id
        if principal.is_coach and athlete_id is None:
            raise Forbidden("a coach starts a session for a linked athlete: give athlete_id")
        await self.access.require_athlete(principal, athlete)
        if training_session_id is not None:
            owner = await self.store.training_session_owner(training_session_id)
            if owner is None:
                raise NotFound(
                    f"training_session_id: no training session {training_session_id}",
                    field="training_session_id",
                )
            if owner != athlete:
                raise Forbidden(
                    f"training_session_id: training session {training_session_id}"
                    f" belongs to another athlete, not {athlete}",
                    field="training_session_id",
                )
        if principal.is_coach and coach_id is None:
            coach_id = principal.user_id
        if coach_id is not None and not await self.store.is_linked(coach_id, athlete):
            raise Forbidden(f"coach {coach_id} is not linked to athlete {athlete}")
        row = await self.store.create_session(
            user_id=athlete,
            coach_id=coach_id,
            training_session_id=training_session_id,
            metadata=metadata,
        )
        self.access.remember_session(row)
        if (
            group_id is not None
            and await self.store.join_group(group_id, athlete, row["id"], at_start=True) is None
        ):
            raise Conflict(f"group {group_id} is finished")
        if created is not None:
            await created(row)
        await self.announce_start(row)
        return row

    async def announce_start(self, row: dict[str, Any]) -> None:
        """Append the start record of a created session, dated by its row.

        The agents never read PostgreSQL: the profile and alert settings travel with the
        start (and with every later edit, see control_profile). Announcing a session
        twice is harmless: the agents start a session once.
        """
        athlete: UUID = row["user_id"]
        metadata: dict[str, Any] = row.get("metadata") or {}
        profile = await self.store.get_profile(athlete)
        payload: dict[str, Any] = {"metadata": metadata}
        if profile is not None:
            payload["profile"] = profile
        group = await self.store.group_of_session(row["id"])
        if group is not None:
            payload["group"] = group_payload(group)
        if metadata.get("lap_mode") in ("distance", "time"):
            payload["lap_mode"] = metadata["lap_mode"]  # the agents' auto-lap mode
        # The row as the store and the edge give it: started_at in ISO 8601 UTC ("...Z").
        started = dt.datetime.fromisoformat(str(row["started_at"]).replace("Z", "+00:00"))
        at_ms = int(started.timestamp() * 1000)
        await self.control(row["id"], athlete, "start", at_ms=at_ms, payload=payload)

    async def lifecycle(
        self,
        principal: Principal,
        session_id: UUID,
        action: str,
        at_ms: int | None,
        *,
        reason: str | None = None,
    ) -> dict[str, Any]:
        await self.access.require_session(principal, session_id)
        row, changed = await self.store.transition(session_id, action)
        assert row is not None
        self.access.remember_session(row)
        if not changed:
            raise Conflict(f"cannot {action} session {session_id}: it is {row['status']}")
        action_name: ControlAction = action  # type: ignore[assignment]
        payload: dict[str, Any] = {"by": principal.user_id}
        if reason is not None:
            payload["reason"] = reason  # the stop's session_event carries it
        await self.control(session_id, row["user_id"], action_name, at_ms=at_ms, payload=payload)
        return row

    async def manual_lap(
        self, principal: Principal, session_id: UUID, at_ms: int | None
    ) -> dict[str, Any]:
        """Close the current lap of a running session now (or at ``at_ms``): a control
        record the agents apply as :meth:`SessionMetrics.manual_lap`; the lap itself
        arrives on ``live`` as a ``session_event`` ``lap`` (none when the lap is empty)."""
        await self.access.require_session(principal, session_id)
        row = await self.store.get_session(session_id)
        if row is None:
            raise NotFound(f"no live session {session_id}")
        if row["status"] != "active":
            raise Conflict(f"cannot lap session {session_id}: it is {row['status']}")
        at = at_ms if at_ms is not None else now_ms()
        await self.control(
            session_id, row["user_id"], "lap", at_ms=at, payload={"by": principal.user_id}
        )
        return {"session_id": session_id, "at_ms": at}

    async def control_profile(self, athlete_id: UUID, profile: dict[str, Any]) -> None:
        """Tell the agents of each open session of the athlete about the new profile."""
        for row in await self.store.open_sessions(athlete_id):
            await self.control(row["id"], athlete_id, "profile", payload={"profile": profile})

    async def publish_live(self, session_id: UUID, event: dict[str, Any]) -> tuple[int, int]:
        ts = now_ms()
        event = {"timestamp": ts / 1000.0, **event}
        return await self.live.send(session_key(session_id), _dumps(event), ts)

    async def post_message(
        self,
        principal: Principal,
        session_id: UUID,
        text: str,
        client_message_id: str | None,
        recipient_id: UUID | None = None,
    ) -> tuple[dict[str, Any], bool]:
        athlete_id, _ = await self.access.require_session(principal, session_id)
        if recipient_id is not None and (
            recipient_id == principal.user_id
            or not await self.store.chat_member(session_id, recipient_id)
        ):
            raise LinkRefused(
                "recipient_id",
                f"recipient_id: {recipient_id} is not the session's athlete or one of"
                " their coaches (nor someone else than the sender)",
            )
        row, created = await self.store.insert_message(
            session_id=session_id,
            sender_id=principal.user_id,
            text=text,
            message_type="text",
            client_message_id=client_message_id,
            recipient_id=recipient_id,
        )
        if created:
            await self.publish_live(
                session_id,
                {
                    "type": "message",
                    "session_id": session_id,
                    "user_id": athlete_id,
                    "message": {
                        "id": row["id"],
                        # The chat's order (message ids are UUIDs and have none).
                        "seq": row["seq"],
                        "sender_id": principal.user_id,
                        "recipient_id": row.get("recipient_id"),
                        "message": text,
                        "from": principal.user_id,  # sender_id's old name
                        "role": principal.role,
                        "text": text,  # message's old name
                        "client_message_id": client_message_id,
                        "created_at": row["created_at"],
                    },
                },
            )
        return row, created

    async def mark_read(self, principal: Principal, session_id: UUID, up_to_id: UUID) -> list[UUID]:
        athlete_id, _ = await self.access.require_session(principal, session_id)
        ids = await self.store.mark_read(session_id, principal.user_id, up_to_id)
        if ids:
            await self.publish_live(
                session_id,
                {
                    "type": "read_receipt",
                    "session_id": session_id,
                    "user_id": athlete_id,
                    "reader_id": principal.user_id,
                    "message_ids": ids,
                    "up_to_id": up_to_id,
                },
            )
        return ids

    async def ack_alert(self, principal: Principal, alert_id: UUID) -> dict[str, Any]:
        alert = await self.store.get_alert(alert_id)
        # Another athlete's alert is answered as a missing one: ids cannot be probed.
        if alert is None or not await self.access.can_see_athlete(principal, alert["user_id"]):
            raise NotFound(f"no alert {alert_id}")
        first = alert["acknowledged_at"] is None
        row = await self.store.ack_alert(alert_id, principal.user_id)
        assert row is not None
        if first:
            await self.publish_live(
                row["live_session_id"],
                {
                    "type": "session_event",
                    "event": "alert_acknowledged",
                    "session_id": row["live_session_id"],
                    "user_id": row["user_id"],
                    "alert_id": alert_id,
                    "acknowledged_by": principal.user_id,
                },
            )
        return row

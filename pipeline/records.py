"""What travels on the ``samples`` topic, between the edge and the agents.

One stream entry carries a batch: the edge groups the samples it accepted for one
session within a few milliseconds into one :class:`SampleBatchRecord`, which divides
Faust's per-event cost. Lifecycle changes (start, pause, resume, stop, lap) travel on
the same topic and key as :class:`ControlRecord`, so that the agents see them in order
with the samples around them. Both are keyed by session id (its canonical UUID text).

``ingest_ms`` is when the edge accepted the record (epoch milliseconds): the start of
the sample-to-socket latency the edge measures.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: ``group``: the session joined a group (``payload.group``) or left it (``payload.group``
#: null), see docs/groups.md.
ControlAction = Literal["start", "pause", "resume", "stop", "lap", "profile", "group"]


class SampleBatchRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["samples"] = "samples"
    session_id: UUID
    user_id: UUID
    ingest_ms: int
    #: Validated samples (pipeline.models.Sample dumped in JSON mode), oldest first.
    samples: list[dict[str, Any]]


class ControlRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["control"] = "control"
    session_id: UUID
    user_id: UUID
    ingest_ms: int
    action: ControlAction
    #: When the action happened (epoch milliseconds, the device's or the edge's clock).
    at_ms: int
    #: Action details: lap name, auto-lap mode on start, profile changes, ...
    payload: dict[str, Any] = Field(default_factory=dict)


SamplesTopicRecord = Annotated[SampleBatchRecord | ControlRecord, Field(discriminator="kind")]
samples_topic_record: TypeAdapter[SampleBatchRecord | ControlRecord] = TypeAdapter(
    SamplesTopicRecord
)


def session_key(session_id: UUID | str) -> bytes:
    """The message key of a session on ``samples`` and ``live``."""
    return str(session_id).encode()


# --- the ``groups`` topic (docs/groups.md), keyed by group id -------------------------

#: A member's status as the live agent sees its session (the leaderboard adds
#: ``finished`` and ``no_data``).
MemberStatus = Literal["active", "paused", "stopped", "left"]


class GroupInputRecord(BaseModel):
    """One member's standing inputs after one record of its session (one per record,
    not per sample): what the leaderboard agent ranks by. Figures are the session's
    own (``elapsed_s`` excludes pauses; ``distance_m`` from its start); ``t`` is the
    newest sample time they include (None before the first sample)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["input"] = "input"
    group_id: UUID
    session_id: UUID
    athlete_id: UUID
    ingest_ms: int
    status: MemberStatus
    #: The group's kind and finish line as the session has them (so that a board
    #: needs no ``created`` record to rank).
    group_kind: Literal["race", "class"] = "race"
    race_distance_m: float | None = None
    t: float | None = None
    samples: int = 0
    distance_m: float | None = None
    elapsed_s: float | None = None
    moving_s: float | None = None
    #: A race's: the session time at which ``distance_m`` reached the finish line.
    finish_s: float | None = None
    #: A class's shared plan (else the session's own): % of targeted time in target,
    #: and those seconds; None before any targeted second.
    pct_target: float | None = None
    time_in_zone_s: float | None = None
    np_w: float | None = None
    #: The 3 s power over the athlete's weight (None without a weight or power).
    w_per_kg: float | None = None
    #: Alerts raised in the last minute of sample time.
    alerts_open: int = 0
    #: ``[elapsed_s, distance_m]`` points since the member's previous input, one every
    #: few seconds of session time (the leaderboard's distance-over-time history).
    track: list[tuple[float, float]] = Field(default_factory=list)


#: ``created``: the group exists (``payload.group``, as on a joining session);
#: ``finished``: the coach finished it, the leaderboard publishes its final board;
#: ``removed``: the coach removed a member (``payload.athlete_id``, ``session_id``, and
#: ``leaving``: whether a last ``left`` input of that session is still to come).
GroupAction = Literal["created", "finished", "removed"]


class GroupControlRecord(BaseModel):
    """A group's lifecycle, appended by the edge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["control"] = "control"
    group_id: UUID
    action: GroupAction
    ingest_ms: int
    at_ms: int
    payload: dict[str, Any] = Field(default_factory=dict)


GroupsTopicRecord = Annotated[GroupInputRecord | GroupControlRecord, Field(discriminator="kind")]
groups_topic_record: TypeAdapter[GroupInputRecord | GroupControlRecord] = TypeAdapter(
    GroupsTopicRecord
)


def group_key(group_id: UUID | str) -> bytes:
    """The message key of a group on ``groups`` and of its ``leaderboard`` on ``live``."""
    return str(group_id).encode()

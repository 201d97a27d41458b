"""REST request and response bodies (pydantic), also the source of the OpenAPI schemas.

Samples themselves are :class:`pipeline.models.Sample`; what is here is specific to the
REST surface: session lifecycle, thresholds and preferences, chat, alerts.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agents.alerts.plan import parse_plan
from pipeline.models import EPOCH_MAX_S, SAMPLE_BATCH_MAX, AthleteProfile, message_from_text

_STRICT = ConfigDict(extra="forbid")

#: Largest session ``metadata``, as compact UTF-8 JSON: a workout file (ZWO, ERG, MRC)
#: of a few hundred steps fits; megabytes of free-form data do not belong in a session.
METADATA_MAX_BYTES = 64 * 1024
#: Largest ``alert_settings`` update, as compact UTF-8 JSON.
ALERT_SETTINGS_MAX_BYTES = 16 * 1024


def _check_json_size(value: Any, limit: int) -> Any:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limit:
        raise ValueError(f"at most {limit} bytes as JSON, got {size}")
    return value


class StartSession(BaseModel):
    model_config = _STRICT

    #: A coach may start a session for a linked athlete; an athlete starts their own.
    athlete_id: UUID | None = None
    coach_id: UUID | None = None
    training_session_id: UUID | None = None
    #: A group the athlete is a member of: the session joins it at its start.
    group_id: UUID | None = None
    sport: str | None = Field(default=None, max_length=20)
    #: Free-form; ``plan`` is a structured workout (docs/alerts.md: our JSON, or
    #: ``{"zwo" | "erg" | "mrc": "<file text>"}``), checked here so a bad plan is a 422.
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _plan_is_valid(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        _check_json_size(metadata, METADATA_MAX_BYTES)
        if "plan" in metadata:
            # FTP only scales ZWO and MRC powers; the structure does not depend on it.
            parse_plan(metadata["plan"], ftp_w=250.0)
        return metadata


class LifecycleBody(BaseModel):
    model_config = _STRICT

    #: When it happened on the device (epoch ms); the edge's clock when absent.
    at_ms: int | None = Field(default=None, ge=0, le=int(EPOCH_MAX_S * 1000))
    reason: str | None = Field(default=None, max_length=200)


class SessionOut(BaseModel):
    id: UUID
    user_id: UUID
    training_session_id: UUID | None
    status: str = Field(description="active, paused or completed")
    started_at: str = Field(description="ISO 8601 UTC")
    last_update_at: str = Field(description="ISO 8601 UTC")
    coach_id: UUID | None
    metadata: dict[str, Any] | None


class SessionList(BaseModel):
    sessions: list[SessionOut]
    #: Pass as ``before`` for the next (older) page; None on the last page.
    next_before: str | None = None


class LapAccepted(BaseModel):
    """A manual lap on its way to the agents; the lap comes as a ``session_event``."""

    session_id: UUID
    at_ms: int


class SamplesAccepted(BaseModel):
    session_id: UUID
    accepted: int
    partition: int
    offset: int
    ingest_ms: int


class UpdateBody(BaseModel):
    """One sample (the fields of a Sample) or ``{"samples": [...]}``; session id optional."""

    model_config = ConfigDict(extra="allow")

    samples: list[dict[str, Any]] | None = Field(default=None, max_length=SAMPLE_BATCH_MAX)


class MetricPoint(BaseModel):
    metric_type: str
    bucket: str
    avg: float
    min: float
    max: float
    n: int


class MetricsHistory(BaseModel):
    session_id: UUID
    #: The bucket width; None with ``points`` (LTTB keeps samples, it does not bucket).
    bucket_s: float | None
    #: ``buckets`` (avg/min/max per bucket) or ``lttb`` (kept samples: avg = min = max, n = 1).
    downsampling: Literal["buckets", "lttb"] = "buckets"
    points: list[MetricPoint]


class AlertOut(BaseModel):
    id: UUID
    live_session_id: UUID
    user_id: UUID
    rule: str
    metric: str
    severity: str
    message: str
    current_value: float | None
    threshold: float | None
    triggered_at: str
    acknowledged_at: str | None
    acknowledged_by: UUID | None
    payload: dict[str, Any]


class AlertList(BaseModel):
    alerts: list[AlertOut]


class Thresholds(BaseModel):
    """An athlete's physiology, alert rules and delivery preferences (PUT replaces given
    fields; omitted fields keep their stored value)."""

    model_config = _STRICT

    hr_max: int | None = Field(default=None, ge=100, le=250)
    hr_rest: int | None = Field(default=None, ge=25, le=120)
    lthr: int | None = Field(default=None, ge=80, le=230)
    ftp_w: float | None = Field(default=None, gt=0, lt=1000)
    w_prime_j: float | None = Field(default=None, gt=0, lt=100_000)
    threshold_pace_s_per_km: float | None = Field(default=None, ge=120, le=900)
    #: For W/kg on group leaderboards.
    weight_kg: float | None = Field(default=None, ge=20, le=300)
    sex: Literal["male", "female"] | None = None
    sound: bool | None = None
    vibration: bool | None = None
    #: A partial :class:`agents.alerts.config.AlertConfig` document, merged into the
    #: stored one and validated as a whole (unknown rules and fields are refused).
    alert_settings: dict[str, Any] | None = None

    @field_validator("alert_settings")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_json_size(value, ALERT_SETTINGS_MAX_BYTES) if value is not None else None

    @model_validator(mode="after")
    def _check(self) -> Thresholds:
        if self.hr_rest is not None and self.hr_max is not None and self.hr_rest >= self.hr_max:
            raise ValueError(f"hr_rest ({self.hr_rest}) must be below hr_max ({self.hr_max})")
        return self


class ThresholdsOut(BaseModel):
    user_id: UUID
    hr_max: int | None = None
    hr_rest: int | None = None
    lthr: int | None = None
    ftp_w: float | None = None
    w_prime_j: float | None = None
    threshold_pace_s_per_km: float | None = None
    weight_kg: float | None = None
    sex: str = "male"
    sound: bool = True
    vibration: bool = True
    alert_settings: dict[str, Any] = Field(default_factory=dict)
    updated_at: str | None = None


class PostMessage(BaseModel):
    """A chat message. ``message`` is its text (``text``, its old name, is still taken);
    ``recipient_id`` whom it is for: the session's athlete or one of their coaches (by
    default the session's coach for the athlete's messages, else the athlete)."""

    model_config = _STRICT

    session_id: UUID
    message: str = Field(min_length=1, max_length=4000)
    recipient_id: UUID | None = None
    #: The client's id for the message: a retry with the same id is stored once.
    client_message_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _text_is_the_old_name(cls, data: Any) -> Any:
        return message_from_text(data)


class MessageRead(BaseModel):
    reader_id: UUID
    read_at: str


class MessageOut(BaseModel):
    id: UUID
    live_session_id: UUID
    sender_id: UUID
    recipient_id: UUID | None
    message_type: str | None
    message: str
    created_at: str
    read_at: str | None = Field(description="the first read by a recipient (see reads)")
    client_message_id: str | None
    reads: list[MessageRead] = Field(default_factory=list, description="who read it, when")


class MessageList(BaseModel):
    messages: list[MessageOut]


class ReadBody(BaseModel):
    model_config = _STRICT

    up_to_id: UUID = Field(description="The newest message read (its id)")


class Person(BaseModel):
    id: UUID
    name: str = Field(description="display name (users.name); may be empty")
    role: str


class Roster(BaseModel):
    """The caller and the people linked to them (what the dashboard names and lists)."""

    me: Person
    athletes: list[Person] = Field(description="a coach's linked athletes; an athlete: itself")
    coaches: list[Person] = Field(description="an athlete's coaches; a coach: none")


class Watchers(BaseModel):
    athlete_id: UUID
    watchers: list[dict[str, Any]]


# --- groups (docs/groups.md) ------------------------------------------------------------


class NewGroup(BaseModel):
    """A coach's class or race. ``distance_m`` is a race's finish line (none: open-ended),
    ``plan`` a class's shared structured workout (the shape of a session's plan)."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)
    sport: Literal["ride", "run"]
    kind: Literal["race", "class"]
    starts_at: dt.datetime = Field(description="ISO 8601 (no zone: UTC) or epoch seconds")
    distance_m: float | None = Field(default=None, gt=0, le=1_000_000)
    plan: dict[str, Any] | None = None

    @field_validator("starts_at")
    @classmethod
    def _sane_year(cls, value: dt.datetime) -> dt.datetime:
        if not 2000 <= value.year <= 2200:
            raise ValueError("expected a year from 2000 to 2200")
        return value

    @field_validator("distance_m")
    @classmethod
    def _race_only(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("expected a finite number")
        if value is not None and info.data.get("kind") == "class":
            raise ValueError("a class has no distance (only a race has a finish line)")
        return value

    @field_validator("plan")
    @classmethod
    def _class_plan(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if info.data.get("kind") == "race":
            raise ValueError("a race has no shared plan (only a class has one)")
        _check_json_size(value, METADATA_MAX_BYTES)
        parse_plan(value, ftp_w=250.0)
        return value


class GroupMember(BaseModel):
    athlete_id: UUID
    name: str = Field(description="display name (users.name); may be empty")
    invited_at: str
    session_id: UUID | None = Field(description="the live session it joined with")
    joined_at: str | None
    left_at: str | None


class GroupStanding(BaseModel):
    athlete_id: UUID
    rank: int | None
    standing: dict[str, Any] = Field(description="the leaderboard row as last published")
    computed_at: str


class GroupOut(BaseModel):
    id: UUID
    coach_id: UUID
    name: str
    sport: str
    kind: str = Field(description="race or class")
    starts_at: str
    distance_m: float | None
    plan: dict[str, Any] | None
    status: str = Field(description="scheduled, live or finished")
    created_at: str
    finished_at: str | None
    members: list[GroupMember] | None = Field(
        default=None, description="with GET groups/{id}: the members and their names"
    )
    standings: list[GroupStanding] | None = Field(
        default=None, description="with GET groups/{id} of a finished group: the final standings"
    )


class GroupList(BaseModel):
    groups: list[GroupOut]


class AddMember(BaseModel):
    model_config = _STRICT

    athlete_id: UUID = Field(description="an athlete linked to the coach")


class JoinGroup(BaseModel):
    model_config = _STRICT

    session_id: UUID = Field(description="the athlete's running live session")


class GroupMessageBody(BaseModel):
    """The coach's message to everyone in the group (``text``: its old name)."""

    model_config = _STRICT

    message: str = Field(min_length=1, max_length=4000)
    #: The client's id for the message: a retry with the same id is stored once.
    client_message_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _text_is_the_old_name(cls, data: Any) -> Any:
        return message_from_text(data)


class GroupMessageOut(BaseModel):
    id: UUID
    group_id: UUID
    sender_id: UUID
    message: str
    client_message_id: str | None = None
    created_at: str


class GroupMessageList(BaseModel):
    messages: list[GroupMessageOut]


__all__ = ["AthleteProfile"]

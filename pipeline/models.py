"""Validated data models: device samples, the athlete profile and the wire protocol.

Samples come from devices (HTTP or WebSocket, through the edge) and from recordings
(:mod:`pipeline.recordings`); both pass through :class:`Sample`, which rejects what no
sensor can measure (NaN, infinities, negative or absurd values) with a message naming
the field and the bound. The agents in :mod:`agents` only ever see valid samples.

Time is epoch seconds (UTC) as a float everywhere in the hot path: it is compact in
JSON and in the per-session state, cheap to subtract, and a ``datetime`` (aware, or
naive meaning UTC) or an ISO 8601 string is accepted on input and converted.

The wire protocol (see ``DESIGN.md``) is two discriminated unions on ``type``:
:data:`ServerEvent` (server to client) and :data:`ClientFrame` (client to server).
``python -m pipeline.models`` writes their JSON Schema to
:data:`schema.PROTOCOL_SCHEMA`; ``tests/test_protocol_schema.py`` fails when the
checked-in file is out of date.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

#: Bounds of what a sensor can plausibly report. Beyond them a value is a glitch, not
#: an effort: the fastest human sprint is ~12.5 m/s, a fast descent on a bike ~25 m/s,
#: so 30 m/s (108 km/h) leaves room for a downhill without letting GPS jumps through.
HEART_RATE_MIN_BPM = 20.0
HEART_RATE_MAX_BPM = 250.0
POWER_MAX_W = 2500.0
SPEED_MAX_M_S = 30.0
CADENCE_MAX_RPM = 300.0
#: 10,000 km: longer than any single recorded activity.
DISTANCE_MAX_M = 10_000_000.0
ALTITUDE_MIN_M = -500.0
ALTITUDE_MAX_M = 9_000.0
#: Epoch seconds: 2000-01-01 .. 2100-01-01. Earlier means a device with an unset clock.
EPOCH_MIN_S = 946_684_800.0
EPOCH_MAX_S = 4_102_444_800.0

SessionId = Annotated[uuid.UUID, Field(description="live_training_sessions.id, a UUID")]
#: A user id on the wire: the host's user id (a token's ``sub``), a UUID.
UserIdWire = Annotated[uuid.UUID, Field(description="users.id: the host's user id, a UUID")]
#: A canonical UUID as text (lower case, hyphenated): the form ids take in channel names.
UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: A time on the wire: ISO 8601 with a zone (``Z`` or an offset).
IsoTime = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
        description="ISO 8601 date and time with a zone, e.g. 2025-09-30T12:00:00Z",
    ),
]


#: (second, its text): one tuple, replaced whole, so threads never see a torn pair.
_iso_cache: tuple[int, str] = (-1, "")


def iso_z(epoch_s: float) -> str:
    """Epoch seconds as the wire's ISO 8601 UTC time, to the nearest millisecond:
    ``2025-09-30T12:00:00.250Z``. The part up to the second is cached: the edge formats
    every live event's time, and the events of one second share it."""
    global _iso_cache
    second, ms = divmod(round(epoch_s * 1000), 1000)
    cached = _iso_cache
    if cached[0] != second:
        cached = _iso_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{ms:03d}Z"


def spec_reading(metrics: dict[str, Any], t: Any) -> dict[str, Any]:
    """A sample dict from the spec's device shape: ``metrics`` in the spec's names and
    units (``pace`` minutes per km as a decimal, ``distance`` km, ``power`` W) at ``t``.

    ValueError naming the field when a pace is not a positive number (a pace of 0 has
    no speed). Other names pass through for :class:`Sample` to check.
    """
    sample: dict[str, Any] = {}
    for name, value in metrics.items():
        if name == "pace":
            if value is not None:
                if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                    raise ValueError("metrics.pace: expected minutes per km above 0")
                sample["speed_m_s"] = 1000.0 / (value * 60.0)
        elif name == "distance":
            ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            if not ok:
                raise ValueError("metrics.distance: expected km as a number")
            sample["distance_m"] = None if value is None else value * 1000.0
        else:
            sample[_SPEC_NAMES.get(name, name)] = value
    sample["t"] = t
    return sample


#: The spec's metric names that differ from a Sample's (same unit).
_SPEC_NAMES = {"power": "power_w", "altitude": "altitude_m"}


#: The session id of samples that belong to no live session: a recording read for a
#: replay, an analysis or a benchmark.
OFFLINE_SESSION_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
#: The user id that goes with it.
OFFLINE_USER_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")


def to_epoch_s(value: Any) -> Any:
    """Epoch seconds from a datetime (naive = UTC), an ISO 8601 string or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return to_epoch_s(datetime.fromisoformat(value))
        except ValueError:
            raise ValueError(f"expected epoch seconds or an ISO 8601 time, got {value!r}") from None
    return value


class Sample(BaseModel):
    """One reading of a device: any subset of the metrics at time ``t``.

    A missing metric is ``None`` (sensor dropout or not fitted), never 0: a zero heart
    rate is rejected, a zero power or speed is a real value (coasting, stopped).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: SessionId
    #: When the reading was taken, epoch seconds UTC.
    t: float = Field(ge=EPOCH_MIN_S, le=EPOCH_MAX_S, allow_inf_nan=False)
    #: The device's sequence number: with ``session_id`` the idempotency key of a retry.
    seq: int | None = Field(default=None, ge=0)
    heart_rate: float | None = Field(
        default=None, ge=HEART_RATE_MIN_BPM, le=HEART_RATE_MAX_BPM, allow_inf_nan=False
    )
    power_w: float | None = Field(default=None, ge=0.0, le=POWER_MAX_W, allow_inf_nan=False)
    speed_m_s: float | None = Field(default=None, ge=0.0, le=SPEED_MAX_M_S, allow_inf_nan=False)
    cadence: float | None = Field(default=None, ge=0.0, le=CADENCE_MAX_RPM, allow_inf_nan=False)
    #: Cumulative distance reported by the device since it started recording.
    distance_m: float | None = Field(default=None, ge=0.0, le=DISTANCE_MAX_M, allow_inf_nan=False)
    altitude_m: float | None = Field(
        default=None, ge=ALTITUDE_MIN_M, le=ALTITUDE_MAX_M, allow_inf_nan=False
    )

    @field_validator("t", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        return to_epoch_s(value)

    @property
    def idempotency_key(self) -> str:
        """``"<session>:<seq>"`` when the device numbers its samples, else ``"<session>@<ms>"``."""
        if self.seq is not None:
            return f"{self.session_id}:{self.seq}"
        return f"{self.session_id}@{round(self.t * 1000)}"


#: Largest batch one request may carry: an hour at 1 Hz, so a device that was offline
#: for a while can catch up in one request without the edge buffering without bound.
SAMPLE_BATCH_MAX = 3600


class SampleBatch(BaseModel):
    """Samples of one session in one request, oldest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: SessionId
    samples: list[Sample] = Field(min_length=1, max_length=SAMPLE_BATCH_MAX)

    @field_validator("samples")
    @classmethod
    def _same_session(cls, samples: list[Sample], info: Any) -> list[Sample]:
        session_id = info.data.get("session_id")
        for i, sample in enumerate(samples):
            if session_id is not None and sample.session_id != session_id:
                raise ValueError(
                    f"samples[{i}].session_id is {sample.session_id}, "
                    f"expected the batch's session_id {session_id}"
                )
        return samples


class AthleteProfile(BaseModel):
    """What the metrics need to know about the athlete; defaults as GoldenCheetah's.

    ``ftp_w`` doubles as critical power for W' balance unless ``cp_w`` is given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hr_max: float = Field(default=190.0, ge=100.0, le=HEART_RATE_MAX_BPM)
    hr_rest: float = Field(default=60.0, ge=HEART_RATE_MIN_BPM, le=120.0)
    lthr: float = Field(default=170.0, ge=80.0, le=HEART_RATE_MAX_BPM)
    ftp_w: float = Field(default=250.0, gt=0.0, le=POWER_MAX_W)
    cp_w: float | None = Field(default=None, gt=0.0, le=POWER_MAX_W)
    w_prime_j: float = Field(default=20_000.0, gt=0.0, le=100_000.0)
    #: 5:00/km: a moderate runner's threshold.
    threshold_pace_s_per_km: float = Field(default=300.0, ge=120.0, le=1200.0)
    sex: Literal["male", "female"] = "male"
    #: Which heart-rate zones time-in-zone is counted in: % of HRmax or % of LTHR.
    hr_zone_model: Literal["hrmax", "lthr"] = "hrmax"

    @model_validator(mode="after")
    def _rest_below_max(self) -> AthleteProfile:
        if self.hr_rest >= self.hr_max:
            raise ValueError(f"hr_rest ({self.hr_rest}) must be below hr_max ({self.hr_max})")
        return self

    @property
    def critical_power_w(self) -> float:
        return self.cp_w if self.cp_w is not None else self.ftp_w


# --- the wire protocol ------------------------------------------------------------------
#
# Server events are what the agents and the edge produce: they may carry more fields
# than listed (``user_id``, ``ingest_ms``, ...), so they allow extras and the schema
# documents the fields a client can count on. Client frames are what strangers send:
# they forbid extras so a misspelt field is an error that names it.

#: Version of the wire protocol described by these models and schema/protocol.schema.json.
PROTOCOL_VERSION = 1

#: A position on the ``live`` topic as the edge writes it: ``"<partition>:<offset>"``.
Cursor = Annotated[str, Field(pattern=r"^[0-9]{1,4}:(-1|[0-9]{1,19})$")]
#: ``live:session:{id}``, ``live:user:{id}`` or ``live:group:{id}``, the id a UUID in
#: canonical form.
ChannelName = Annotated[str, Field(pattern=rf"^live:(session|user|group):{UUID_PATTERN}$")]
FrameId = str | int


class _ServerEvent(BaseModel):
    """The envelope every server event shares."""

    model_config = ConfigDict(extra="allow")

    channel: ChannelName | None = Field(
        default=None, description="The channel the event was delivered on."
    )
    session_id: SessionId | None = None
    timestamp: IsoTime | None = Field(
        default=None,
        description="ISO 8601 with zone: the sample time of live events, else the send time.",
    )
    offset: Cursor | None = Field(
        default=None,
        description="Stream position of a delivered live event; resume from it.",
    )
    ref: FrameId | None = Field(default=None, description="The id of the frame answered.")


class PlanTarget(BaseModel):
    """An interval's target ranges, each ``[low, high]``."""

    model_config = ConfigDict(extra="forbid")

    power_w: tuple[float, float] | None = Field(default=None, description="W")
    pace_s_per_km: tuple[float, float] | None = Field(
        default=None, description="seconds per km (low is the faster bound)"
    )
    heart_rate_bpm: tuple[float, float] | None = Field(default=None, description="bpm")


class PlanInterval(BaseModel):
    """Where the athlete is in the session's structured workout (absent without one)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, description="0-based position in the plan")
    count: int = Field(ge=1, description="intervals in the plan")
    name: str | None = None
    target: PlanTarget
    remaining_s: float | None = Field(default=None, description="s left (a timed interval)")
    remaining_m: float | None = Field(
        default=None, description="m left (an interval of a distance)"
    )


class LiveMetrics(BaseModel):
    """The ``metrics`` of a ``metrics_update``: the spec's fields, then derived ones.

    Units: heart rate bpm, pace minutes per km as a decimal (the spec's: 5.5 = 5:30/km;
    None when stopped, never infinite), distance km, cadence rpm, power W, time s. The
    same pace and distance in SI-style units are ``pace_s_per_km`` and ``distance_m``.
    See ``docs/metrics.md`` for each formula.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    heart_rate: float | None = Field(description="bpm")
    pace: float | None = Field(description="minutes per km, decimal (5.5 = 5:30/km)")
    distance: float | None = Field(description="km since the session started")
    cadence: float | None = Field(description="rpm (steps or crank revolutions per minute)")
    power: float | None = Field(default=None, description="W")
    pace_s_per_km: float | None = Field(default=None, description="seconds per km")
    distance_m: float | None = Field(default=None, description="metres")
    speed_m_s: float | None = None
    hr_avg_30s: float | None = None
    hr_avg_3min: float | None = None
    hr_avg_session: float | None = None
    hr_max: float | None = None
    power_3s: float | None = None
    power_avg: float | None = None
    np: float | None = None
    if_: float | None = Field(default=None, alias="if")
    tss: float | None = None
    w_prime_bal_j: float | None = None
    w_prime_bal_pct: float | None = None
    trimp: float | None = None
    decoupling_pct: float | None = None
    hr_zone: str | None = None
    power_zone: str | None = None
    pace_zone: str | None = None
    elapsed_s: float | None = None
    moving_s: float | None = None
    lap: int | None = None
    state: Literal["created", "running", "paused", "stopped"] | None = None
    samples: int | None = None
    interval: PlanInterval | None = Field(
        default=None, description="The plan's current interval, its target and what is left"
    )


class MetricsUpdateEvent(_ServerEvent):
    type: Literal["metrics_update"]
    metrics: LiveMetrics


class AlertBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    rule: str
    severity: Literal["info", "warning", "critical"]
    message: str
    metric: str
    current: float
    threshold: float
    sound: bool = False
    vibration: bool = False
    bound: Literal["plan", "settings"] | None = Field(
        default=None,
        description=(
            "Where the threshold came from: 'plan' (the current interval's target) or "
            "'settings' (the athlete's alert bounds); absent for the fatigue rules."
        ),
    )


class AlertEvent(_ServerEvent):
    type: Literal["alert"]
    alert: AlertBody
    group_id: uuid.UUID | None = Field(
        default=None, description="The group the session is in (docs/groups.md), if any."
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: uuid.UUID
    sender_id: UserIdWire | None = Field(default=None, description="Who wrote it.")
    recipient_id: UserIdWire | None = Field(
        default=None, description="Whom it is for; null: everyone in the session's chat."
    )
    message: str | None = Field(default=None, description="The text (as REST names it).")
    from_: UserIdWire = Field(alias="from", description="sender_id's old name (kept).")
    text: str = Field(description="message's old name (kept).")
    seq: int | None = Field(
        default=None, description="The session chat's order (ids, UUIDs, have none)."
    )


class MessageEvent(_ServerEvent):
    type: Literal["message"]
    message: ChatMessage


class SessionEvent(_ServerEvent):
    type: Literal["session_event"]
    event: str = Field(
        description="start, pause, resume, stop, lap, rejected, alert_acknowledged, ..."
    )
    state: Literal["created", "running", "paused", "stopped"] | None = None
    lap: dict[str, Any] | None = Field(default=None, description="Lap summary (event lap).")
    summary: dict[str, Any] | None = Field(default=None, description="On stop.")
    reason: str | None = Field(
        default=None,
        description=(
            "Why: on a stop, the reason given with it (REST stop body), or 'idle' when the "
            "server closed it (no activity for LIVECOACH_SESSION_IDLE_S); on rejected, the "
            "error."
        ),
    )


class LeaderboardRow(BaseModel):
    """One member's standing (docs/groups.md); units: m, s, W, W/kg, %."""

    model_config = ConfigDict(extra="allow")

    athlete_id: UserIdWire
    session_id: SessionId | None = None
    rank: int | None = Field(ge=1, description="Competition ranking; null: no data (last).")
    status: Literal["active", "paused", "finished", "left", "stopped", "no_data"]
    distance_m: float | None = None
    elapsed_s: float | None = Field(default=None, description="Session time, pauses excluded.")
    gap_m: float | None = Field(
        default=None, description="A race's: the leader's distance minus this."
    )
    gap_s: float | None = Field(
        default=None, description="A race's: time behind the leader at this distance."
    )
    finish_s: float | None = Field(
        default=None, description="A race's: session time at the finish."
    )
    pct_target: float | None = Field(
        default=None, description="A class's: % of the targeted time in the interval's target."
    )
    time_in_zone_s: float | None = Field(default=None, description="A class's: s in target.")
    w_per_kg: float | None = None
    np_w: float | None = None
    alerts_open: int = Field(default=0, ge=0, description="Alerts raised in the last minute.")


class LeaderboardEvent(_ServerEvent):
    """A group's board: ``full`` (every row) or a delta (rows that changed), in ``seq``
    order per group; ``final`` when the group finished."""

    type: Literal["leaderboard"]
    group_id: uuid.UUID
    kind: Literal["race", "class"]
    seq: int = Field(ge=1, description="One more per board of the group.")
    full: bool
    final: bool = False
    ingest_ms: int | None = Field(
        default=None, description="The newest sample acceptance time the board includes."
    )
    emit_ms: int | None = Field(
        default=None,
        description="When the leaderboard agent sent the board (epoch ms; the edge adds it "
        "from the live entry's time); absent on the stored board sent on subscribe.",
    )
    rows: list[LeaderboardRow]
    removed: list[UserIdWire] = Field(default_factory=list)
    from_seq: int | None = Field(
        default=None,
        ge=1,
        description="A delta the edge merged from several boards: the first one's seq; "
        "apply it on top of board from_seq - 1.",
    )
    window: bool = Field(
        default=False,
        description="A member's window of the board (the leader, its own row and its "
        "neighbours), always a full board of those rows.",
    )
    size: int | None = Field(
        default=None, ge=0, description="With window: how many athletes the whole board has."
    )


class TypingEvent(_ServerEvent):
    type: Literal["typing"]
    sender_id: UserIdWire
    typing: bool


class ReadReceiptEvent(_ServerEvent):
    type: Literal["read_receipt"]
    reader_id: UserIdWire
    message_ids: list[uuid.UUID]


class PresenceEvent(_ServerEvent):
    type: Literal["presence"]
    user_id: UserIdWire
    watcher_id: UserIdWire
    role: Literal["athlete", "coach"]
    watching: bool


class AckEvent(_ServerEvent):
    type: Literal["ack"]
    op: str = Field(description="The type of the frame acknowledged.")


class ErrorEvent(_ServerEvent):
    type: Literal["error"]
    code: str
    message: str


class WelcomeEvent(_ServerEvent):
    type: Literal["welcome"]
    user_id: UserIdWire
    role: Literal["athlete", "coach", "admin"] = Field(description="From livecoach's database.")
    expires_at: IsoTime | None = Field(default=None, description="When the token expires.")


class ResumedEvent(_ServerEvent):
    type: Literal["resumed"]
    recovered: bool = Field(description="False: the gap is gone; use the snapshot.")
    replayed: int = 0
    cursor: list[Cursor] | None = None
    snapshot: Any = None


class PongEvent(_ServerEvent):
    type: Literal["pong"]


ServerEvent = Annotated[
    MetricsUpdateEvent
    | AlertEvent
    | MessageEvent
    | SessionEvent
    | LeaderboardEvent
    | TypingEvent
    | ReadReceiptEvent
    | PresenceEvent
    | AckEvent
    | ErrorEvent
    | WelcomeEvent
    | ResumedEvent
    | PongEvent,
    Field(discriminator="type"),
]


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: FrameId | None = Field(default=None, description="Echoed as ``ref`` in the reply.")


class AuthFrame(_ClientFrame):
    type: Literal["auth"]
    token: str = Field(min_length=1)


class SubscribeFrame(_ClientFrame):
    type: Literal["subscribe"]
    channel: ChannelName | None = None
    channels: list[ChannelName] | None = Field(default=None, max_length=200)


class UnsubscribeFrame(_ClientFrame):
    type: Literal["unsubscribe"]
    channel: ChannelName | None = None
    channels: list[ChannelName] | None = Field(default=None, max_length=200)


class ResumeFrame(_ClientFrame):
    type: Literal["resume"]
    cursors: dict[ChannelName, Cursor | list[Cursor]] = Field(
        max_length=200, description="Per channel, the offset(s) of the last event seen."
    )


class DeviceReading(BaseModel):
    """A sample inside a client ``metrics_update``: the session is the frame's."""

    model_config = ConfigDict(extra="forbid")

    t: float | str = Field(description="Epoch seconds UTC, or ISO 8601 with a zone")
    seq: int | None = Field(default=None, ge=0)
    heart_rate: float | None = None
    power_w: float | None = None
    speed_m_s: float | None = None
    cadence: float | None = None
    distance_m: float | None = None
    altitude_m: float | None = None


class SpecMetricsIn(BaseModel):
    """One device reading in the spec's names and units."""

    model_config = ConfigDict(extra="forbid")

    heart_rate: float | None = Field(default=None, description="bpm")
    pace: float | None = Field(default=None, description="minutes per km, decimal (5.5 = 5:30)")
    distance: float | None = Field(default=None, description="km since the device started")
    cadence: float | None = Field(default=None, description="rpm")
    power: float | None = Field(default=None, description="W")
    altitude: float | None = Field(default=None, description="m")
    # livecoach's own names (units in the name) are accepted beside the spec's.
    speed_m_s: float | None = Field(default=None, description="m/s (instead of pace)")
    power_w: float | None = Field(default=None, description="W")
    distance_m: float | None = Field(default=None, description="m (instead of distance)")
    altitude_m: float | None = Field(default=None, description="m")


class ClientMetricsUpdateFrame(_ClientFrame):
    """Device samples: ``samples`` (a batch) or one reading as the spec gives it,
    ``metrics`` (the spec's names and units) at ``timestamp``."""

    type: Literal["metrics_update"]
    session_id: SessionId
    samples: list[DeviceReading] | None = Field(default=None, max_length=SAMPLE_BATCH_MAX)
    metrics: SpecMetricsIn | None = None
    t: float | str | None = Field(default=None, description="Same as timestamp")
    timestamp: float | str | None = Field(
        default=None,
        description="ISO 8601 with zone (or epoch seconds UTC); the receive time if absent",
    )

    def readings(self, now_s: float) -> list[dict[str, Any]]:
        """The frame's samples as Sample dicts (ValueError naming a field)."""
        if self.samples is not None:
            return [r.model_dump(exclude_none=True) for r in self.samples]
        if self.metrics is None:
            raise ValueError("samples or metrics: one of them is required")
        t = self.t if self.t is not None else self.timestamp
        metrics = self.metrics.model_dump(exclude_unset=True, by_alias=True)
        return [spec_reading(metrics, t if t is not None else now_s)]

    def to_samples(self, now_s: float) -> list[Sample]:
        """Validated samples of this frame (raises ValidationError naming the field)."""
        return [
            Sample.model_validate({**r, "session_id": self.session_id})
            for r in self.readings(now_s)
        ]


def message_from_text(data: Any) -> Any:
    """A message's text is ``message`` (as in REST and the database); ``text``, its old
    name on the socket, is taken for it. Both, different: refused."""
    if isinstance(data, dict) and "text" in data:
        data = dict(data)
        text = data.pop("text")
        if "message" in data and data["message"] != text:
            raise ValueError("message: give message or text (its old name), not both")
        data.setdefault("message", text)
    return data


class MessageFrame(_ClientFrame):
    """A chat message: ``message`` is its text (``text`` is its old name), for
    ``recipient_id`` (the session's athlete or one of their coaches; default: the
    session's coach for the athlete's messages, else the athlete). With ``group_id``
    instead of ``session_id``: a group's coach writing to everyone in the group."""

    type: Literal["message"]
    group_id: uuid.UUID | None = Field(
        default=None, description="A group's chat (its coach to everyone), not a session's"
    )
    session_id: SessionId | None = Field(default=None, validate_default=True)
    message: str = Field(min_length=1, max_length=4000)
    recipient_id: uuid.UUID | None = None
    client_message_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _text_is_the_old_name(cls, data: Any) -> Any:
        return message_from_text(data)

    @field_validator("session_id")
    @classmethod
    def _one_chat(cls, value: uuid.UUID | None, info: ValidationInfo) -> uuid.UUID | None:
        """A session's chat or a group's: ``session_id`` is required without ``group_id``."""
        group = info.data.get("group_id")
        if value is None and group is None and "group_id" not in info.data:
            return value  # group_id was given but invalid: its own error says so
        if value is None and group is None:
            raise PydanticCustomError("missing", "Field required")
        if value is not None and group is not None:
            raise ValueError("give session_id or group_id, not both")
        return value

    @model_validator(mode="after")
    def _for_everyone(self) -> MessageFrame:
        if self.group_id is not None and self.recipient_id is not None:
            raise ValueError("recipient_id: a group's message is for everyone in it")
        return self


class TypingFrame(_ClientFrame):
    type: Literal["typing"]
    session_id: SessionId
    typing: bool = True


class ReadFrame(_ClientFrame):
    type: Literal["read"]
    session_id: SessionId
    up_to_id: uuid.UUID = Field(description="The newest message read (its id)")


class AckAlertFrame(_ClientFrame):
    type: Literal["ack_alert"]
    alert_id: uuid.UUID


class LapFrame(_ClientFrame):
    """Close the current lap now (the Lap button); the lap comes as a ``session_event``."""

    type: Literal["lap"]
    session_id: SessionId


class PingFrame(_ClientFrame):
    type: Literal["ping"]


ClientFrame = Annotated[
    AuthFrame
    | SubscribeFrame
    | UnsubscribeFrame
    | ResumeFrame
    | ClientMetricsUpdateFrame
    | MessageFrame
    | TypingFrame
    | ReadFrame
    | AckAlertFrame
    | LapFrame
    | PingFrame,
    Field(discriminator="type"),
]

server_event: TypeAdapter[ServerEvent] = TypeAdapter(ServerEvent)
client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of both unions, as checked in at schema/."""
    server = server_event.json_schema(mode="serialization", ref_template="#/$defs/{model}")
    client = client_frame.json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs: dict[str, Any] = {}
    for part, name in ((server, "ServerEvent"), (client, "ClientFrame")):
        defs.update(part.pop("$defs", {}))
        defs[name] = part
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://livecoach.invalid/schema/protocol.schema.json",
        "title": "livecoach wire protocol",
        "description": (
            f"Version {PROTOCOL_VERSION}. JSON text frames over the WebSocket. "
            "ServerEvent: server to client; ClientFrame: client to server. "
            "Generated from pipeline/models.py by `python -m pipeline.models`; do not edit."
        ),
        "anyOf": [{"$ref": "#/$defs/ServerEvent"}, {"$ref": "#/$defs/ClientFrame"}],
        "$defs": dict(sorted(defs.items())),
    }


def render_protocol_schema() -> str:
    return json.dumps(protocol_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_protocol_schema(path: Path | None = None) -> Path:
    from schema import PROTOCOL_SCHEMA

    target = path or PROTOCOL_SCHEMA
    target.write_text(render_protocol_schema(), encoding="utf-8")
    return target


if __name__ == "__main__":
    print(write_protocol_schema())

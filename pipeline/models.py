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

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

SessionId = Annotated[int, Field(ge=1, description="live_training_sessions.id")]


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

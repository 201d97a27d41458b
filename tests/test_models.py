"""Sample and profile validation: what a device may send, and what it is told when wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.models import AthleteProfile, Sample, SampleBatch
from tests.ids import sid, uid

T = 1_767_225_600.0


def rejected(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        Sample(session_id=uid(1), t=T, **fields)
    return str(info.value)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"heart_rate": float("nan")}, "heart_rate\n  Input should be a finite number"),
        ({"heart_rate": 0}, "heart_rate\n  Input should be greater than or equal to 20"),
        ({"heart_rate": 300}, "heart_rate\n  Input should be less than or equal to 250"),
        ({"speed_m_s": 100}, "speed_m_s\n  Input should be less than or equal to 30"),
        ({"speed_m_s": float("inf")}, "speed_m_s\n  Input should be a finite number"),
        ({"power_w": -5}, "power_w\n  Input should be greater than or equal to 0"),
        ({"power_w": 3000}, "power_w\n  Input should be less than or equal to 2500"),
        ({"cadence": -1}, "cadence\n  Input should be greater than or equal to 0"),
        ({"distance_m": -1}, "distance_m\n  Input should be greater than or equal to 0"),
        ({"heart_rate": "fast"}, "heart_rate\n  Input should be a valid number"),
        ({"pulse": 120}, "pulse\n  Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    assert reason in rejected(**fields)


def test_bad_times() -> None:
    with pytest.raises(ValidationError, match="t\n  Input should be greater than or equal to"):
        Sample(session_id=uid(1), t=0)
    with pytest.raises(ValidationError, match="expected epoch seconds or an ISO 8601 time"):
        Sample(session_id=uid(1), t="yesterday")
    with pytest.raises(ValidationError, match="session_id"):
        Sample(session_id=0, t=T)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="session_id\n  Input should be a valid UUID"):
        Sample(session_id="42", t=T)  # type: ignore[arg-type]


def test_time_accepts_datetime_iso_and_epoch() -> None:
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    assert Sample(session_id=uid(1), t=aware).t == T
    assert Sample(session_id=uid(1), t=aware.replace(tzinfo=None)).t == T  # naive = UTC
    assert Sample(session_id=uid(1), t="2026-01-01T00:00:00Z").t == T
    assert Sample(session_id=uid(1), t=str(T)).t == T


def test_missing_metrics_are_none_and_zero_power_is_valid() -> None:
    sample = Sample(session_id=uid(1), t=T, power_w=0, speed_m_s=0)
    assert sample.heart_rate is None and sample.power_w == 0


def test_idempotency_key() -> None:
    assert Sample(session_id=uid(3), t=T, seq=17).idempotency_key == f"{sid(3)}:17"
    key = Sample(session_id=uid(3), t=T + 0.25).idempotency_key
    assert key == f"{sid(3)}@{int(T * 1000) + 250}"


def test_sample_is_immutable() -> None:
    sample = Sample(session_id=uid(1), t=T)
    with pytest.raises(ValidationError):
        sample.heart_rate = 100  # type: ignore[misc]


def test_batch_must_be_one_session() -> None:
    batch = SampleBatch(session_id=uid(2), samples=[{"session_id": sid(2), "t": T}])  # type: ignore[list-item]
    assert len(batch.samples) == 1
    with pytest.raises(
        ValidationError, match=rf"samples\[1\].session_id is {sid(3)}, expected the batch's"
    ):
        SampleBatch(
            session_id=uid(2),
            samples=[{"session_id": sid(2), "t": T}, {"session_id": sid(3), "t": T}],  # type: ignore[list-item]
        )
    with pytest.raises(ValidationError, match="at least 1 item"):
        SampleBatch(session_id=uid(2), samples=[])


def test_profile_defaults_are_goldencheetahs() -> None:
    profile = AthleteProfile()
    assert profile.ftp_w == 250 and profile.w_prime_j == 20_000
    assert profile.critical_power_w == 250
    assert AthleteProfile(cp_w=270).critical_power_w == 270


def test_profile_rest_must_be_below_max() -> None:
    with pytest.raises(ValidationError, match=r"hr_rest \(100.0\) must be below hr_max \(100.0\)"):
        AthleteProfile(hr_rest=100, hr_max=100)

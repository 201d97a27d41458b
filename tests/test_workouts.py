"""The labelled workout generator: deterministic, realistic, and labelled as scripted."""

from __future__ import annotations

import numpy as np

from agents.workouts import demo_workout, generate_workout, labelled_set


def test_a_seed_is_a_session() -> None:
    a = generate_workout(42)
    b = generate_workout(42)
    assert a.samples == b.samples and a.config == b.config
    assert generate_workout(43).samples != a.samples


def test_sessions_are_1hz_with_noise_spikes_dropouts_and_plausible_values() -> None:
    for workout in labelled_set(8):
        times = np.array([s.t_s for s in workout.samples])
        steps = np.diff(times)
        assert np.all(steps >= 1.0) and np.median(steps) == 1.0
        hr = np.array([np.nan if s.heart_rate_bpm is None else s.heart_rate_bpm
                       for s in workout.samples])  # fmt: skip
        assert np.isnan(hr).sum() >= 3  # dropouts
        assert 40 < np.nanmedian(hr) < 200
        truth = workout.truth.hr[times.astype(int)]
        residual = hr - truth
        spikes = np.abs(residual) > 20
        assert 0 < spikes.sum() < len(times) / 100  # rare single-sample spikes
        assert np.nanstd(residual[~spikes]) > 0.5  # sensor noise
        if workout.sport == "ride":
            assert all(s.speed_m_s is None for s in workout.samples)
            power = np.array([s.power_w or 0.0 for s in workout.samples])
            assert 0.4 * workout.athlete.ftp_w < power.mean() < 1.2 * workout.athlete.ftp_w
        else:
            assert all(s.power_w is None for s in workout.samples)


def test_heart_rate_lags_effort() -> None:
    workout = generate_workout(7, "ride", "intervals")
    hr = workout.truth.hr
    t = 0
    for block in workout.blocks:
        if block.kind == "hard":
            # 10 s into a hard block HR has barely moved; 2 min in it has.
            rise_10 = hr[t + 10] - hr[t]
            rise_120 = hr[t + 120] - hr[t]
            assert rise_120 > 3 * rise_10 > 0
            return
        t += block.duration_s
    raise AssertionError("no hard block")


def test_drifting_sessions_climb() -> None:
    drifting = [w for w in labelled_set(16) if w.truth.hr[-600] > w.truth.hr[900] + 5]
    assert len(drifting) >= 3


def test_demo_workout_is_a_realistic_interval_ride() -> None:
    workout = demo_workout()
    assert workout.sport == "ride"
    assert 3600 <= len(workout.samples) <= 6000
    assert {b.kind for b in workout.blocks} >= {"warmup", "rep", "rest", "cooldown"}

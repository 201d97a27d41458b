"""Per-session metrics: every formula against a hand-worked case, and bad input."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from agents.decoupling import BLOCK, HalfSplitSums
from agents.lifecycle import LifecycleError
from agents.session_metrics import MAX_SAMPLE_DT_S, SessionMetrics
from agents.summary import summarise
from agents.trimp import hrtss, trimp_increment
from agents.wprime import skiba_tau_s, w_prime_balance_integral, w_prime_step
from pipeline.models import AthleteProfile, Sample
from tests.ids import sid, uid

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def s(t: float, **metrics: Any) -> Sample:
    return Sample(session_id=uid(1), t=T0 + t, **metrics)


def run(samples: list[Sample], **kwargs: Any) -> SessionMetrics:
    metrics = SessionMetrics(sid(1), **kwargs)
    for sample in samples:
        assert metrics.add_sample(sample) == "accepted"
    return metrics


# --- Normalized Power, IF, TSS ---


def test_np_of_constant_power_is_that_power() -> None:
    metrics = run([s(i, power_w=200) for i in range(100)])
    assert metrics.normalized_power == pytest.approx(200)


def test_np_uses_partial_windows_from_the_first_sample() -> None:
    metrics = run([s(0, power_w=100), s(1, power_w=200), s(2, power_w=0)])
    rolling = [100, 150, 100]
    assert metrics.normalized_power == pytest.approx((sum(r**4 for r in rolling) / 3) ** 0.25)


def test_np_30_sample_window_and_zeros_count() -> None:
    powers = [300.0] * 30 + [0.0] * 30
    metrics = run([s(i, power_w=p) for i, p in enumerate(powers)])
    rolling = [sum(powers[max(0, i - 29) : i + 1]) / min(i + 1, 30) for i in range(60)]
    expected = (sum(r**4 for r in rolling) / 60) ** 0.25
    assert metrics.normalized_power == pytest.approx(expected)
    assert metrics.totals.mean_power == 150


def test_if_and_tss_one_hour_at_ftp() -> None:
    profile = AthleteProfile(ftp_w=250)
    metrics = run([s(i, power_w=250) for i in range(3600)], profile=profile)
    assert metrics.intensity_factor == pytest.approx(1.0)
    assert metrics.tss == pytest.approx(100.0)


def test_no_power_means_no_np() -> None:
    metrics = run([s(i, heart_rate=120) for i in range(10)])
    snapshot = metrics.snapshot()
    assert snapshot["np"] is None and snapshot["tss"] is None and snapshot["power"] is None
    assert snapshot["w_prime_bal_j"] is None


# --- W' balance ---


def test_w_prime_differential_hand_worked() -> None:
    assert w_prime_step(20_000, 300, 1, 250, 20_000) == 19_950
    # Below CP it recovers in proportion to what is missing: (250-150)*(10000/20000) = 50.
    assert w_prime_step(10_000, 150, 1, 250, 20_000) == 10_050
    assert w_prime_step(20_000, 0, 1, 250, 20_000) == 20_000


def test_w_prime_both_forms_agree_constant_power_below_cp() -> None:
    powers = [200.0] * 600
    integral = w_prime_balance_integral(powers, 250, 20_000)
    differential = 20_000.0
    for p in powers:
        differential = w_prime_step(differential, p, 1, 250, 20_000)
    assert integral[-1] == differential == 20_000


def test_w_prime_both_forms_agree_constant_power_above_cp() -> None:
    powers = [300.0] * 60
    integral = w_prime_balance_integral(powers, 250, 20_000)
    differential = 20_000.0
    for p in powers:
        differential = w_prime_step(differential, p, 1, 250, 20_000)
    assert differential == pytest.approx(17_000)
    # The integral form recovers during the effort too (tau = 862 s): within 1 %.
    assert integral[-1] == pytest.approx(differential, rel=0.01)
    assert skiba_tau_s(powers, 250) == pytest.approx(862)


def test_w_prime_integral_does_not_overflow_over_hours() -> None:
    powers = ([400.0] * 60 + [100.0] * 240) * 72  # 6 h of intervals
    balance = w_prime_balance_integral(powers, 250, 20_000)
    assert all(math.isfinite(b) for b in balance)


def test_w_prime_in_session_state() -> None:
    metrics = run([s(i, power_w=350) for i in range(60)])
    # The first sample counts the nominal 1 s as well: 60 s at 100 W above CP.
    assert metrics.w_bal_j == pytest.approx(20_000 - 60 * 100)
    assert metrics.snapshot()["w_prime_bal_pct"] == pytest.approx(70)


# --- TRIMP ---


def test_trimp_hand_worked() -> None:
    # One hour at x = 0.5 (HR 120, rest 60, max 180), male: 60 * 0.5 * 0.64 * e^0.96.
    expected = 60 * 0.5 * 0.64 * math.exp(0.96)
    assert trimp_increment(120, 3600, 60, 180, "male") == pytest.approx(expected)
    profile = AthleteProfile(hr_rest=60, hr_max=180)
    metrics = run([s(i, heart_rate=120) for i in range(3600)], profile=profile)
    assert metrics.trimp == pytest.approx(expected)
    female = 60 * 0.5 * 0.64 * math.exp(1.67 * 0.5)
    assert trimp_increment(120, 3600, 60, 180, "female") == pytest.approx(female)


def test_hrtss_one_hour_at_lthr_is_100() -> None:
    trimp = trimp_increment(170, 3600, 60, 190, "male")
    assert hrtss(trimp, 170, 60, 190, "male") == pytest.approx(100)


# --- decoupling ---


def test_decoupling_hand_worked() -> None:
    samples = [s(i, heart_rate=100, power_w=200) for i in range(100)]
    samples += [s(100 + i, heart_rate=110, power_w=200) for i in range(100)]
    metrics = run(samples)
    # EF1 = 2, EF2 = 200/110: 100 * (2 - 1.818) / 2 = 9.09 %.
    assert metrics.decoupling_pct == pytest.approx(100 * (2 - 200 / 110) / 2)


def test_decoupling_uses_speed_without_power() -> None:
    samples = [s(i, heart_rate=140, speed_m_s=3.0) for i in range(50)]
    samples += [s(50 + i, heart_rate=140, speed_m_s=2.7) for i in range(50)]
    metrics = run(samples)
    assert metrics.decoupling_pct == pytest.approx(10.0)
    assert metrics.summary()["decoupling_output"] == "speed"


def test_half_split_is_exact_at_every_sample_and_survives_a_restart() -> None:
    rng = random.Random(4)
    store: dict[str, list[float]] = {}
    sums = HalfSplitSums("1/power", store)
    pairs: list[tuple[float, float]] = []
    for i in range(5 * BLOCK + 17):
        pair = (rng.uniform(90, 180), rng.uniform(0, 400))
        pairs.append(pair)
        sums.add(*pair)
        if i % 37 == 0:  # a worker restart: state from its dict, the store from its table
            sums = HalfSplitSums.from_dict(json.loads(json.dumps(sums.to_dict())), store)
        n = len(pairs)
        if n < 2:
            continue
        m = n // 2
        ef1 = sum(p for _, p in pairs[:m]) / sum(h for h, _ in pairs[:m])
        ef2 = sum(p for _, p in pairs[m:]) / sum(h for h, _ in pairs[m:])
        assert sums.decoupling_pct() == pytest.approx(100 * (ef1 - ef2) / ef1, abs=1e-9)
        # The running sums kept in memory change nothing: an instance fresh from the
        # state (nothing kept) gives the same figure to the bit.
        fresh = HalfSplitSums.from_dict(sums.to_dict(), store)
        assert fresh.decoupling_pct() == sums.decoupling_pct()
    # Blocks wholly before the midpoint are gone from the store.
    assert len(store) <= (len(pairs) - len(pairs) // 2) // BLOCK + 1


# --- rolling figures, pace ---


def test_pace_from_rolling_speed_none_when_stopped() -> None:
    metrics = run([s(i, speed_m_s=4.0) for i in range(20)])
    assert metrics.snapshot()["pace"] == pytest.approx(250)
    for i in range(20, 40):
        metrics.add_sample(s(i, speed_m_s=0.0))
    snapshot = metrics.snapshot()
    assert snapshot["pace"] is None
    assert snapshot["pace_zone"] is None


def test_pace_is_from_a_window_not_one_sample() -> None:
    metrics = run([s(i, speed_m_s=4.0) for i in range(9)] + [s(9, speed_m_s=0.0)])
    assert metrics.snapshot()["pace"] == pytest.approx(1000 / 3.6)


def test_rolling_hr_averages() -> None:
    metrics = run([s(i, heart_rate=100 + (i >= 150) * 60) for i in range(200)])
    snapshot = metrics.snapshot()
    assert snapshot["hr_avg_30s"] == 160
    # 3 min = samples 20..199: 130 at 100 bpm, 50 at 160 bpm.
    assert snapshot["hr_avg_3min"] == pytest.approx((130 * 100 + 50 * 160) / 180)
    assert snapshot["hr_avg_session"] == pytest.approx((150 * 100 + 50 * 160) / 200)
    assert snapshot["hr_max"] == 160


def test_current_power_is_3s_mean() -> None:
    metrics = run([s(0, power_w=100), s(1, power_w=200), s(2, power_w=300), s(3, power_w=400)])
    assert metrics.snapshot()["power_3s"] == 300
    assert metrics.snapshot()["power"] == 400


def test_time_in_zone() -> None:
    profile = AthleteProfile(hr_max=200, ftp_w=200)
    samples = [s(i, heart_rate=130, power_w=100) for i in range(60)]
    samples += [s(60 + i, heart_rate=185, power_w=400) for i in range(30)]
    tiz = summarise(samples, profile)["time_in_zone"]
    assert tiz["heart_rate"] == {"Z1": 0, "Z2": 60, "Z3": 0, "Z4": 0, "Z5": 30}
    assert tiz["power"]["Z1"] == 60 and tiz["power"]["Z7"] == 30
    assert sum(tiz["pace"].values()) == 0


# --- laps ---


def test_auto_lap_every_km() -> None:
    metrics = SessionMetrics(sid(1), lap_mode="distance")
    for i in range(450):  # 5 m/s for 450 s: 2,245 m after the first sample's 0
        metrics.add_sample(s(i, speed_m_s=5.0, heart_rate=150))
    laps = metrics.drain_laps()
    assert [lap["trigger"] for lap in laps] == ["distance", "distance"]
    assert laps[0]["distance_m"] == pytest.approx(1000)
    assert laps[0]["pace_s_per_km"] == pytest.approx(200)
    assert metrics.drain_laps() == []


def test_auto_lap_from_device_distance() -> None:
    metrics = run([s(i, distance_m=10.0 * i) for i in range(250)])
    laps = metrics.drain_laps()
    assert len(laps) == 2 and laps[0]["end_t"] == T0 + 100


def test_auto_lap_every_5_min_and_manual_lap() -> None:
    metrics = SessionMetrics(sid(1), lap_mode="time")
    for i in range(700):
        metrics.add_sample(s(i, power_w=200))
        if i == 400:
            manual = metrics.manual_lap(T0 + i)
            assert manual is not None and manual["trigger"] == "manual"
    metrics.stop(T0 + 700)
    laps = metrics.drain_laps()
    assert [lap["trigger"] for lap in laps] == ["time", "manual", "stop"]
    assert [lap["moving_s"] for lap in laps] == [300, 101, 299]
    assert [lap["samples"] for lap in laps] == [300, 101, 299]
    assert metrics.summary()["laps"] == 3


# --- lifecycle ---


def test_paused_time_is_left_out() -> None:
    metrics = SessionMetrics(sid(1))
    metrics.start(T0)
    for i in range(60):
        metrics.add_sample(s(i, heart_rate=120, power_w=200))
    metrics.pause(T0 + 60)
    for i in range(60, 120):
        assert metrics.add_sample(s(i, heart_rate=90, power_w=0)) == "paused"
    metrics.resume(T0 + 120)
    for i in range(121, 181):
        metrics.add_sample(s(i, heart_rate=140, power_w=200))
    metrics.stop(T0 + 181)
    summary = metrics.summary()
    assert summary["samples"] == 120
    assert summary["mean_hr"] == 130
    assert summary["mean_power"] == 200
    assert summary["paused_s"] == 60
    assert summary["duration_s"] == 180 - 60
    assert summary["moving_time_s"] == 120
    assert summary["ignored"]["paused"] == 60
    assert summary["state"] == "stopped"


def test_lifecycle_rejects_impossible_transitions() -> None:
    metrics = SessionMetrics(sid(1))
    with pytest.raises(LifecycleError, match="cannot pause a created session"):
        metrics.pause(T0)
    metrics.start(T0)
    with pytest.raises(LifecycleError, match="cannot resume a running session"):
        metrics.resume(T0)
    metrics.stop(T0 + 1)
    with pytest.raises(LifecycleError, match=r"cannot start a stopped session \(it is final\)"):
        metrics.start(T0 + 2)


def test_samples_after_stop_are_ignored() -> None:
    metrics = run([s(0, heart_rate=100)])
    metrics.stop(T0 + 1)
    assert metrics.add_sample(s(2, heart_rate=200)) == "stopped"
    assert metrics.summary()["max_hr"] == 100
    assert metrics.summary()["ignored"]["stopped"] == 1


# --- bad input ---


def test_duplicate_and_out_of_order_samples_are_ignored_and_counted() -> None:
    metrics = SessionMetrics(sid(1))
    outcomes = [
        metrics.add_sample(sample)
        for sample in [
            s(0, heart_rate=100),
            s(1, heart_rate=110),
            s(1, heart_rate=250),  # duplicate timestamp
            s(0.5, heart_rate=250),  # out of order
            s(2, heart_rate=120),
        ]
    ]
    assert outcomes == ["accepted", "accepted", "duplicate", "out_of_order", "accepted"]
    summary = metrics.summary()
    assert summary["mean_hr"] == 110 and summary["max_hr"] == 120
    assert summary["ignored"] == {"duplicate": 1, "out_of_order": 1, "paused": 0, "stopped": 0}


def test_repeated_sequence_number_is_a_duplicate() -> None:
    metrics = SessionMetrics(sid(1))
    assert metrics.add_sample(Sample(session_id=uid(1), t=T0, seq=5, heart_rate=100)) == "accepted"
    retry = Sample(session_id=uid(1), t=T0 + 1, seq=5, heart_rate=100)
    assert metrics.add_sample(retry) == "duplicate"
    restarted = Sample(session_id=uid(1), t=T0 + 2, seq=0, heart_rate=100)
    assert metrics.add_sample(restarted) == "accepted"


def test_dropouts_do_not_corrupt_averages() -> None:
    samples = [s(i, heart_rate=150, power_w=200) for i in range(30)]
    samples += [s(30 + i, power_w=200) for i in range(30)]  # HR strap drops out
    samples += [s(60 + i, heart_rate=150) for i in range(30)]  # power meter drops out
    metrics = run(samples)
    summary = metrics.summary()
    assert summary["mean_hr"] == 150
    assert summary["mean_power"] == 200
    assert sum(summary["time_in_zone"]["heart_rate"].values()) == 60
    assert sum(summary["time_in_zone"]["power"].values()) == 60


def test_current_values_go_stale_after_a_dropout() -> None:
    metrics = run([s(0, heart_rate=150, cadence=90)] + [s(i, power_w=100) for i in range(1, 10)])
    snapshot = metrics.snapshot()
    assert snapshot["heart_rate"] is None and snapshot["cadence"] is None
    assert snapshot["hr_avg_session"] == 150


def test_a_long_gap_counts_as_at_most_max_dt() -> None:
    metrics = run([s(0, heart_rate=120), s(1, heart_rate=120), s(600, heart_rate=120)])
    assert metrics.totals.moving_s == 1 + 1 + MAX_SAMPLE_DT_S
    assert metrics.duration_s == 600


def test_snapshot_numbers_are_finite() -> None:
    metrics = run([s(i, speed_m_s=0.0, power_w=0.0, heart_rate=60) for i in range(5)])
    for key, value in metrics.snapshot().items():
        if isinstance(value, float):
            assert math.isfinite(value), key


# --- state ---


def _ride(n: int) -> list[Sample]:
    rng = random.Random(7)
    samples = []
    for i in range(n):
        metrics: dict[str, float] = {"speed_m_s": rng.uniform(5, 12), "cadence": 90}
        if i % 50 != 7:  # a dropout now and then
            metrics["heart_rate"] = 120 + 40 * i / n + rng.uniform(-3, 3)
            metrics["power_w"] = rng.choice([0, 150, 250, 400])
        samples.append(s(i, **metrics))
    return samples


def test_state_round_trip_gives_identical_results() -> None:
    samples = _ride(2000)
    straight = summarise(samples)
    store: dict[str, list[float]] = {}
    metrics = SessionMetrics(sid(1), block_store=store)
    for i, sample in enumerate(samples):
        if i % 97 == 0:
            state = json.loads(json.dumps(metrics.to_dict()))
            metrics = SessionMetrics.from_dict(state, block_store=store)
        metrics.add_sample(sample)
    metrics.stop(samples[-1].t)
    restored = metrics.summary()
    restored["lap_summaries"] = metrics.drain_laps()
    _assert_close(restored, straight)


def _assert_close(got: Any, expected: Any, path: str = "") -> None:
    # Sums are recomputed from window contents on load: equal to the last few ulps.
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            _assert_close(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _assert_close(g, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-9), path
    else:
        assert got == expected, path


def test_state_stays_small() -> None:
    metrics = run(_ride(6 * 3600))
    metrics.drain_laps()  # the agent publishes lap summaries as they close
    size = len(json.dumps(metrics.to_dict()))
    assert size < 15_000, f"state is {size} bytes after 6 h"


def test_state_version_is_checked() -> None:
    state = SessionMetrics(sid(1)).to_dict()
    state["v"] = 99
    with pytest.raises(ValueError, match="session state version 99"):
        SessionMetrics.from_dict(state)


def test_late_sample_from_before_a_pause_is_kept_and_pause_samples_are_not() -> None:
    metrics = SessionMetrics(sid(1))
    metrics.add_sample(s(0, heart_rate=100))
    metrics.pause(T0 + 10)
    assert metrics.add_sample(s(5, heart_rate=110)) == "accepted"  # taken before the pause
    assert metrics.add_sample(s(12, heart_rate=200)) == "paused"
    metrics.resume(T0 + 20)
    assert metrics.add_sample(s(15, heart_rate=200)) == "paused"  # taken during it, late
    assert metrics.add_sample(s(20, heart_rate=120)) == "accepted"
    assert metrics.summary()["mean_hr"] == 110


def test_time_weighted_means_for_irregular_sampling() -> None:
    metrics = run([s(0, heart_rate=100), s(1, heart_rate=100), s(4, heart_rate=160)])
    summary = metrics.summary()
    assert summary["mean_hr"] == 120
    assert summary["mean_hr_time_weighted"] == pytest.approx((100 + 100 + 160 * 3) / 5)


def test_profile_change_keeps_counted_figures() -> None:
    metrics = run([s(i, power_w=350, heart_rate=150) for i in range(10)])
    assert metrics.w_bal_j == pytest.approx(19_000)
    metrics.set_profile(AthleteProfile(w_prime_j=25_000, ftp_w=300))
    assert metrics.w_bal_j == pytest.approx(24_000)
    assert metrics.zones.power.lower[1] == pytest.approx(165)
    assert sum(metrics.summary()["time_in_zone"]["power"].values()) == 10


def test_efficiency_factor() -> None:
    ride = run([s(i, heart_rate=125, power_w=250) for i in range(60)]).summary()
    assert ride["ef"] == pytest.approx(2.0)
    assert ride["vi"] == pytest.approx(1.0)
    jog = run([s(i, heart_rate=150, speed_m_s=3.0) for i in range(60)]).summary()
    assert jog["ef"] == pytest.approx(0.02)


# --- time that really passed: W' balance through a stop, TSS hours ---


def _skiba_differential(powers_w: list[float], cp_w: float, w_prime_j: float) -> float:
    """Skiba's differential model integrated independently: 10 ms Euler steps."""
    w = w_prime_j
    steps = 100
    for p in powers_w:
        for _ in range(steps):
            w += (-(p - cp_w) if p >= cp_w else (cp_w - p) * (w_prime_j - w) / w_prime_j) / steps
    return w


@pytest.mark.parametrize("stop_s", [30, 120, 600])
def test_w_prime_balance_after_a_stop_follows_skiba(stop_s: int) -> None:
    # 3 min at CP + 90 W drains most of W'; the rider stops (no samples, the device
    # auto-paused) and rides on at 100 W. Recovery goes on through the whole stop.
    profile = AthleteProfile(ftp_w=250, w_prime_j=30_000)
    ride = [340.0] * 180 + [100.0] * 30
    t_after = [float(i) for i in range(180)] + [179.0 + stop_s + i for i in range(1, 31)]
    metrics = run([s(t, power_w=p) for t, p in zip(t_after, ride, strict=True)], profile=profile)
    # The model sees the stop as seconds at 0 W between the last second before it and
    # the first after.
    truth = _skiba_differential([340.0] * 180 + [0.0] * stop_s + [100.0] * 30, 250, 30_000)
    assert abs(metrics.w_bal_j - truth) < 0.01 * 30_000
    if stop_s == 600:
        # The old 10 s cap would have left it near its low point (~14 kJ).
        assert metrics.w_bal_j > 25_000


def test_w_prime_recovers_through_a_pause() -> None:
    profile = AthleteProfile(ftp_w=250, w_prime_j=20_000)
    metrics = SessionMetrics(sid(1), profile)
    for i in range(120):
        metrics.add_sample(s(i, power_w=400))
    low = metrics.w_bal_j
    metrics.pause(T0 + 120)
    metrics.resume(T0 + 420)
    metrics.add_sample(s(420, power_w=100))
    truth = _skiba_differential([400.0] * 120 + [0.0] * 300 + [100.0], 250, 20_000)
    assert metrics.w_bal_j > low
    assert abs(metrics.w_bal_j - truth) < 0.01 * 20_000


def test_tss_counts_samples_times_the_recording_interval() -> None:
    # One hour at FTP recorded every 2 s with a 10 min radio gap in the middle: TSS is
    # 100 * samples * 2 s / 3600 s (GoldenCheetah), the gap adds nothing.
    times = [2.0 * i for i in range(900)] + [2400.0 + 2.0 * i for i in range(900)]
    metrics = run([s(t, power_w=250) for t in times], profile=AthleteProfile(ftp_w=250))
    assert metrics.recording_interval_s == 2.0
    assert metrics.tss == pytest.approx(100.0 * 1800 * 2 / 3600)


def test_the_recording_interval_follows_the_most_common_spacing_as_it_changes() -> None:
    # A device that records every 2 s, then every second, then (smart recording) in
    # uneven steps: after every sample the interval is the most common spacing so far,
    # the shorter one on a tie; also across a save and restore.
    rng = random.Random(7)
    steps = (
        [2.0] * 30 + [1.0] * 45 + [rng.choice([1.0, 3.0, 4.0, 4.0, 4.0, 5.0]) for _ in range(300)]
    )
    store: dict[str, list[float]] = {}
    metrics = SessionMetrics(sid(1), block_store=store)
    assert metrics.add_sample(s(0.0, power_w=200)) == "accepted"
    counts: dict[float, int] = {}
    modes: list[float] = []
    t = 0.0
    for i, step in enumerate(steps):
        t += step
        assert metrics.add_sample(s(t, power_w=200)) == "accepted"
        counts[step] = counts.get(step, 0) + 1
        expected = max(counts, key=lambda spacing: (counts[spacing], -spacing))
        assert metrics.recording_interval_s == expected, (i, counts)
        modes.append(expected)
        if i % 50 == 49:
            state = json.loads(json.dumps(metrics.to_dict()))
            metrics = SessionMetrics.from_dict(state, block_store=store)
    # 2 s, then 1 s, then 4 s was the most common.
    assert [m for i, m in enumerate(modes) if i == 0 or modes[i - 1] != m] == [2.0, 1.0, 4.0]


def _recording_dir() -> Any:
    from pipeline.recordings import shared_recordings_dir

    return shared_recordings_dir()


SIX_HOURS = "ride_long_6h_power_hr__2019-02-17-062644-ELEMNT-297E-195-0.fit"


@pytest.mark.slow
def test_tss_of_the_shared_6h_ride_matches_goldencheetah() -> None:
    import numpy as np

    from pipeline.recordings import read_recording

    path = _recording_dir() / SIX_HOURS
    if not path.is_file():
        pytest.skip(f"shared recording absent: {path}")
    samples = sorted(read_recording(path).samples, key=lambda x: x.t)
    ftp = 230.0
    summary = summarise(samples, AthleteProfile(ftp_w=ftp))
    # GoldenCheetah (Coggan.cpp): NP from a 30-sample rolling mean (partial windows at
    # the start, missing power as 0 W); TSS = secs * NP * IF / (FTP * 3600) * 100 with
    # secs = samples * the recording interval.
    power = np.array([x.power_w if x.power_w is not None else 0.0 for x in samples])
    csum = np.concatenate([[0.0], np.cumsum(power)])
    idx = np.arange(1, len(power) + 1)
    lo = np.maximum(0, idx - 30)
    rolling = (csum[idx] - csum[lo]) / (idx - lo)
    np_w = float(np.mean(rolling**4) ** 0.25)
    times = np.array([x.t for x in samples])
    spacing = np.round(np.diff(times), 3)
    values, counts = np.unique(spacing, return_counts=True)
    rec_int = float(values[np.argmax(counts)])
    secs = len(samples) * rec_int
    reference = secs * np_w * (np_w / ftp) / (ftp * 3600) * 100
    assert abs(summary["tss"] - reference) < 0.5
    # It is not moving time: the ride has stops, so the old definition differs.
    assert summary["moving_time_s"] != pytest.approx(secs, abs=1)

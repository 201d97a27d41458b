"""The alert engine's rule state machines: dwell, hysteresis, cooldown, dropouts, lag, ids."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterable, Sequence

from faust.utils import json as faust_json

from agents.alerts.config import (
    AlertConfig,
    EfDropRule,
    HeartRateRule,
    HrDriftRule,
    PowerFadeRule,
    PowerRule,
    Rules,
    WPrimeRule,
)
from agents.alerts.rules import Alert, AlertEngine, AlertSample
from agents.workouts import demo_workout
from pipeline.models import AthleteProfile

_QUIET = {
    "ef_drop": EfDropRule(enabled=False),
    "hr_drift": HrDriftRule(enabled=False),
    "power_fade": PowerFadeRule(enabled=False),
    "w_prime": WPrimeRule(enabled=False),
}


def hr_engine(**hr: object) -> AlertEngine:
    """An engine with only the heart-rate rule on (high bound 170 unless given).

    Dwell 15 s over a 30 s median window: an excursion must fill half the window.
    """
    settings: dict[str, object] = {
        "high_bpm": 170.0, "dwell_s": 15.0, "window_s": 30.0, "cooldown_s": 120.0,
    }  # fmt: skip
    settings.update(hr)
    rules = Rules(heart_rate=HeartRateRule.model_validate(settings), **_QUIET)
    return AlertEngine(AlertConfig(rules=rules))


def feed(engine: AlertEngine, hrs: Iterable[float | None], *, power: float = 200.0,
         start_s: float = 1000.0, session: str = "s1") -> list[Alert]:  # fmt: skip
    state = engine.new_state(session)
    alerts: list[Alert] = []
    for i, hr in enumerate(hrs):
        state, raised = engine.update(state, AlertSample(start_s + i, hr, power, None))
        alerts += raised
    return alerts


WARM = [150.0] * 200  # past the start-of-session HR lag, well inside the bounds


def test_fires_after_the_dwell_time_and_not_before() -> None:
    engine = hr_engine()
    assert feed(engine, WARM + [180.0] * 14 + [150.0] * 30) == []
    alerts = feed(engine, WARM + [180.0] * 40)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.fired_at_s - alert.started_at_s >= 15.0
    assert alert.fired_at_s - alert.started_at_s <= 20.0  # 5 s HR mean + median filter
    assert (alert.rule, alert.direction, alert.metric) == ("heart_rate", "high", "heart_rate")
    assert alert.threshold == 170.0 and alert.current > 170.0
    event = alert.to_event()
    for key in ("severity", "message", "metric", "current", "threshold", "id", "rule"):
        assert key in event
    assert event["sound"] is True and event["vibration"] is True


def test_single_sample_spikes_never_fire() -> None:
    hrs = list(WARM)
    for i in range(20, 180, 3):  # a spike every third sample: each one alone
        hrs[i] = 240.0
    assert feed(hr_engine(dwell_s=0.0), hrs + [150.0] * 20) == []


def test_dropouts_do_not_count_toward_the_dwell_and_do_not_fire() -> None:
    engine = hr_engine()
    # 10 s out, 20 s missing, 4 s out: 14 s of real excursion, under the dwell.
    hrs = WARM + [180.0] * 10 + [None] * 20 + [180.0] * 4 + [150.0] * 30
    assert feed(engine, hrs) == []
    # Only missing values: nothing to alert on.
    assert feed(engine, WARM + [None] * 300) == []
    # A zero or absurd reading is a dropout, not a low heart rate.
    low = hr_engine(high_bpm=None, low_bpm=100.0)
    assert feed(low, WARM + [0.0] * 60 + [150.0] * 10) == []


def test_a_gap_between_samples_restarts_the_dwell() -> None:
    engine = hr_engine()
    state = engine.new_state("g")
    t = 0.0
    for _ in range(200):
        state, raised = engine.update(state, AlertSample(t, 150.0, 200.0, None))
        t += 1
    alerts: list[Alert] = []
    for _ in range(10):
        state, raised = engine.update(state, AlertSample(t, 180.0, 200.0, None))
        alerts += raised
        t += 1
    t += 30  # no sample for 30 s
    for _ in range(8):
        state, raised = engine.update(state, AlertSample(t, 180.0, 200.0, None))
        alerts += raised
        t += 1
    assert alerts == []


def test_rearms_only_after_coming_back_inside_by_the_margin() -> None:
    engine = hr_engine(hysteresis=5.0, cooldown_s=0.0)
    # Out, back to 168 (inside by 2 < 5), out again: one alert.
    dips = WARM + [180.0] * 40 + [168.0] * 40 + [180.0] * 40
    assert len(feed(engine, dips)) == 1
    # Out, back to 160 (inside by 10), out again: two alerts.
    rearmed = WARM + [180.0] * 40 + [160.0] * 40 + [180.0] * 40
    assert len(feed(engine, rearmed)) == 2


def test_cooldown_holds_back_a_second_alert() -> None:
    engine = hr_engine(hysteresis=5.0, cooldown_s=300.0)
    hrs = WARM + [180.0] * 40 + [150.0] * 40 + [180.0] * 400
    alerts = feed(engine, hrs)
    assert len(alerts) == 2
    assert alerts[1].fired_at_s - alerts[0].fired_at_s >= 300.0
    # The second alert's onset is still when that excursion began, not the cooldown's end.
    second_start = 1000.0 + len(WARM) + 80
    assert second_start <= alerts[1].started_at_s <= second_start + 5


def test_hovering_on_a_boundary_for_ten_minutes_alerts_at_most_once_per_cooldown() -> None:
    rng = random.Random(5)
    engine = hr_engine(hysteresis=3.0, cooldown_s=120.0)
    hover = [170.0 + rng.gauss(0.0, 1.5) + math.sin(i / 20.0) for i in range(600)]
    alerts = feed(engine, WARM + hover)
    assert len(alerts) <= 600 / 120
    fired = [a.fired_at_s for a in alerts]
    assert all(b - a >= 120.0 for a, b in itertools.pairwise(fired))
    # With a wider margin than the hover's spread it fires once at most.
    assert len(feed(hr_engine(hysteresis=8.0, cooldown_s=120.0), WARM + hover)) <= 1


def test_heart_rate_lag_after_a_step_down_is_not_an_alert() -> None:
    engine = hr_engine(lag_s=120.0)
    state = engine.new_state("lag")
    alerts: list[Alert] = []
    hr = 150.0
    for i in range(900):
        power = 330.0 if 300 <= i < 600 else 160.0  # a hard block, then easy again
        target = 178.0 if 300 <= i < 600 else 150.0
        hr += (target - hr) * (1 - math.exp(-1 / 45.0))  # first-order HR, tau 45 s
        state, raised = engine.update(state, AlertSample(float(i), hr, power, None))
        alerts += raised
    # HR crosses 170 during the block: one alert there; the minute or so it stays
    # above 170 after the step down is lag, not a new excursion.
    assert len(alerts) == 1
    assert 300 <= alerts[0].started_at_s < 600


def test_heart_rate_lag_after_a_step_up_does_not_raise_a_low_alert() -> None:
    engine = hr_engine(high_bpm=None, low_bpm=130.0, lag_s=120.0)
    state = engine.new_state("up")
    alerts: list[Alert] = []
    hr = 125.0
    for i in range(900):
        # Warm up to 140 bpm (the floor is reached: it applies from then on), ease off
        # to 126 bpm (owed: one alert), then a step up to 260 W: HR lags, no alert.
        power = 150.0 if i < 250 else 120.0 if i < 500 else 260.0
        target = 140.0 if i < 250 else 126.0 if i < 500 else 155.0
        hr += (target - hr) * (1 - math.exp(-1 / 60.0))
        state, raised = engine.update(state, AlertSample(float(i), hr, power, None))
        alerts += raised
    assert len(alerts) == 1 and 250 < alerts[0].fired_at_s < 500


def test_a_heart_rate_floor_waits_for_the_warm_up() -> None:
    engine = hr_engine(high_bpm=None, low_bpm=130.0)
    # Ten minutes of warm-up under the floor: not "too low" until the floor was reached.
    assert feed(engine, [115.0] * 600 + [140.0] * 100) == []
    # Once reached, a sustained drop under it alerts.
    assert len(feed(engine, [115.0] * 300 + [140.0] * 100 + [120.0] * 60)) == 1


def test_alert_ids_are_deterministic() -> None:
    engine = hr_engine()
    hrs = WARM + [180.0] * 40
    first = feed(engine, hrs, session="a")
    again = feed(engine, hrs, session="a")
    other = feed(engine, hrs, session="b")
    assert [a.id for a in first] == [a.id for a in again]
    assert first[0].id != other[0].id


def _replay(engine: AlertEngine, samples: Sequence[AlertSample], cut: int) -> list[Alert]:
    """Process up to ``cut``, checkpoint the state as JSON, restart from it."""
    state = engine.new_state("r")
    alerts: list[Alert] = []
    for sample in samples[:cut]:
        state, raised = engine.update(state, sample)
        alerts += raised
    # What a changelog-backed table keeps: Faust's json codec (orjson when installed,
    # which writes an infinity as null; the standard library's json would not).
    state = faust_json.loads(faust_json.dumps(state))
    for sample in samples[cut:]:
        state, raised = engine.update(state, sample)
        alerts += raised
    return alerts


def test_state_survives_a_json_round_trip_without_repeating_or_forgetting() -> None:
    workout = demo_workout()
    engine = AlertEngine(workout.config, workout.athlete)
    samples = workout.samples
    straight = engine.run("r", samples)
    assert len(straight) >= 5
    for cut in (100, 1500, len(samples) // 2, len(samples) - 7):
        assert [a.id for a in _replay(engine, samples, cut)] == [a.id for a in straight]


def test_a_worker_restarted_from_an_older_checkpoint_raises_the_same_ids() -> None:
    workout = demo_workout()
    engine = AlertEngine(workout.config, workout.athlete)
    samples = workout.samples
    straight = engine.run("r", samples)
    # Checkpoint at 1000, process to 2500 (alerts delivered), crash, resume at 1000.
    state = engine.new_state("r")
    for sample in samples[:1000]:
        state, _ = engine.update(state, sample)
    checkpoint = json.dumps(state)
    delivered: dict[str, Alert] = {a.id: a for a in straight if a.fired_at_s < samples[1000].t_s}
    for sample in samples[1000:2500]:
        state, raised = engine.update(state, sample)
        delivered.update((a.id, a) for a in raised)
    state = json.loads(checkpoint)
    for sample in samples[1000:]:
        state, raised = engine.update(state, sample)
        delivered.update((a.id, a) for a in raised)  # the store de-duplicates by id
    assert sorted(delivered) == sorted(a.id for a in straight)


def test_a_stale_sample_after_restart_is_ignored() -> None:
    engine = hr_engine()
    state = engine.new_state("o")
    for i in range(300):
        state, _ = engine.update(state, AlertSample(float(i), 150.0, 200.0, None))
    before = json.dumps(state)
    state, raised = engine.update(state, AlertSample(10.0, 190.0, 200.0, None))
    assert raised == [] and json.dumps(state) == before
    state, raised = engine.update(state, AlertSample(299.0, 190.0, 200.0, None))  # duplicate
    assert raised == [] and json.dumps(state) == before


def test_a_threshold_change_applies_on_the_next_sample() -> None:
    engine = hr_engine(dwell_s=0.0)
    state = engine.new_state("c")
    for i in range(300):
        state, raised = engine.update(state, AlertSample(float(i), 160.0, 200.0, None))
        assert raised == []
    lowered = engine.with_config(
        AlertConfig(rules=Rules(heart_rate=HeartRateRule(high_bpm=155.0, dwell_s=0.0), **_QUIET))
    )
    state, raised = lowered.update(state, AlertSample(300.0, 160.0, 200.0, None))
    assert len(raised) == 1 and raised[0].threshold == 155.0
    assert raised[0].started_at_s == 300.0


def _ride(
    engine: AlertEngine, powers: Sequence[float | None], cadence: float = 85.0
) -> list[Alert]:
    state = engine.new_state("p")
    alerts: list[Alert] = []
    for i, power in enumerate(powers):
        pedalling = cadence if power else 0.0
        sample = AlertSample(float(i), 140.0, power, None, cadence_rpm=pedalling)
        state, raised = engine.update(state, sample)
        alerts += raised
    return alerts


def power_engine() -> AlertEngine:
    return AlertEngine(
        AlertConfig(rules=Rules(power=PowerRule(low_w=170.0, high_w=200.0), **_QUIET))
    )


def test_power_rule_judges_sustained_deviation_not_transients() -> None:
    engine = power_engine()
    steady = [185.0] * 300
    # 15 s coasts every 90 s, 25 s surges to 400 W every 3 min: nothing sustained.
    coasting = [0.0 if i % 90 < 15 else 185.0 for i in range(1200)]
    assert _ride(engine, steady + coasting) == []
    surging = [400.0 if i % 180 < 25 else 185.0 for i in range(1200)]
    assert _ride(engine, steady + surging) == []
    # 150 W for two minutes, coasts included: "power low", once.
    sagging = [0.0 if i % 90 < 12 else 150.0 for i in range(120)]
    alerts = _ride(engine, steady + sagging + steady)
    assert [(a.rule, a.direction) for a in alerts] == [("power", "low")]
    assert 300 + 30 <= alerts[0].fired_at_s <= 300 + 60
    # A long descent freewheeling (power 0, cadence 0) is not riding short.
    assert _ride(engine, steady + [0.0] * 180 + steady) == []


def test_w_prime_balance_under_a_quarter_alerts() -> None:
    athlete = AthleteProfile(ftp_w=250.0, w_prime_j=20_000.0)
    rules = Rules(heart_rate=HeartRateRule(enabled=False), w_prime=WPrimeRule())
    engine = AlertEngine(AlertConfig(rules=rules), athlete)
    samples = [AlertSample(float(i), 150.0, 200.0 if i < 300 else 400.0, None) for i in range(500)]
    alerts = [a for a in engine.run("w", samples) if a.rule == "w_prime"]
    assert len(alerts) == 1
    # 150 W over CP drains 15 kJ in 100 s (plus the 10 s mean's ramp).
    assert 395 <= alerts[0].started_at_s <= 415
    assert alerts[0].current < 5000.0


def test_w_prime_recovers_through_a_stop_without_samples() -> None:
    # 2 min at 400 W empties most of W'; a 10 min stop with the computer auto-paused;
    # then 1 min at 330 W. Skiba: after the stop the deficit is e^(-250 * 600 / 20000)
    # of what it was, nearly nothing, so the second effort (4.8 kJ) leaves ~75 %.
    athlete = AthleteProfile(ftp_w=250.0, w_prime_j=20_000.0)
    rules = Rules(heart_rate=HeartRateRule(enabled=False), w_prime=WPrimeRule())
    engine = AlertEngine(AlertConfig(rules=rules), athlete)
    before = [AlertSample(float(i), 150.0, 200.0 if i < 300 else 400.0, None) for i in range(420)]
    after = [AlertSample(1020.0 + i, 150.0, 330.0 if i < 60 else 150.0, None) for i in range(200)]
    state = engine.new_state("stop")
    alerts: list[Alert] = []
    for sample in before:
        state, raised = engine.update(state, sample)
        alerts += raised
    low = state["sig"]["wb"]
    assert low < 5_000 and len(alerts) == 1
    for sample in after:
        state, raised = engine.update(state, sample)
        alerts += raised
        if sample.t_s == 1020.0:
            assert state["sig"]["wb"] > 19_000  # recovered through the stop
    assert len(alerts) == 1  # no second W' alert after the stop


def test_power_fade_against_the_best_five_minutes() -> None:
    athlete = AthleteProfile(ftp_w=250.0)
    rules = Rules(heart_rate=HeartRateRule(enabled=False), power_fade=PowerFadeRule())
    engine = AlertEngine(AlertConfig(rules=rules), athlete)
    blocks = [(600, 150.0), (480, 260.0), (180, 120.0), (480, 262.0), (180, 120.0), (600, 220.0)]
    samples: list[AlertSample] = []
    t = 0
    for duration, power in blocks:
        samples += [AlertSample(float(t + i), 150.0, power, None) for i in range(duration)]
        t += duration
    alerts = [a for a in engine.run("f", samples) if a.rule == "power_fade"]
    # The two repeats at 260 W do not fade; the last block at 85 % of them does.
    assert len(alerts) == 1 and alerts[0].started_at_s >= sum(d for d, _ in blocks[:5])


def test_state_stays_small_over_a_whole_workout() -> None:
    # The state goes to the changelog with every record. (The per-sample cost is a
    # benchmark's, not a timed test's: `python -m bench.alert_path`, alerts-eval.)
    workout = demo_workout()
    engine = AlertEngine(workout.config, workout.athlete)
    state = engine.new_state("size")
    for sample in workout.samples:
        state, _ = engine.update(state, sample)
    assert len(json.dumps(state)) < 12_000


def _steady_ride(drift_bpm_per_min: float, minutes: int = 60) -> list[AlertSample]:
    """Warm-up 10 min at 120 W, then steady 200 W with HR drifting at the given rate."""
    samples: list[AlertSample] = []
    hr = 110.0
    for i in range(minutes * 60):
        power = 120.0 if i < 600 else 200.0
        target = 115.0 if i < 600 else 140.0 + drift_bpm_per_min * (i - 600) / 60.0
        hr += (target - hr) * (1 - math.exp(-1 / 40.0))
        samples.append(AlertSample(float(i), hr, power, None))
    return samples


def test_cardiac_drift_at_steady_output_raises_one_decoupling_alert() -> None:
    rules = Rules(
        heart_rate=HeartRateRule(enabled=False), ef_drop=EfDropRule(), hr_drift=HrDriftRule()
    )
    engine = AlertEngine(AlertConfig(rules=rules), AthleteProfile(ftp_w=250.0))
    drifting = engine.run("d", _steady_ride(0.4))
    # EF falling and HR rising at the same output are one thing: they share a cooldown.
    assert drifting and all(a.rule in ("hr_drift", "ef_drop") for a in drifting)
    fired = [a.fired_at_s for a in drifting]
    assert all(b - a >= 900 for a, b in itertools.pairwise(fired))
    alert = drifting[0]
    # The baseline is the first settled 10 min after the first 10 min (HR ~141-143);
    # 5 % more is ~7 bpm, 17-18 min of drift at 0.4 bpm/min later, plus the dwell.
    assert alert.fired_at_s > 600 + 600 + 17 * 60
    if alert.rule == "hr_drift":
        assert alert.current >= 0.05
    else:
        assert alert.current <= 0.95
    # Normal drift (2-3 % over 40 min) is not worth an alert.
    assert engine.run("n", _steady_ride(0.08, minutes=90)) == []
    assert engine.run("s", _steady_ride(0.02)) == []

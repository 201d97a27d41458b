"""Labelled synthetic workouts: 1 Hz sessions with a known ground truth.

A workout is a script of blocks (warm-up, steady work, intervals, recoveries, surges,
stops). The generator turns it into the athlete's true output (power for rides, speed
for runs) and true heart rate (a first-order response to effort with a 30-90 s time
constant, plus, in some sessions, a slow cardiac drift), then into what a device would
send: sensor noise, single-sample spikes, dropouts of one channel and short gaps with
no sample at all. Everything is drawn from a seeded RNG, so a seed is a session.

Bounds are chosen from the truth so that the interesting cases are there: true
excursions, values hovering just inside a boundary, fatigue.

:func:`demo_workout` is the realistic session ``livecoach up`` plays for its demo
athlete; :func:`labelled_set` a fixed set of synthetic sessions of every kind. These
sessions carry no labels: the accuracy of the alerts is measured on the scenarios of
:mod:`agents.alerts.scenarios`, whose expected alerts are written by hand (issue 14:
labels computed from the rules' own definitions measured nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from agents.alerts.config import (
    AlertConfig,
    EfDropRule,
    HeartRateRule,
    HrDriftRule,
    PaceRule,
    PowerFadeRule,
    PowerRule,
    Rules,
    WPrimeRule,
)
from agents.alerts.rules import AlertSample
from pipeline.models import AthleteProfile

__all__ = ["Block", "Workout", "demo_workout", "generate_workout", "labelled_set"]

Sport = Literal["ride", "run"]
Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Block:
    """``duration_s`` at ``level`` (fraction of FTP, or of threshold speed for runs).

    ``end_level`` makes the block a linear ramp (a fade); ``hover`` marks a block
    whose level sits just inside a bound (set once bounds are known).
    """

    duration_s: int
    level: float
    end_level: float | None = None
    kind: str = "steady"


@dataclass(frozen=True, slots=True)
class SessionArrays:
    """A session's truth on a 1 s grid; NaN where a channel is missing.

    ``present`` is False where no sample exists at all (a gap in the recording).
    """

    t0_s: float
    hr: Array
    power: Array
    speed: Array
    present: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Workout:
    name: str
    sport: Sport
    seed: int
    athlete: AthleteProfile
    config: AlertConfig
    blocks: tuple[Block, ...]
    #: What the device sends (t_s from 0, 1 Hz, with noise, spikes, dropouts, gaps).
    samples: tuple[AlertSample, ...]
    #: The noise-free truth on a 1 s grid.
    truth: SessionArrays


def _athlete(rng: np.random.Generator) -> AthleteProfile:
    hr_max = float(rng.integers(178, 200))
    return AthleteProfile(
        hr_max=hr_max,
        hr_rest=float(rng.integers(45, 62)),
        lthr=round(hr_max * float(rng.uniform(0.88, 0.92))),
        ftp_w=float(rng.integers(200, 330)),
        w_prime_j=float(rng.integers(15, 26)) * 1000.0,
        threshold_pace_s_per_km=float(rng.integers(230, 330)),
    )


def _ride_blocks(rng: np.random.Generator, kind: str) -> list[Block]:
    warm = [Block(600, float(rng.uniform(0.45, 0.52)), kind="warmup")]
    cool = [Block(480, float(rng.uniform(0.4, 0.5)), kind="cooldown")]
    if kind == "endurance":
        level = float(rng.uniform(0.66, 0.76))
        blocks = [Block(int(rng.integers(1500, 2400)), level)]
        for _ in range(int(rng.integers(1, 3))):
            blocks.append(
                Block(int(rng.integers(30, 75)), float(rng.uniform(1.3, 1.6)), kind="surge")
            )
            blocks.append(Block(int(rng.integers(600, 900)), level))
        blocks.append(Block(int(rng.integers(60, 150)), 0.0, kind="coast"))
        blocks.append(Block(600, level, kind="hover"))
        return warm + blocks + cool
    # Intervals: steady repeats near threshold, one hard (W'-draining) repeat, and in
    # some sessions a late repeat that fades.
    reps = int(rng.integers(4, 7))
    rep_s = int(rng.integers(360, 540))
    base = float(rng.uniform(0.95, 1.0))
    fade_rep = int(rng.integers(2, reps)) if rng.random() < 0.7 else -1
    hard_reps = set(rng.choice(np.arange(1, reps), int(rng.integers(1, 3)), replace=False).tolist())
    blocks = []
    for i in range(reps):
        if i in hard_reps:
            level = float(rng.uniform(1.28, 1.4))
            blocks.append(Block(int(rng.integers(200, 260)), level, kind="hard"))
        elif i == fade_rep:
            blocks.append(Block(rep_s, base * float(rng.uniform(0.8, 0.87)), kind="fade"))
        else:
            blocks.append(Block(rep_s, base * float(rng.uniform(0.98, 1.02)), kind="rep"))
        blocks.append(
            Block(int(rng.integers(150, 240)), float(rng.uniform(0.35, 0.5)), kind="rest")
        )
    blocks.append(Block(480, float(rng.uniform(0.6, 0.7)), kind="hover"))
    return warm + blocks + cool


def _run_blocks(rng: np.random.Generator, kind: str) -> list[Block]:
    # Warm-up clearly slower than the main set, as the ride's: a step small enough to
    # leave a window "steady" (CV under 8 %) would make the fatigue gates a coin toss.
    warm = [Block(600, float(rng.uniform(0.6, 0.66)), kind="warmup")]
    cool = [Block(420, float(rng.uniform(0.62, 0.7)), kind="cooldown")]
    if kind == "tempo":
        level = float(rng.uniform(0.84, 0.9))
        blocks = [Block(int(rng.integers(1500, 2400)), level)]
        blocks.append(Block(int(rng.integers(20, 45)), 0.0, kind="stop"))
        blocks.append(Block(int(rng.integers(400, 700)), level))
        blocks.append(Block(int(rng.integers(60, 120)), level * 1.12, kind="surge"))
        blocks.append(Block(int(rng.integers(400, 700)), level))
        blocks.append(Block(600, level, kind="hover"))
        return warm + blocks + cool
    level = float(rng.uniform(0.86, 0.9))
    blocks = []
    for _ in range(int(rng.integers(3, 6))):
        blocks.append(Block(int(rng.integers(180, 420)), level))
        change = float(rng.choice([0.88, 0.9, 1.1, 1.13]))
        blocks.append(Block(int(rng.integers(60, 180)), level * change, kind="off-pace"))
    blocks.append(Block(int(rng.integers(20, 40)), 0.0, kind="stop"))
    blocks.append(Block(600, level, kind="hover"))
    return warm + blocks + cool


def _truth_output(blocks: list[Block], unit: float) -> tuple[Array, list[tuple[int, int, Block]]]:
    parts: list[Array] = []
    spans: list[tuple[int, int, Block]] = []
    t = 0
    for block in blocks:
        end = block.level if block.end_level is None else block.end_level
        parts.append(np.linspace(block.level, end, block.duration_s) * unit)
        spans.append((t, t + block.duration_s, block))
        t += block.duration_s
    return np.concatenate(parts), spans


def _truth_hr(output: Array, athlete: AthleteProfile, unit: float, tau_s: float,
              drift_bpm_per_min: float) -> Array:  # fmt: skip
    """First-order response of HR to effort, plus cardiac drift while working."""
    x = output / unit
    reserve = athlete.lthr - athlete.hr_rest
    steady = athlete.hr_rest + reserve * (0.35 + 0.65 * x)
    steady = np.where(x <= 0.05, athlete.hr_rest + 0.45 * reserve, steady)  # stopped
    working = x >= 0.5
    drift = np.cumsum(np.where(working, drift_bpm_per_min / 60.0, 0.0))
    steady = np.minimum(steady + drift, athlete.hr_max - 2)
    hr: Array = np.empty_like(steady)
    level = athlete.hr_rest + 0.3 * reserve
    k = 1.0 - np.exp(-1.0 / tau_s)
    for i, target in enumerate(steady):
        level += (target - level) * k
        hr[i] = level
    return hr


def _clean_bound(signal: Array, candidates: list[float], band: float, min_slope: float,
                 outside: Literal["above", "below"]) -> float | None:  # fmt: skip
    """The first candidate bound that the true signal never creeps across slowly.

    Near the bound (within ``band``) the truth must be moving (|slope| over 10 s at
    least ``min_slope`` per second) or be on the inside; otherwise a measured value
    would wander in and out and "out or not" would be decided by noise.
    """
    slope = np.abs(np.gradient(np.convolve(signal, np.ones(10) / 10, mode="same")))
    for bound in candidates:
        near = np.abs(signal - bound) < band
        inside = signal < bound - band / 2 if outside == "above" else signal > bound + band / 2
        bad = near & (slope < min_slope) & ~inside
        if not bad[10:-10].any():
            return bound
    return None


def _measure(rng: np.random.Generator, truth: Array, noise_sd: Array | float,
             spike: float, spike_rate: float, low: float, high: float) -> Array:  # fmt: skip
    measured = truth + rng.normal(0.0, 1.0, len(truth)) * noise_sd
    spikes = rng.random(len(truth)) < spike_rate
    # Single-sample spikes: a second one within 5 s of the last is dropped.
    last = -10
    for i in np.flatnonzero(spikes):
        if i - last < 5:
            spikes[i] = False
        else:
            last = int(i)
    measured[spikes] = truth[spikes] + spike * rng.choice([-1.0, 1.0], int(spikes.sum()))
    measured = np.clip(measured, low, high)
    # Dropouts of this channel: a few holes of 3-30 s.
    for _ in range(int(rng.integers(1, 4))):
        start = int(rng.integers(0, len(truth) - 40))
        measured[start : start + int(rng.integers(3, 31))] = np.nan
    return measured


def generate_workout(seed: int, sport: Sport | None = None, kind: str | None = None) -> Workout:
    """One labelled session; the seed decides everything not given."""
    rng = np.random.default_rng(seed)
    athlete = _athlete(rng)
    sport = sport or ("ride" if rng.random() < 0.6 else "run")
    if sport == "ride":
        kind = kind or str(rng.choice(["intervals", "endurance"]))
        blocks = _ride_blocks(rng, kind)
        unit = athlete.ftp_w
    else:
        kind = kind or str(rng.choice(["tempo", "fartlek"]))
        blocks = _run_blocks(rng, kind)
        unit = 1000.0 / athlete.threshold_pace_s_per_km
    drifting = rng.random() < 0.5
    drift = float(rng.uniform(0.3, 0.6)) if drifting else float(rng.uniform(0.0, 0.04))
    tau = float(rng.uniform(30.0, 90.0))
    output, spans = _truth_output(blocks, unit)
    n = len(output)
    main = max((b for b in blocks if b.kind in ("steady", "rep")), key=lambda b: b.duration_s)
    # Zone bounds around the main effort, and the hover blocks just inside one of them.
    if sport == "ride":
        target = main.level * unit
        p_high = round(target * 1.18)
        p_low = round(target * 0.62)
        _keep_clear(spans, output, [p_low, p_high], 25.0, lambda v: v)
        _place_hover(spans, output, p_high - 14.0)
        zone_rule: dict[str, PowerRule | PaceRule] = {
            "power": PowerRule(low_w=p_low, high_w=p_high)
        }
    else:
        pace = round(1000.0 / (main.level * unit))
        _keep_clear(spans, output, [pace - 12.0, pace + 12.0], 8.0, lambda v: 1000.0 / v)
        # Hover 8 s/km inside the slow bound: just faster than target + tolerance.
        _place_hover(spans, output, 1000.0 / (pace + 12.0 - 8.0))
        zone_rule = {"pace": PaceRule(target_s_per_km=pace, tolerance_s_per_km=12.0)}
    if sport == "ride":
        # Second-to-second power varies for real (torque through the pedal stroke, wind,
        # gradient): it is part of the truth, not sensor noise. A power meter itself is
        # accurate to 1-2 %.
        output = np.maximum(0.0, output * (1.0 + rng.normal(0.0, rng.uniform(0.03, 0.07), n)))
    hr = _truth_hr(output, athlete, unit, tau, drift)
    hr_main = float(np.median(hr[n // 3 : 2 * n // 3]))
    high = _clean_bound(hr, [hr_main + d for d in (8.0, 10.0, 12.0, 14.0, 6.0, 16.0, 18.0)],
                        3.0, 0.08, "above")  # fmt: skip
    low = _clean_bound(hr, [hr_main - d for d in (25.0, 22.0, 28.0, 19.0, 31.0, 16.0, 34.0)],
                       3.0, 0.08, "below")  # fmt: skip
    rules = Rules(heart_rate=HeartRateRule(high_bpm=high, low_bpm=low))
    rules = rules.model_copy(update=zone_rule)
    rules = rules.model_copy(
        update={
            "ef_drop": EfDropRule(),
            "hr_drift": HrDriftRule(),
            "power_fade": PowerFadeRule(enabled=sport == "ride"),
            "w_prime": WPrimeRule(enabled=sport == "ride"),
        }
    )
    config = AlertConfig(rules=rules)

    has_power = sport == "ride"
    truth = SessionArrays(
        t0_s=0.0,
        hr=hr,
        power=output.copy() if has_power else np.full(n, np.nan),
        speed=np.full(n, np.nan) if has_power else output.copy(),
        present=np.ones(n, dtype=bool),
    )
    hr_m = _measure(rng, hr, float(rng.uniform(0.8, 2.0)), 35.0, 1 / 400, 0.0, 250.0)
    if has_power:
        sd = output * 0.015 + 2.0
        out_m = _measure(rng, output, sd, 600.0, 1 / 300, 0.0, 2500.0)
    else:
        sd_v = float(rng.uniform(0.05, 0.12))
        out_m = _measure(rng, output, sd_v, 2.5, 1 / 300, 0.0, 30.0)
    present = np.ones(n, dtype=bool)
    if rng.random() < 0.5:  # a short gap with no sample at all (device or radio)
        start = int(rng.integers(900, n - 900))
        present[start : start + int(rng.integers(6, 20))] = False
    samples = tuple(
        AlertSample(
            t_s=float(i),
            heart_rate_bpm=_opt(hr_m[i]),
            power_w=_opt(out_m[i]) if has_power else None,
            speed_m_s=None if has_power else _opt(out_m[i]),
        )
        for i in range(n)
        if present[i]
    )
    truth = SessionArrays(truth.t0_s, truth.hr, truth.power, truth.speed, present)
    return Workout(
        name=f"{sport}-{kind}-{seed}",
        sport=sport,
        seed=seed,
        athlete=athlete,
        config=config,
        blocks=tuple(blocks),
        samples=samples,
        truth=truth,
    )


def _opt(value: float) -> float | None:
    return None if value != value else round(float(value), 2)


def _keep_clear(spans: list[tuple[int, int, Block]], output: Array, bounds: list[float],
                safe: float, to_metric: Callable[[float], float]) -> None:  # fmt: skip
    """Move steady blocks that sit within ``safe`` of a bound to ``safe`` away from it.

    Only the hover blocks sit near a bound, on purpose; elsewhere a level a few watts
    from a bound would make "out or not" a matter of noise. ``to_metric`` maps output
    to the rule's metric (speed to pace), an involution for both uses here.
    """
    for start, end, block in spans:
        if block.kind in ("hover", "coast", "stop") or block.end_level is not None:
            continue
        value = to_metric(float(output[start]))
        for bound in bounds:
            if abs(value - bound) < safe:
                value = bound + safe if value >= bound else bound - safe
        output[start:end] = to_metric(value)


def _place_hover(spans: list[tuple[int, int, Block]], output: Array, level: float) -> None:
    """Set the hover blocks' output to ``level``, just inside a bound."""
    for start, end, block in spans:
        if block.kind == "hover":
            output[start:end] = level


def demo_workout(seed: int = 7) -> Workout:
    """The realistic demo ride for ``livecoach up``: 70-80 min of intervals."""
    return generate_workout(seed, sport="ride", kind="intervals")


def labelled_set(n_sessions: int = 40, first_seed: int = 1000) -> list[Workout]:
    """Synthetic sessions of every sport and kind, fixed seeds (tests, benchmarks)."""
    kinds: list[tuple[Sport, str]] = [
        ("ride", "intervals"),
        ("ride", "endurance"),
        ("run", "tempo"),
        ("run", "fartlek"),
    ]
    return [generate_workout(first_seed + i, *kinds[i % len(kinds)]) for i in range(n_sessions)]

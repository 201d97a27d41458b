"""Scenario scripts turned into what a device sends: 1 Hz samples with realistic noise.

A script is a list of :class:`Segment` (what the athlete does: power for rides, pace
for runs, or a coast, a stop) plus :class:`Event` overlays (coasts, turns, lights,
surges, sensor dropouts, radio gaps) placed on it. :func:`simulate` turns it into the
athlete's true output and heart rate, then into samples with the noise measured on the
shared recordings (``bench/alert_noise.py``, figures in docs/alerts.md):

======================  ==========================  ===============================
channel                 measured (steady stretches)  used here
======================  ==========================  ===============================
power, 1 s variability  4.6 % (Stryd run) to 8.9 %  ``indoor`` 6 %, ``outdoor`` 12 %
                        (trainer), 17 % (outdoor)    (AR(1), 3 s), meter 1.5 % + 2 W
heart rate jitter       0.36-0.51 bpm                0.5 bpm
heart rate wander       2.2 bpm (steady run)         2 bpm (OU, 2 min)
speed                   0.07 m/s, 3 s (foot pod);    ``footpod`` 0.07 m/s, 3 s;
                        0.42-0.63 m/s, 5-6 s (GPS,   ``gps`` 0.25 m/s, 6 s
                        rides)
======================  ==========================  ===============================

Heart rate is a first-order response to effort (time constant ``hr_tau_s``) plus the
scenario's drift while working; a stop brings it down, a surge up. Nothing here knows
the alert rules: the expected alerts are written in the scenarios, by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from agents.alerts.rules import AlertSample

__all__ = ["Event", "Noise", "Segment", "Simulated", "simulate"]

Array = npt.NDArray[np.float64]
Noise = Literal["indoor", "outdoor", "footpod", "gps", "clean"]

_POWER_VAR = {"indoor": 0.04, "outdoor": 0.08, "footpod": 0.04, "gps": 0.04, "clean": 0.02}
_SPEED_SD = {"footpod": (0.07, 3.0), "gps": (0.12, 5.0), "indoor": (0.1, 5.0),
             "outdoor": (0.3, 5.0), "clean": (0.03, 3.0)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Segment:
    """``duration_s`` at ``level``: watts for a ride, s/km for a run (0: stopped).

    ``end_level`` makes it a linear ramp (a fade, a warm-up).
    """

    duration_s: int
    level: float
    end_level: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """An overlay at ``at_s`` for ``duration_s``, repeated every ``every_s`` until ``until_s``.

    kinds: ``coast`` (power 0, cadence 0, riding on), ``turn`` (a runner slows to
    ``level`` of their speed), ``stop`` (speed 0, power 0, samples go on), ``gap``
    (no samples at all: auto-pause or radio loss), ``surge`` (output times ``level``),
    ``dropout_hr`` / ``dropout_power`` / ``dropout_speed`` (one channel missing),
    ``spike_hr`` / ``spike_power`` (a single wild reading).
    """

    kind: str
    at_s: int
    duration_s: int = 1
    level: float = 0.0
    every_s: int | None = None
    until_s: int | None = None


@dataclass(frozen=True, slots=True)
class Simulated:
    samples: tuple[AlertSample, ...]
    #: True output per second (W, or m/s for runs) and true heart rate.
    output: Array = field(repr=False)
    heart_rate: Array = field(repr=False)


def _occurrences(event: Event, n: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = event.at_s
    end = n if event.until_s is None else min(n, event.until_s)
    while start < end:
        out.append((start, min(n, start + event.duration_s)))
        if event.every_s is None:
            break
        start += event.every_s
    return out


def _ar1(rng: np.random.Generator, n: int, sd: float, tau_s: float) -> Array:
    a = float(np.exp(-1.0 / tau_s))
    shocks = rng.normal(0.0, sd * np.sqrt(1 - a * a), n)
    out = np.empty(n)
    level = float(rng.normal(0.0, sd))
    for i in range(n):
        level = a * level + shocks[i]
        out[i] = level
    return out


def simulate(
    *,
    sport: Literal["ride", "run"],
    segments: list[Segment],
    events: list[Event],
    seed: int,
    noise: Noise,
    hr_rest: float,
    lthr: float,
    hr_max: float,
    threshold: float,
    hr_tau_s: float = 45.0,
    drift_bpm_per_min: float = 0.0,
) -> Simulated:
    """Samples for one scenario. ``threshold``: FTP (W) or threshold pace (s/km)."""
    rng = np.random.default_rng(seed)
    levels = [
        np.linspace(s.level, s.level if s.end_level is None else s.end_level, s.duration_s)
        for s in segments
    ]
    level = np.concatenate(levels)
    n = len(level)
    run = sport == "run"
    # Output in W, or speed in m/s for a run (a pace of 0 is standing still).
    out = np.where(level > 0, 1000.0 / np.where(level > 0, level, 1.0), 0.0) if run else level
    out = out.astype(np.float64)
    coasting = np.zeros(n, dtype=bool)
    present = np.ones(n, dtype=bool)
    drop = {"hr": np.zeros(n, bool), "power": np.zeros(n, bool), "speed": np.zeros(n, bool)}
    spikes = {"hr": np.zeros(n, bool), "power": np.zeros(n, bool)}
    for event in events:
        for a, b in _occurrences(event, n):
            if event.kind == "coast":
                out[a:b] = 0.0 if not run else out[a:b]
                coasting[a:b] = True
            elif event.kind == "turn":
                out[a:b] *= event.level
            elif event.kind == "stop":
                out[a:b] = 0.0
                coasting[a:b] = True
            elif event.kind == "gap":
                out[a:b] = 0.0
                present[a:b] = False
            elif event.kind == "surge":
                out[a:b] *= event.level
            elif event.kind.startswith("dropout_"):
                drop[event.kind.removeprefix("dropout_")][a:b] = True
            elif event.kind.startswith("spike_"):
                spikes[event.kind.removeprefix("spike_")][a] = True
            else:
                raise ValueError(f"unknown event kind {event.kind!r}")
    stopped = out <= 0.0
    # True heart rate: first-order response to effort relative to threshold.
    unit = 1000.0 / threshold if run else threshold
    x = out / unit
    reserve = lthr - hr_rest
    steady = hr_rest + reserve * (0.35 + 0.65 * x)
    steady = np.where(stopped, hr_rest + 0.45 * reserve, steady)
    working = x >= 0.45
    drift = np.cumsum(np.where(working, drift_bpm_per_min / 60.0, 0.0))
    steady = np.minimum(steady + drift, hr_max - 2)
    hr = np.empty(n)
    cur = hr_rest + 0.3 * reserve
    k = 1.0 - float(np.exp(-1.0 / hr_tau_s))
    for i in range(n):
        cur += (steady[i] - cur) * k
        hr[i] = cur
    hr_true = hr.copy()
    hr_m = hr + _ar1(rng, n, 2.0, 120.0) + rng.normal(0.0, 0.5, n)
    # Power: second-to-second variability (pedal stroke, wind, gradient) is real; the
    # meter adds 1.5 % + 2 W. Runs report no power here.
    if run:
        sd, tau = _SPEED_SD[noise]
        speed_m = np.where(stopped, 0.0, np.maximum(0.0, out + _ar1(rng, n, sd, tau)))
        power_m = np.full(n, np.nan)
    else:
        var = _POWER_VAR[noise]
        power_m = out * (1.0 + _ar1(rng, n, var, 2.0))
        power_m = power_m + rng.normal(0.0, 1.0, n) * (0.015 * power_m + 2.0)
        power_m = np.where(coasting, 0.0, np.maximum(0.0, power_m))
        speed_m = np.full(n, np.nan)
    cadence = np.where(coasting, 0.0, 85.0 if not run else 170.0)
    hr_m[spikes["hr"]] += 60.0
    power_m[spikes["power"]] += 900.0
    hr_m[drop["hr"]] = np.nan
    power_m[drop["power"]] = np.nan
    speed_m[drop["speed"]] = np.nan
    samples = tuple(
        AlertSample(
            t_s=float(i),
            heart_rate_bpm=_opt(hr_m[i]),
            power_w=_opt(power_m[i]),
            speed_m_s=_opt(speed_m[i]),
            cadence_rpm=None if run else float(cadence[i]),
        )
        for i in range(n)
        if present[i]
    )
    return Simulated(samples=samples, output=out, heart_rate=hr_true)


def _opt(value: float) -> float | None:
    return None if value != value else round(float(value), 2)

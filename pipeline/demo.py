"""The demo of ``livecoach up``: two athletes of one coach, a ride and a run.

Each plays a generated workout (:mod:`agents.workouts`) with what a device sends: heart
rate, speed, distance and cadence, and power on the bike. The generator gives heart
rate, power (ride) and speed (run); the rest is derived here: a ride's speed from its
power on a flat road (the cubic of rolling and air resistance, solved in closed form),
distance by integrating speed, cadence from the effort. Each session carries the
workout's structure as a plan (targets per interval), and each athlete has the
generator's physiology as thresholds, with alert bounds set so that a few alerts fire
in the first minutes: a heart-rate ceiling a little under the warm-up's heart rate,
and a warm-up target the athlete is off (the rider above it, the runner slower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.workouts import Sport, Workout, demo_workout, generate_workout

#: Flat-road model of a rider: mass (rider and bike, kg), rolling resistance, CdA (m2),
#: air density (kg/m3).
_MASS_KG, _CRR, _CDA, _RHO, _G = 80.0, 0.004, 0.38, 1.2, 9.81


@dataclass(frozen=True)
class DemoSample:
    offset_s: float
    fields: dict[str, float]


@dataclass(frozen=True)
class DemoAthlete:
    email: str
    name: str
    sport: str
    samples: list[DemoSample]
    #: The session's structured workout (``metadata.plan``, docs/alerts.md).
    plan: dict[str, Any]
    #: ``athlete_profiles`` columns, alert settings included.
    profile: dict[str, Any]


def ride_speed(power_w: float) -> float:
    """Speed (m/s) on a flat road at ``power_w``: P = v*(Crr*m*g) + rho*CdA*v**3/2."""
    if power_w <= 0:
        return 0.0
    a = 0.5 * _RHO * _CDA
    b = _CRR * _MASS_KG * _G
    # v³ + p·v + q = 0 with p > 0: one real root (Cardano).
    p, q = b / a, -power_w / a
    root = math.sqrt(q * q / 4 + p**3 / 27)
    return math.cbrt(-q / 2 + root) + math.cbrt(-q / 2 - root)


def _cadence(sport: str, t: float, effort: float) -> float:
    """A plausible cadence for an effort (a fraction of threshold), with a slow wobble."""
    wobble = 2.0 * math.sin(t / 37.0)
    if effort <= 0.05:
        return 0.0
    if sport == "ride":
        return max(70.0, min(105.0, 80.0 + 14.0 * (effort - 0.5) + wobble))
    return max(150.0, min(192.0, 160.0 + 28.0 * (effort - 0.6) + wobble))


def _samples(workout: Workout) -> list[DemoSample]:
    athlete = workout.athlete
    threshold_speed = 1000.0 / athlete.threshold_pace_s_per_km
    out: list[DemoSample] = []
    distance = 0.0
    last_t: float | None = None
    for s in workout.samples:
        speed = s.speed_m_s
        if workout.sport == "ride" and s.power_w is not None:
            speed = ride_speed(s.power_w)
        dt = 1.0 if last_t is None else max(0.0, min(5.0, s.t_s - last_t))
        last_t = s.t_s
        if speed is not None:
            distance += speed * dt
        effort = (
            (s.power_w or 0.0) / athlete.ftp_w
            if workout.sport == "ride"
            else (speed or 0.0) / threshold_speed
        )
        fields = {
            "heart_rate": s.heart_rate_bpm,
            "power_w": s.power_w,
            "speed_m_s": speed,
            "distance_m": round(distance, 1),
            "cadence": round(_cadence(workout.sport, s.t_s, effort)),
        }
        out.append(DemoSample(s.t_s, {k: v for k, v in fields.items() if v is not None}))
    return out


def _plan(workout: Workout, first_off: float) -> dict[str, Any]:
    """The workout's blocks as a plan; the first interval's target is ``first_off``
    times the effort done (an athlete off target from the warm-up on)."""
    athlete = workout.athlete
    intervals: list[dict[str, Any]] = []
    for i, block in enumerate(workout.blocks):
        level = block.level * (first_off if i == 0 else 1.0)
        interval: dict[str, Any] = {"name": block.kind, "duration_s": block.duration_s}
        if level > 0.05 and workout.sport == "ride":
            watts = level * athlete.ftp_w
            interval["power_w"] = {"low": round(watts * 0.95), "high": round(watts * 1.05)}
        elif level > 0.05:
            pace = athlete.threshold_pace_s_per_km / level
            interval["pace_s_per_km"] = {"low": round(pace * 0.97), "high": round(pace * 1.03)}
        intervals.append(interval)
    return {"name": workout.name, "intervals": intervals}


def _warmup_ceiling(workout: Workout) -> float:
    """A heart-rate ceiling 7 bpm under the median of minutes 2 to 5 (the warm-up)."""
    hr = sorted(
        s.heart_rate_bpm
        for s in workout.samples
        if 120 <= s.t_s < 300 and s.heart_rate_bpm is not None
    )
    return float(round(hr[len(hr) // 2] - 7)) if hr else 0.8 * workout.athlete.hr_max


def _profile(workout: Workout) -> dict[str, Any]:
    a = workout.athlete
    hr_ceiling = _warmup_ceiling(workout)
    return {
        "hr_max": round(a.hr_max),
        "hr_rest": round(a.hr_rest),
        "lthr": round(a.lthr),
        "ftp_w": a.ftp_w,
        "w_prime_j": a.w_prime_j,
        "threshold_pace_s_per_km": a.threshold_pace_s_per_km,
        "alert_settings": {
            "version": 1,
            "rules": {
                # No lag allowance: the ceiling bites in the warm-up already.
                "heart_rate": {"high_bpm": hr_ceiling, "dwell_s": 20, "lag_s": 0},
                "power": {"dwell_s": 20},
                "pace": {"dwell_s": 20},
            },
        },
    }


#: The names of the extra demo athletes (``--athletes``), in order.
_MORE_NAMES = (
    "Chloe Park", "Dev Patel", "Elin Berg", "Femi Ade", "Gus Moreau", "Hana Sato",
    "Ivo Novak", "Jade Kim", "Kofi Mensah", "Lena Vogel", "Mateo Ruiz", "Nora Lind",
)  # fmt: skip


def demo_athletes(count: int = 2) -> list[DemoAthlete]:
    """Ben rides intervals, Ada runs a tempo; with ``count`` above 2, more athletes of
    the same coach alternate rides and runs of other seeds (a fuller grid)."""
    ride = demo_workout()
    run = generate_workout(11, sport="run", kind="tempo")
    out = [
        DemoAthlete(
            "athlete@demo.livecoach", "Ben Rider", "ride", _samples(ride),
            _plan(ride, first_off=0.8), _profile(ride),
        ),
        DemoAthlete(
            "runner@demo.livecoach", "Ada Runner", "run", _samples(run),
            _plan(run, first_off=1.12), _profile(run),
        ),
    ]  # fmt: skip
    for i in range(max(0, count - 2)):
        name = _MORE_NAMES[i % len(_MORE_NAMES)]
        sport: Sport = "ride" if i % 2 == 0 else "run"
        kind = (
            ("intervals", "endurance")[i // 2 % 2]
            if sport == "ride"
            else ("tempo", "fartlek")[i // 2 % 2]
        )
        workout = generate_workout(100 + i, sport=sport, kind=kind)
        off = 0.85 if sport == "ride" else 1.1
        out.append(
            DemoAthlete(
                f"athlete{i + 3}@demo.livecoach",
                name,
                sport,
                _samples(workout),
                _plan(workout, first_off=off),
                _profile(workout),
            )
        )
    return out[: max(1, count)]


__all__ = ["DemoAthlete", "DemoSample", "demo_athletes", "ride_speed"]

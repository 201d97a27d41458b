"""Labelled scenarios: what the athlete does and what a coach expects, written down first.

Every scenario is a plain-language description, the script it stands for (segments and
overlays for :mod:`agents.alerts.simulate`), the coach's bounds or plan, and the
alerts a coach expects, written by hand from the description: the kind of alert, when
it becomes owed (``start_s``), by when it must have come (``by_s``) and until when an
alert about the same thing is still welcome (``until_s``). Nothing here is computed by
the rules or by their definitions; the windows are the coach's, in round figures.

Kinds of situation (``kind``) group the scores: the things that must stay silent
(coasting, turns, gps-noise, normal-drift, fade-after-block, stops, traffic-lights,
surges, sensor-noise, dropouts) and the things that must alert (under-target,
over-target, pace-off, hr-ceiling, hr-floor, cardiac-drift, fade, w-prime).
Ambiguous cases, where coaches would disagree, are in :data:`AMBIGUOUS`: replayed and
reported, never scored.

The athlete throughout: FTP and CP 250 W, W' 20 kJ, LTHR 165, HRmax 185, HRrest 50,
threshold pace 4:30 /km. Their heart rate settles near 144 bpm at 180 W, 157 bpm at
225 W, 165 at FTP, 175 (the default ceiling, 106 % of LTHR) near 285 W; running, near
157 at 5:00 /km and 165 at 4:30 /km. Hard efforts take heart rate over the default
ceiling: where a scenario has them, a ceiling alert is welcome but not owed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agents.alerts.config import (
    AlertConfig,
    HeartRateRule,
    PaceRule,
    PowerFadeRule,
    PowerRule,
    Rules,
    WPrimeRule,
)
from agents.alerts.plan import Interval, Range, WorkoutPlan
from agents.alerts.simulate import Event, Noise, Segment
from pipeline.models import AthleteProfile

__all__ = ["AMBIGUOUS", "ATHLETE", "SCENARIOS", "TYPES", "Expect", "Scenario"]

ATHLETE = AthleteProfile(
    hr_max=185, hr_rest=50, lthr=165, ftp_w=250, w_prime_j=20_000, threshold_pace_s_per_km=270
)
#: Alert types as a coach sees them, and the rules behind each.
TYPES: dict[str, tuple[str, ...]] = {
    "heart rate": ("heart_rate",),
    "pace": ("pace",),
    "power": ("power",),
    "fatigue": ("ef_drop", "hr_drift", "power_fade", "w_prime"),
}
DRIFT = ("hr_drift", "ef_drop")
FADE = ("power_fade", "ef_drop")
WPRIME = ("w_prime",)


@dataclass(frozen=True, slots=True)
class Expect:
    """An alert a coach expects: one of ``rules`` (in ``direction``, if given) fired
    between ``start_s`` and ``by_s``; alerts up to ``until_s`` are welcome too."""

    rules: tuple[str, ...]
    direction: str | None
    start_s: int
    by_s: int
    until_s: int
    #: False: welcome but not owed (neither a miss without it nor false with it).
    owed: bool = True


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    kind: str
    description: str
    sport: Literal["ride", "run"]
    segments: tuple[Segment, ...]
    events: tuple[Event, ...] = ()
    config: AlertConfig = field(default_factory=AlertConfig)
    plan: WorkoutPlan | None = None
    expect: tuple[Expect, ...] = ()
    noise: Noise = "outdoor"
    drift_bpm_per_min: float = 0.0
    seed: int = 0

    @property
    def duration_s(self) -> int:
        return sum(s.duration_s for s in self.segments)


def _config(
    sport: str,
    *,
    hr: tuple[float | None, float | None] = (None, 175),
    power: tuple[float | None, float | None] = (None, None),
    pace: tuple[float, float] | None = None,
) -> AlertConfig:
    rules = Rules(
        heart_rate=HeartRateRule(low_bpm=hr[0], high_bpm=hr[1]),
        power=PowerRule(low_w=power[0], high_w=power[1]),
        pace=PaceRule(target_s_per_km=pace[0], tolerance_s_per_km=pace[1]) if pace else PaceRule(),
        power_fade=PowerFadeRule(enabled=sport == "ride"),
        w_prime=WPrimeRule(enabled=sport == "ride"),
    )
    return AlertConfig(rules=rules)


#: Heart rate over the default ceiling after a hard effort: fair, not owed.
_HARD_HR = Expect(("heart_rate",), "high", 600, 10_000, 10_000, owed=False)


def _zone(rule: str, direction: str, start: int, end: int, within: int = 60) -> Expect:
    """A zone alert owed within ``within`` s of the deviation's start (a coach's minute)."""
    return Expect((rule,), direction, start, start + within, end + 30)


def _plan(
    *steps: tuple[str, float, float | None, float | None], kind: str = "power"
) -> WorkoutPlan:
    """Steps (name, duration s, target low, target high); targets in W or s/km."""
    intervals = []
    for name, duration, low, high in steps:
        target = None if low is None or high is None else Range(low=low, high=high)
        if kind == "power":
            intervals.append(Interval(name=name, duration_s=duration, power_w=target))
        else:
            intervals.append(Interval(name=name, duration_s=duration, pace_s_per_km=target))
    return WorkoutPlan(name="scenario", intervals=intervals)


def _reps(n: int, on_s: int, on: float, off_s: int, off: float) -> list[Segment]:
    out: list[Segment] = []
    for _ in range(n):
        out += [Segment(on_s, on), Segment(off_s, off)]
    return out


S: list[Scenario] = []
A: list[Scenario] = []


def _add(target: list[Scenario], **kw: Any) -> None:
    target.append(Scenario(seed=len(S) + len(A) + 1, **kw))


# --- coasting: never an alert --------------------------------------------------------

for i, (coast_s, every_s, watts) in enumerate([(12, 300, 180), (15, 180, 182), (10, 120, 185)]):
    _add(
        S,
        id=f"coast-endurance-{i + 1}",
        kind="coasting",
        sport="ride",
        description=f"Endurance ride at {watts} W, target 170-200 W, 60 min; coasts "
        f"{coast_s} s down a hill every {every_s // 60} min. A coach expects no alert.",
        segments=(Segment(3600, watts),),
        events=(Event("coast", 200, coast_s, every_s=every_s),),
        config=_config("ride", power=(170, 200)),
    )
_add(
    S,
    id="coast-long-descent",
    kind="coasting",
    sport="ride",
    description="Endurance ride at 185 W, target 170-200 W; a 90 s descent freewheeling "
    "at 35 min. Nobody pedals downhill: no alert.",
    segments=(Segment(3600, 185),),
    events=(Event("coast", 2100, 90),),
    config=_config("ride", power=(170, 200)),
)
_add(
    S,
    id="coast-in-plan-reps",
    kind="coasting",
    sport="ride",
    noise="indoor",
    description="Plan: 10 min easy at 150 W, 3 x 8 min at 250 W (240-262) with 4 min easy; "
    "the rider coasts 12 s in the middle of every rep to drink. On target otherwise: no alert.",
    segments=(Segment(600, 150), *_reps(3, 480, 250, 240, 140)),
    events=tuple(Event("coast", 600 + k * 720 + 240, 12) for k in range(3)),
    plan=_plan(
        ("easy", 600, 120, 180),
        ("rep 1", 480, 238, 262),
        ("rest", 240, 110, 170),
        ("rep 2", 480, 238, 262),
        ("rest", 240, 110, 170),
        ("rep 3", 480, 238, 262),
        ("rest", 240, 110, 170),
    ),
    config=_config("ride"),
)
_add(
    S,
    id="coast-rolling-hills",
    kind="coasting",
    sport="ride",
    description="Rolling ride at 190 W, target 170-210 W, 70 min; a 14 s coast every 2 min "
    "on every descent. No alert.",
    segments=(Segment(4200, 190),),
    events=(Event("coast", 90, 14, every_s=120),),
    config=_config("ride", power=(170, 210)),
)

# --- turns and short slowdowns (runs) ------------------------------------------------

for i, (slow_s, factor, every_s, noise) in enumerate(
    [(5, 0.5, 90, "gps"), (8, 0.6, 120, "gps"), (6, 0.4, 100, "footpod"), (7, 0.55, 60, "footpod")]
):
    _add(
        S,
        id=f"turns-run-{i + 1}",
        kind="turns",
        sport="run",
        noise=noise,
        description=f"Run on target, 5:00 /km (target 5:00 ± 15 s), 45 min; slows to "
        f"{int(factor * 100)} % of speed for {slow_s} s at a turn every {every_s} s. "
        "No alert.",
        segments=(Segment(2700, 300),),
        events=(Event("turn", 45, slow_s, level=factor, every_s=every_s),),
        config=_config("run", pace=(300, 15)),
    )
_add(
    S,
    id="turns-track-out-and-back",
    kind="turns",
    sport="run",
    noise="gps",
    description="Out-and-back reps on a path at 4:40 /km (target 4:40 ± 12 s): an 8 s "
    "turnaround at half speed every 2 min. No alert.",
    segments=(Segment(2400, 280),),
    events=(Event("turn", 120, 8, level=0.45, every_s=120),),
    config=_config("run", pace=(280, 12)),
)
_add(
    S,
    id="turns-crit-corners",
    kind="turns",
    sport="ride",
    description="Criterium-style loop at 210 W, target 180-240 W: every 60 s a corner where "
    "power drops to 40 % for 6 s. No alert.",
    segments=(Segment(2700, 210),),
    events=(Event("surge", 30, 6, level=0.4, every_s=60),),
    config=_config("ride", power=(180, 240)),
)

# --- GPS noise near a bound ------------------------------------------------------------

for i, (pace, target, tol, noise, what) in enumerate(
    [
        (298, 300, 15, "gps", "17 s/km inside the slow bound"),
        (295, 300, 15, "gps", "10 s/km inside the fast bound"),
        (307, 300, 15, "footpod", "8 s/km inside the slow bound"),
        (303, 300, 15, "gps", "12 s/km inside the slow bound"),
        (292, 285, 15, "gps", "8 s/km inside the fast bound... of 4:45, at 4:52"),
    ]
):
    _add(
        S,
        id=f"gps-near-bound-{i + 1}",
        kind="gps-noise",
        sport="run",
        noise=noise,
        description=f"Steady run at {pace // 60}:{pace % 60:02d} /km, target "
        f"{target // 60}:{target % 60:02d} ± {tol} s, 40 min: {what}, with "
        f"{'GPS' if noise == 'gps' else 'foot pod'} wander. No alert.",
        segments=(Segment(2400, pace),),
        config=_config("run", pace=(target, tol)),
    )
_add(
    S,
    id="power-near-upper-bound",
    kind="sensor-noise",
    sport="ride",
    description="Tempo at 198 W, target 170-210 W, 50 min, outdoors: 6 % inside the upper "
    "bound with ordinary pedalling variability. No alert.",
    segments=(Segment(3000, 198),),
    config=_config("ride", power=(170, 210)),
)

# --- normal heart-rate drift -----------------------------------------------------------

for i, (sport, level, minutes, drift) in enumerate(
    [
        ("ride", 180, 60, 0.07),
        ("run", 300, 50, 0.08),
        ("ride", 210, 45, 0.05),
        ("run", 310, 60, 0.09),
        ("ride", 170, 90, 0.06),
    ]
):
    _add(
        S,
        id=f"normal-drift-{i + 1}",
        kind="normal-drift",
        sport=sport,
        noise="footpod" if sport == "run" else "outdoor",
        drift_bpm_per_min=drift,
        description=f"Steady {sport} for {minutes} min at "
        f"{f'{level} W' if sport == 'ride' else f'{level // 60}:{level % 60:02d} /km'}; heart "
        f"rate creeps up {drift} bpm/min (2-3 % over 40 min, normal). No alert.",
        segments=(Segment(minutes * 60, level),),
        config=_config(sport),
    )

# --- power fade after a deliberate block: not a fade -------------------------------------

_add(
    S,
    id="fade-after-hard-rep",
    kind="fade-after-block",
    sport="ride",
    noise="indoor",
    description="5 x 6 min at 250 W with 3 min easy, HR ceiling 180; the third rep is a "
    "deliberate 4 min at 290 W. The rider then returns to 250 W: no fade, no alert.",
    segments=(
        Segment(600, 160),
        *_reps(2, 360, 250, 180, 130),
        Segment(240, 290),
        Segment(180, 130),
        *_reps(2, 360, 250, 180, 130),
    ),
    config=_config("ride", hr=(None, 180)),
)
_add(
    S,
    id="fade-after-tempo-block",
    kind="fade-after-block",
    sport="ride",
    description="Endurance at 180 W with a 5 min tempo block at 235 W at 30 min, then back "
    "to 180 W for 40 min. No alert.",
    segments=(Segment(1800, 180), Segment(300, 235), Segment(2400, 180)),
    config=_config("ride"),
)
_add(
    S,
    id="fade-after-opener-plan",
    kind="fade-after-block",
    sport="ride",
    noise="indoor",
    description="Plan: 10 min easy, 5 min opener at 280 W (266-294), 5 min easy, 2 x 10 min at "
    "260 W (247-273) with 5 min easy, ridden as planned. No alert.",
    segments=(
        Segment(600, 150),
        Segment(300, 280),
        Segment(300, 140),
        Segment(600, 260),
        Segment(300, 140),
        Segment(600, 260),
        Segment(300, 130),
    ),
    plan=_plan(
        ("easy", 600, 120, 180),
        ("opener", 300, 266, 294),
        ("easy", 300, 110, 170),
        ("block 1", 600, 247, 273),
        ("easy", 300, 110, 170),
        ("block 2", 600, 247, 273),
        ("cool", 300, 100, 160),
    ),
    config=_config("ride"),
)
_add(
    S,
    id="fade-after-hill",
    kind="fade-after-block",
    sport="ride",
    description="Ride at 215 W with a 3 min climb at 320 W at 25 min, then back to 215 W for "
    "30 min. No fade alert; heart rate passes the default ceiling on the climb (fair, "
    "not owed).",
    segments=(Segment(1500, 215), Segment(180, 320), Segment(1800, 215)),
    expect=(Expect(("heart_rate",), "high", 1560, 1800, 1900, owed=False),),
    config=_config("ride"),
)
_add(
    S,
    id="faster-block-run",
    kind="fade-after-block",
    sport="run",
    noise="footpod",
    description="Run at 5:00 /km with a 5 min block at 4:20 /km at 25 min, then back to "
    "5:00 /km for 25 min (heart rate stays up a little while). No alert.",
    segments=(Segment(1500, 300), Segment(300, 260), Segment(1500, 300)),
    config=_config("run"),
)

# --- stops ---------------------------------------------------------------------------

_add(
    S,
    id="cafe-stop-autopause",
    kind="stops",
    sport="ride",
    description="Endurance at 185 W, target 170-200 W, 40 min; a 10 min café stop with the "
    "computer auto-paused (no samples), then 30 min more. No alert.",
    segments=(Segment(2400, 185), Segment(600, 0), Segment(1800, 185)),
    events=(Event("gap", 2400, 600),),
    config=_config("ride", power=(170, 200)),
)
_add(
    S,
    id="ten-minute-stop-recording",
    kind="stops",
    sport="ride",
    description="Endurance at 180 W, target 165-200 W, HR floor 115; a 10 min stop with the "
    "computer still recording (speed and power 0). No alert.",
    segments=(Segment(1800, 180), Segment(600, 0), Segment(1800, 180)),
    events=(Event("stop", 1800, 600),),
    config=_config("ride", hr=(115, 175), power=(165, 200)),
)
_add(
    S,
    id="stop-30s-ride",
    kind="stops",
    sport="ride",
    description="Ride at 190 W, target 175-205 W; a 30 s stop at 20 min and at 40 min. No alert.",
    segments=(Segment(3600, 190),),
    events=(Event("stop", 1200, 30), Event("stop", 2400, 30)),
    config=_config("ride", power=(175, 205)),
)
_add(
    S,
    id="stop-2min-run",
    kind="stops",
    sport="run",
    noise="gps",
    description="Run at 5:10 /km (target 5:10 ± 15 s); stops 2 min to tie a shoe at 20 min. "
    "No alert.",
    segments=(Segment(2400, 310),),
    events=(Event("stop", 1200, 120),),
    config=_config("run", pace=(310, 15)),
)
_add(
    S,
    id="stop-in-plan-interval",
    kind="stops",
    sport="ride",
    description="Plan: 40 min at 190 W (178-202); a 30 s stop at a junction at 15 min. No alert.",
    segments=(Segment(2400, 190),),
    events=(Event("stop", 900, 30),),
    plan=_plan(("endurance", 2400, 178, 202)),
    config=_config("ride"),
)

# --- traffic lights ------------------------------------------------------------------

_add(
    S,
    id="lights-city-ride",
    kind="traffic-lights",
    sport="ride",
    description="City ride at 175 W, target 160-195 W, HR floor 110: a 20-50 s red light "
    "every 3 min. No alert.",
    segments=(Segment(2700, 175),),
    events=tuple(Event("stop", 120 + 180 * k, 20 + (k * 7) % 31) for k in range(14)),
    config=_config("ride", hr=(110, 175), power=(160, 195)),
)
_add(
    S,
    id="lights-city-run",
    kind="traffic-lights",
    sport="run",
    noise="gps",
    description="City run at 5:05 /km (target 5:05 ± 15 s): a 15-40 s light every 3-4 min. "
    "No alert.",
    segments=(Segment(2700, 305),),
    events=tuple(Event("stop", 150 + 200 * k, 15 + (k * 9) % 26) for k in range(12)),
    config=_config("run", pace=(305, 15)),
)
_add(
    S,
    id="lights-run-hr-floor",
    kind="traffic-lights",
    sport="run",
    noise="footpod",
    description="Run at 5:00 /km with an HR floor of 130: two 60 s lights at 15 and 30 min "
    "(heart rate falls while standing). No alert.",
    segments=(Segment(2700, 300),),
    events=(Event("stop", 900, 60), Event("stop", 1800, 60)),
    config=_config("run", hr=(130, 175), pace=(300, 15)),
)
_add(
    S,
    id="lights-ride-plan",
    kind="traffic-lights",
    sport="ride",
    description="Plan: 45 min at 185 W (172-198); lights of 25-45 s at 8, 19 and 33 min. No alert.",
    segments=(Segment(2700, 185),),
    events=(Event("stop", 480, 25), Event("stop", 1140, 45), Event("stop", 1980, 35)),
    plan=_plan(("endurance", 2700, 172, 198)),
    config=_config("ride"),
)

# --- brief surges -------------------------------------------------------------------

_add(
    S,
    id="surges-endurance",
    kind="surges",
    sport="ride",
    description="Endurance at 182 W, target 170-200 W: a 12 s surge to ~350 W every 6 min "
    "(a gap to close). No alert.",
    segments=(Segment(3600, 182),),
    events=(Event("surge", 300, 12, level=1.9, every_s=360),),
    config=_config("ride", power=(170, 200)),
)
_add(
    S,
    id="surges-sprints",
    kind="surges",
    sport="ride",
    description="Endurance at 185 W, target 170-205 W, HR ceiling 160: an 8 s sprint to "
    "~600 W every 10 min. No alert.",
    segments=(Segment(3600, 185),),
    events=(Event("surge", 500, 8, level=3.2, every_s=600),),
    config=_config("ride", hr=(None, 160), power=(170, 205)),
)
_add(
    S,
    id="surges-strides",
    kind="surges",
    sport="run",
    noise="footpod",
    description="Easy run at 5:30 /km (target 5:30 ± 20 s) with a 15 s stride at 4:20 /km "
    "every 5 min. No alert.",
    segments=(Segment(2700, 330),),
    events=(Event("surge", 240, 15, level=1.27, every_s=300),),
    config=_config("run", pace=(330, 20)),
)
_add(
    S,
    id="surges-short-hills",
    kind="surges",
    sport="ride",
    description="Ride at 195 W, target 175-215 W: short kickers, 15 s at ~290 W every 4 min. "
    "No alert.",
    segments=(Segment(3000, 195),),
    events=(Event("surge", 100, 15, level=1.5, every_s=240),),
    config=_config("ride", power=(175, 215)),
)

# --- sensor noise and dropouts -----------------------------------------------------------

_add(
    S,
    id="hr-spikes",
    kind="sensor-noise",
    sport="ride",
    description="Endurance at 180 W, HR ceiling 152: the strap throws a single 60 bpm spike "
    "every 4 min (dry contact). No alert.",
    segments=(Segment(3000, 180),),
    events=(Event("spike_hr", 100, 1, every_s=240),),
    config=_config("ride", hr=(None, 152)),
)
_add(
    S,
    id="power-spikes",
    kind="sensor-noise",
    sport="ride",
    description="Tempo at 200 W, target 180-220 W: the meter throws a single +900 W reading "
    "every 5 min. No alert (and W' is not touched).",
    segments=(Segment(3000, 200),),
    events=(Event("spike_power", 150, 1, every_s=300),),
    config=_config("ride", power=(180, 220)),
)
_add(
    S,
    id="noisy-outdoor-power",
    kind="sensor-noise",
    sport="ride",
    description="Endurance at 185 W outdoors, target 165-205 W, 60 min, with outdoor "
    "pedalling variability. No alert.",
    segments=(Segment(3600, 185),),
    config=_config("ride", power=(165, 205)),
)
_add(
    S,
    id="hr-dropouts",
    kind="dropouts",
    sport="ride",
    description="Endurance at 185 W, HR ceiling 152 (HR ~146): the strap drops out 20 s every "
    "10 min. No alert.",
    segments=(Segment(3000, 185),),
    events=(Event("dropout_hr", 300, 20, every_s=600),),
    config=_config("ride", hr=(None, 152)),
)
_add(
    S,
    id="power-dropouts",
    kind="dropouts",
    sport="ride",
    description="Ride at 190 W, target 175-210 W: the power meter drops out for 10-30 s three "
    "times. No alert.",
    segments=(Segment(3000, 190),),
    events=(
        Event("dropout_power", 700, 10),
        Event("dropout_power", 1500, 30),
        Event("dropout_power", 2300, 20),
    ),
    config=_config("ride", power=(175, 210)),
)
_add(
    S,
    id="gps-tunnel",
    kind="dropouts",
    sport="run",
    noise="gps",
    description="Run at 5:00 /km (target 5:00 ± 15 s): no speed for 40 s in a tunnel at "
    "20 min. No alert.",
    segments=(Segment(2400, 300),),
    events=(Event("dropout_speed", 1200, 40),),
    config=_config("run", pace=(300, 15)),
)
_add(
    S,
    id="radio-gaps",
    kind="dropouts",
    sport="ride",
    description="Ride at 190 W, target 175-210 W: three radio gaps of 8-15 s with no sample. "
    "No alert.",
    segments=(Segment(3000, 190),),
    events=(Event("gap", 800, 8), Event("gap", 1600, 15), Event("gap", 2400, 12)),
    config=_config("ride", power=(175, 210)),
)

# --- true positives: power under and over target --------------------------------------------

_add(
    S,
    id="under-endurance",
    kind="under-target",
    sport="ride",
    description="Endurance at 185 W, target 170-200 W; at 20 min the rider sags to 150 W for "
    "6 min, then back. A coach wants a 'power low' within a minute.",
    segments=(Segment(1200, 185), Segment(360, 150), Segment(1200, 185)),
    expect=(_zone("power", "low", 1200, 1560),),
    config=_config("ride", power=(170, 200)),
)
_add(
    S,
    id="under-rep-bounds",
    kind="under-target",
    sport="ride",
    noise="indoor",
    description="4 x 8 min back to back at 255 W, bounds 240-270 W; rep 3 ridden at 220 W. "
    "'Power low' owed in rep 3.",
    segments=(Segment(480, 255), Segment(480, 255), Segment(480, 220), Segment(480, 255)),
    expect=(_zone("power", "low", 960, 1440),),
    config=_config("ride", power=(240, 270)),
)
_add(
    S,
    id="under-plan-rep",
    kind="under-target",
    sport="ride",
    noise="indoor",
    description="Plan: 10 min easy, 4 x 6 min at 260 W (247-273) with 3 min easy; rep 2 ridden "
    "8 % under (239 W). 'Power low' owed early in rep 2, nothing else.",
    segments=(
        Segment(600, 150),
        Segment(360, 260),
        Segment(180, 140),
        Segment(360, 239),
        Segment(180, 140),
        Segment(360, 260),
        Segment(180, 140),
        Segment(360, 260),
    ),
    plan=_plan(
        ("easy", 600, 120, 180),
        ("rep 1", 360, 247, 273),
        ("rest", 180, 110, 170),
        ("rep 2", 360, 247, 273),
        ("rest", 180, 110, 170),
        ("rep 3", 360, 247, 273),
        ("rest", 180, 110, 170),
        ("rep 4", 360, 247, 273),
    ),
    expect=(_zone("power", "low", 1140, 1500, within=40),),
    config=_config("ride"),
)
_add(
    S,
    id="under-plan-erg",
    kind="under-target",
    sport="ride",
    noise="indoor",
    description="Plan: 3 x 8 min at 270 W (257-284) after 10 min easy, 4 min rests; rep 3 "
    "ridden at 248 W. 'Power low' owed in rep 3.",
    segments=(Segment(600, 150), *_reps(2, 480, 270, 240, 140), Segment(480, 248)),
    plan=_plan(
        ("easy", 600, 120, 180),
        ("rep 1", 480, 257, 284),
        ("rest", 240, 110, 170),
        ("rep 2", 480, 257, 284),
        ("rest", 240, 110, 170),
        ("rep 3", 480, 257, 284),
    ),
    expect=(
        _zone("power", "low", 2040, 2520, within=40),
        Expect(FADE, None, 2040, 2520, 2550, owed=False),
    ),
    config=_config("ride"),
)
_add(
    S,
    id="under-with-coasts",
    kind="under-target",
    sport="ride",
    description="Endurance at 185 W, target 170-200 W, 12 s coasts every 4 min; from 25 min "
    "the rider pedals only 145 W for 8 min (coasts continue). 'Power low' owed.",
    segments=(Segment(1500, 185), Segment(480, 145), Segment(1200, 185)),
    events=(Event("coast", 100, 12, every_s=240),),
    expect=(_zone("power", "low", 1500, 1980),),
    config=_config("ride", power=(170, 200)),
)
_add(
    S,
    id="over-endurance",
    kind="over-target",
    sport="ride",
    description="Endurance at 185 W, target 170-200 W; from 30 min the rider pushes 228 W "
    "for 5 min. 'Power high' owed.",
    segments=(Segment(1800, 185), Segment(300, 228), Segment(1200, 185)),
    expect=(_zone("power", "high", 1800, 2100),),
    config=_config("ride", power=(170, 200)),
)
_add(
    S,
    id="over-plan-rep",
    kind="over-target",
    sport="ride",
    noise="indoor",
    description="Plan: 10 min easy, 3 x 6 min at 260 W (247-273), 3 min easy, HR ceiling 180; "
    "rep 2 ridden at 285 W. 'Power high' owed in rep 2.",
    segments=(
        Segment(600, 150),
        Segment(360, 260),
        Segment(180, 140),
        Segment(360, 285),
        Segment(180, 140),
        Segment(360, 260),
    ),
    plan=_plan(
        ("easy", 600, 120, 180),
        ("rep 1", 360, 247, 273),
        ("rest", 180, 110, 170),
        ("rep 2", 360, 247, 273),
        ("rest", 180, 110, 170),
        ("rep 3", 360, 247, 273),
    ),
    expect=(_zone("power", "high", 1140, 1500, within=40),),
    config=_config("ride", hr=(None, 180)),
)
_add(
    S,
    id="over-plan-recovery",
    kind="over-target",
    sport="ride",
    noise="indoor",
    description="Plan: 2 x 8 min at 250 W with 4 min recovery at 120-150 W; the rider rides "
    "the recovery at 200 W. 'Power high' owed in the recovery.",
    segments=(Segment(480, 250), Segment(240, 200), Segment(480, 250)),
    plan=_plan(("rep 1", 480, 238, 262), ("recovery", 240, 120, 150), ("rep 2", 480, 238, 262)),
    expect=(_zone("power", "high", 480, 720, within=40),),
    config=_config("ride"),
)

# --- true positives: pace -----------------------------------------------------------------

_add(
    S,
    id="pace-slow-run",
    kind="pace-off",
    sport="run",
    noise="gps",
    description="Run at 5:00 /km (target 5:00 ± 15 s); from 20 min the runner slows to 5:35 "
    "/km for 5 min. 'Pace slow' owed.",
    segments=(Segment(1200, 300), Segment(300, 335), Segment(900, 300)),
    expect=(_zone("pace", "slow", 1200, 1500),),
    config=_config("run", pace=(300, 15)),
)
_add(
    S,
    id="pace-fast-run",
    kind="pace-off",
    sport="run",
    noise="footpod",
    description="Easy run at 5:30 /km (target 5:30 ± 15 s); from 15 min the runner goes 4:55 "
    "/km for 4 min. 'Pace fast' owed.",
    segments=(Segment(900, 330), Segment(240, 295), Segment(1200, 330)),
    expect=(_zone("pace", "fast", 900, 1140),),
    config=_config("run", pace=(330, 15)),
)
_add(
    S,
    id="pace-plan-reps",
    kind="pace-off",
    sport="run",
    noise="gps",
    description="Plan: 10 min easy (5:20-5:50), 5 x 4 min at 4:10-4:20 /km with 2 min jog "
    "(5:30-6:30); rep 4 run at 4:38 /km. 'Pace slow' owed in rep 4.",
    segments=(
        Segment(600, 335),
        *_reps(3, 240, 255, 120, 360),
        Segment(240, 278),
        Segment(120, 360),
        Segment(240, 255),
    ),
    plan=_plan(
        ("easy", 600, 320, 350),
        ("rep 1", 240, 250, 260),
        ("jog", 120, 330, 390),
        ("rep 2", 240, 250, 260),
        ("jog", 120, 330, 390),
        ("rep 3", 240, 250, 260),
        ("jog", 120, 330, 390),
        ("rep 4", 240, 250, 260),
        ("jog", 120, 330, 390),
        ("rep 5", 240, 250, 260),
        kind="pace",
    ),
    expect=(_zone("pace", "slow", 1680, 1920, within=45),),
    config=_config("run"),
)
_add(
    S,
    id="pace-slow-with-turns",
    kind="pace-off",
    sport="run",
    noise="gps",
    description="Run with a turn every 90 s (6 s at half speed); target 5:00 ± 15 s; from 20 "
    "min the runner drops to 5:40 /km for 6 min. 'Pace slow' owed.",
    segments=(Segment(1200, 300), Segment(360, 340), Segment(900, 300)),
    events=(Event("turn", 40, 6, level=0.5, every_s=90),),
    expect=(_zone("pace", "slow", 1200, 1560),),
    config=_config("run", pace=(300, 15)),
)
_add(
    S,
    id="pace-slow-gps-beyond",
    kind="pace-off",
    sport="run",
    noise="gps",
    description="Run at 4:45 /km (target 4:45 ± 15 s); from 25 min the runner settles at "
    "5:25 /km (25 s beyond the bound) for 10 min. 'Pace slow' owed.",
    segments=(Segment(1500, 285), Segment(600, 325)),
    expect=(_zone("pace", "slow", 1500, 2100),),
    config=_config("run", pace=(285, 15)),
)

# --- true positives: heart rate -------------------------------------------------------------

_add(
    S,
    id="hr-ceiling-ride",
    kind="hr-ceiling",
    sport="ride",
    description="Endurance at 180 W with an HR ceiling of 150 (HR ~144); from 30 min the "
    "rider rides 225 W for 8 min, HR settles near 158. 'Heart rate high' owed once HR has "
    "been over 150 for a while (within the block's first 3 min).",
    segments=(Segment(1800, 180), Segment(480, 225), Segment(1200, 180)),
    expect=(Expect(("heart_rate",), "high", 1800, 1980, 2310),),
    config=_config("ride", hr=(None, 150)),
)
_add(
    S,
    id="hr-ceiling-run",
    kind="hr-ceiling",
    sport="run",
    noise="footpod",
    description="Run at 5:00 /km with an HR ceiling of 163 (HR ~157); from 20 min a 10 min "
    "push at 4:05 /km takes HR to ~171. 'Heart rate high' owed within the first 3 min.",
    segments=(Segment(1200, 300), Segment(600, 245), Segment(900, 300)),
    expect=(Expect(("heart_rate",), "high", 1200, 1380, 1830),),
    config=_config("run", hr=(None, 163)),
)
_add(
    S,
    id="hr-ceiling-tempo-drift",
    kind="hr-ceiling",
    sport="ride",
    description="Tempo at 230 W with an HR ceiling of 163 and real cardiac drift (0.4 bpm/min) "
    "from ~159: HR passes the ceiling after 5-15 min and stays. 'Heart rate high' owed; a "
    "fatigue alert is welcome.",
    segments=(Segment(3000, 230),),
    drift_bpm_per_min=0.4,
    expect=(
        Expect(("heart_rate",), "high", 300, 1800, 3030),
        Expect(DRIFT, None, 1200, 3030, 3030, owed=False),
    ),
    config=_config("ride", hr=(None, 163)),
)
_add(
    S,
    id="hr-floor-recovery",
    kind="hr-floor",
    sport="ride",
    description="Recovery ride, HR floor 125 (zone 2 bottom): the rider dawdles at 110 W for "
    "10 min from 20 min (HR ~123 ... 121). 'Heart rate low' owed.",
    segments=(Segment(1200, 170), Segment(600, 95), Segment(900, 170)),
    expect=(Expect(("heart_rate",), "low", 1200, 1560, 1830),),
    config=_config("ride", hr=(125, 175)),
)

# --- true positives: fatigue ----------------------------------------------------------------

for i, (sport, level, minutes, drift) in enumerate(
    [
        ("ride", 180, 75, 0.4),
        ("run", 300, 60, 0.35),
        ("ride", 195, 90, 0.3),
        ("run", 310, 60, 0.5),
    ]
):
    # Friel: decoupled past 5 %; at 0.3-0.5 bpm/min HR has risen 5 % of ~145 (7 bpm) in
    # 15-25 min of steady work after the first 10 min.
    owed_from = 600 + int(7.5 / drift * 60)
    _add(
        S,
        id=f"cardiac-drift-{i + 1}",
        kind="cardiac-drift",
        sport=sport,
        noise="footpod" if sport == "run" else "outdoor",
        drift_bpm_per_min=drift,
        description=f"Steady {sport} for {minutes} min at "
        f"{f'{level} W' if sport == 'ride' else f'{level // 60}:{level % 60:02d} /km'} on a hot "
        f"day: heart rate climbs {drift} bpm/min. A coach wants a drift (decoupling) alert once "
        "HR has risen more than 5 % at the same output, before the end (and a ceiling alert "
        "late in the session is fair).",
        segments=(Segment(minutes * 60, level),),
        expect=(
            Expect(DRIFT, None, owed_from - 300, minutes * 60, minutes * 60),
            Expect(("heart_rate",), "high", 1800, minutes * 60, minutes * 60, owed=False),
        ),
        config=_config(sport),
    )
_add(
    S,
    id="fade-late-reps",
    kind="fade",
    sport="ride",
    noise="indoor",
    description="10 min easy, 5 x 6 min at 260 W with 3 min easy, no power target set; reps 4 "
    "and 5 only 222 W. A fade alert owed during rep 4.",
    segments=(
        Segment(600, 150),
        *_reps(3, 360, 260, 180, 130),
        Segment(360, 222),
        Segment(180, 130),
        Segment(360, 222),
    ),
    expect=(Expect(FADE, None, 2220, 2580, 3120),),
    config=_config("ride"),
)
_add(
    S,
    id="fade-long-block",
    kind="fade",
    sport="ride",
    noise="indoor",
    description="10 min easy then a 30 min threshold block at 250 W; over the last 15 min "
    "the rider fades to 200 W. A fade alert owed in the last 10 min.",
    segments=(Segment(600, 150), Segment(900, 250), Segment(900, 250, 200)),
    expect=(Expect(FADE, None, 1800, 2400, 2400),),
    config=_config("ride"),
)
_add(
    S,
    id="fade-plan-reps",
    kind="fade",
    sport="ride",
    noise="indoor",
    description="Plan: 10 min easy, 3 x 10 min at 250 W (238-262), 4 min easy; rep 3 (from 38 "
    "min) fades from 250 W to 205 W, under the range after ~3 min. 'Power low' owed within "
    "3 min of that; a fade alert welcome.",
    segments=(Segment(600, 150), *_reps(2, 600, 250, 240, 130), Segment(600, 250, 205)),
    plan=_plan(
        ("easy", 600, 120, 180),
        ("rep 1", 600, 238, 262),
        ("rest", 240, 110, 170),
        ("rep 2", 600, 238, 262),
        ("rest", 240, 110, 170),
        ("rep 3", 600, 238, 262),
    ),
    expect=(
        Expect(("power",), "low", 2440, 2620, 2910),
        Expect(FADE, None, 2280, 2910, 2910, owed=False),
    ),
    config=_config("ride"),
)
_add(
    S,
    id="w-prime-reps",
    kind="w-prime",
    sport="ride",
    noise="indoor",
    description="3 x 3 min at 350 W (CP 250, W' 20 kJ) with 3 min easy: the first rep takes "
    "~18 kJ. A W' alert owed late in rep 1 (under 25 % after ~2.5 min); later reps welcome.",
    segments=(Segment(600, 150), *_reps(3, 180, 350, 180, 120)),
    expect=(Expect(WPRIME, None, 720, 800, 1800), _HARD_HR),
    config=_config("ride"),
)
_add(
    S,
    id="w-prime-long-effort",
    kind="w-prime",
    sport="ride",
    description="A 2 min effort at 420 W after 10 min at 170 W: W' (20 kJ) is under 25 % "
    "after ~90 s. A W' alert owed by the end of the effort.",
    segments=(Segment(600, 170), Segment(120, 420), Segment(1200, 160)),
    expect=(Expect(WPRIME, None, 660, 730, 800), _HARD_HR),
    config=_config("ride"),
)
_add(
    S,
    id="w-prime-after-stop",
    kind="w-prime",
    sport="ride",
    description="2 min at 420 W (W' exhausted), a 10 min stop with auto-pause, then a 1 min "
    "effort at 350 W: after the stop W' is nearly full, the second effort uses 6 kJ. One W' "
    "alert owed (the first effort), none after the stop.",
    segments=(
        Segment(600, 170),
        Segment(120, 420),
        Segment(60, 150),
        Segment(600, 0),
        Segment(300, 170),
        Segment(60, 350),
        Segment(600, 160),
    ),
    events=(Event("gap", 780, 600),),
    expect=(Expect(WPRIME, None, 660, 730, 800), _HARD_HR),
    config=_config("ride"),
)

# --- ambiguous: replayed and reported, never scored ---------------------------------------

_add(
    A,
    id="amb-20s-surges",
    kind="surges",
    sport="ride",
    description="Endurance at 182 W, target 170-200 W, with 25 s efforts at 300 W every 8 "
    "min: brief to some coaches, a real excursion to others.",
    segments=(Segment(3000, 182),),
    events=(Event("surge", 300, 25, level=1.65, every_s=480),),
    config=_config("ride", power=(170, 200)),
)
_add(
    A,
    id="amb-coast-in-rep",
    kind="coasting",
    sport="ride",
    noise="indoor",
    description="Plan: 10 min at 260 W; the rider stops pedalling for 3 min in the middle. "
    "Not riding the interval, or not judging effort that is not there?",
    segments=(Segment(600, 150), Segment(600, 260)),
    events=(Event("coast", 840, 180),),
    plan=_plan(("easy", 600, 120, 180), ("rep", 600, 247, 273)),
    config=_config("ride"),
)
_add(
    A,
    id="amb-just-beyond-pace",
    kind="gps-noise",
    sport="run",
    noise="gps",
    description="Run 3 s/km beyond the slow bound for 10 min with GPS wander.",
    segments=(Segment(1200, 300), Segment(600, 318)),
    config=_config("run", pace=(300, 15)),
)
_add(
    A,
    id="amb-w-prime-edge",
    kind="w-prime",
    sport="ride",
    description="1 min at 500 W: W' ends right at 25 %.",
    segments=(Segment(600, 170), Segment(60, 500), Segment(900, 160)),
    config=_config("ride"),
)
_add(
    A,
    id="amb-hr-just-over",
    kind="hr-ceiling",
    sport="ride",
    description="HR 2 bpm over the ceiling for 3 minutes.",
    segments=(Segment(1200, 180), Segment(180, 194), Segment(900, 180)),
    config=_config("ride", hr=(None, 147)),
)
_add(
    A,
    id="amb-30s-pace-push",
    kind="surges",
    sport="run",
    noise="footpod",
    description="A 30 s push 40 s/km faster than target every 6 min.",
    segments=(Segment(2400, 300),),
    events=(Event("surge", 200, 30, level=1.15, every_s=360),),
    config=_config("run", pace=(300, 15)),
)

# --- walk breaks (added later: at the end, so earlier scenarios keep their seeds) -----

_add(
    S,
    id="walk-breaks-drinks",
    kind="stops",
    sport="run",
    noise="gps",
    description="Run at 5:30 /km (target 5:30 ± 15 s); walks 60 s at 11:00 /km through a "
    "drink station at 15 and at 30 min, then runs on at target. No alert.",
    segments=(
        Segment(900, 330),
        Segment(60, 660),
        Segment(900, 330),
        Segment(60, 660),
        Segment(900, 330),
    ),
    config=_config("run", pace=(330, 15)),
)
_add(
    S,
    id="walk-then-catch-up",
    kind="stops",
    sport="run",
    noise="gps",
    description="Run at 6:00 /km (target 6:00 ± 20 s); a 45 s walk at 12:00 /km at 20 min, "
    "then 20 s at 5:00 /km to catch up with the group, then target again. No alert.",
    segments=(Segment(1200, 360), Segment(45, 720), Segment(20, 300), Segment(1200, 360)),
    config=_config("run", pace=(360, 20)),
)
_add(
    S,
    id="slow-after-walk-break",
    kind="pace-off",
    sport="run",
    noise="gps",
    description="Run at 5:00 /km (target 5:00 ± 15 s); a 60 s walk at 20 min, then the "
    "runner cannot get going again: 5:40 /km from 21 min to the end (40 min). Pace slow "
    "owed within a minute of 21 min.",
    segments=(Segment(1200, 300), Segment(60, 600), Segment(1200, 340)),
    expect=(_zone("pace", "slow", 1260, 2460),),
    config=_config("run", pace=(300, 15)),
)
_add(
    A,
    id="amb-long-walk",
    kind="stops",
    sport="run",
    noise="gps",
    description="Tempo run at 5:30 /km (target 5:30 ± 15 s); the runner walks 4 min at "
    "10:30 /km at 20 min, exhausted, then jogs on at target. Walking is judged as a stop: "
    "a coach may or may not want to hear of it.",
    segments=(Segment(1200, 330), Segment(240, 630), Segment(900, 330)),
    config=_config("run", pace=(330, 15)),
)

SCENARIOS: tuple[Scenario, ...] = tuple(S)
AMBIGUOUS: tuple[Scenario, ...] = tuple(A)

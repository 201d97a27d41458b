"""The signals the alert rules watch, computed incrementally from raw samples.

One call of :func:`update_signals` per sample keeps the zone windows (heart rate,
pedalling power, moving speed: times and values of the last ``window_s``, judged by
:func:`zone_median`), W' balance (recovering through gaps), the distance a plan's
distance intervals need, and, once per 10 s bucket, the fatigue signals: rolling
efficiency factor against the early steady baseline, heart rate's rise over that
baseline at the same output, 5 min and 1 min power against the steady reference. It
also detects steps in effort, after which heart rate lags output by a minute or two.

Why a module of our own rather than ``agents/session_metrics``: the alert path needs a
state that is a compact JSON-able dict (it lives in a changelog-backed Faust table)
and costs tens of microseconds per sample, and it needs signals the session metrics do
not carry (effort steps, steady baselines, coasting-aware windows). The definitions
follow ``DOMAIN.md``.

Inputs are cleaned on the way in: out-of-range values are dropouts (``None``), and a
median of the last three samples per channel removes single-sample spikes at the cost
of one sample of delay on a real step.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from typing import Any

from agents.wprime import w_prime_recover, w_prime_step

__all__ = [
    "BUCKET_S",
    "GAP_S",
    "LONG_GAP_S",
    "MAX_PAUSE_S",
    "SETTLE_S",
    "STEP_FRACTION",
    "STOPPED_M_S",
    "SignalParams",
    "new_signal_state",
    "update_signals",
    "zone_median",
]

#: Width of the buckets the long (fatigue) windows are built from.
BUCKET_S = 10.0
#: A pause between samples longer than this is a gap: dwell timers restart after it.
GAP_S = 5.0
#: A pause between samples longer than this re-arms every rule: a new effort starts.
LONG_GAP_S = 60.0
#: A rule's metric undefined (dropout, unsteady output) longer than this restarts
#: its dwell clock: a hold does not survive a long blind spot.
MAX_PAUSE_S = 30.0
#: How long a power dropout may be bridged with the last known power.
HOLD_S = 30.0
#: Output must have been steady this long before a window's HR level or slope counts.
SETTLE_S = 120.0
#: A step in effort: the 10 s output mean differs from the 60 s mean by this fraction.
STEP_FRACTION = 0.25
#: Below this speed the athlete is stopped (a light, a junction): pace is undefined.
STOPPED_M_S = 0.5
#: Steady 5 min powers kept for the fade reference (one a minute: six hours).
_MAX_REFS = 360
#: Heart-rate rise is compared only at an output within this fraction of the baseline's.
_DRIFT_COMPARABLE = 0.05
#: Windows (s) of the effort-step detector and of the "current 1 min" power.
_SHORT_S = 10.0
_LONG_S = 60.0
#: A long window counts only when this share of its buckets has data.
_COVERAGE = 0.8

# Plausible ranges; anything outside is a sensor glitch, treated as a dropout.
_HR_RANGE = (25.0, 250.0)
_POWER_RANGE = (0.0, 2500.0)
_SPEED_RANGE = (0.0, 30.0)

State = dict[str, Any]


class SignalParams:
    """The configuration figures the signal computation needs (plain, for speed)."""

    __slots__ = (
        "baseline_after_s",
        "coast_w",
        "comparable_fraction",
        "cp_w",
        "drift_window_s",
        "ef_window_s",
        "fade_window_s",
        "ftp_w",
        "hr_window_s",
        "min_best_w",
        "pace_window_s",
        "power_window_s",
        "steady_cv_drift",
        "steady_cv_ef",
        "w_prime_j",
    )

    def __init__(
        self,
        *,
        hr_window_s: float,
        coast_w: float,
        power_window_s: float,
        pace_window_s: float,
        ef_window_s: float,
        baseline_after_s: float,
        steady_cv_ef: float,
        comparable_fraction: float,
        drift_window_s: float,
        steady_cv_drift: float,
        fade_window_s: float,
        min_best_w: float,
        ftp_w: float,
        cp_w: float,
        w_prime_j: float,
    ) -> None:
        self.hr_window_s = hr_window_s
        self.coast_w = coast_w
        self.power_window_s = power_window_s
        self.pace_window_s = pace_window_s
        self.ef_window_s = ef_window_s
        self.baseline_after_s = baseline_after_s
        self.steady_cv_ef = steady_cv_ef
        self.comparable_fraction = comparable_fraction
        self.drift_window_s = drift_window_s
        self.steady_cv_drift = steady_cv_drift
        self.fade_window_s = fade_window_s
        self.min_best_w = min_best_w
        self.ftp_w = ftp_w
        self.cp_w = cp_w
        self.w_prime_j = w_prime_j


def _window() -> State:
    return {"t": [], "v": [], "s": 0.0}


def _zone_window() -> State:
    # "o": the values that count (not None), in order, kept as samples come and go so
    # that a median is a lookup. Sorting the window for every judgement was the alert
    # engine's largest cost (2-3 us a sample over 90 values).
    return {"t": [], "v": [], "o": []}


def _zone_push(win: State, t: float, value: float | None, span_s: float) -> None:
    ts: list[float] = win["t"]
    vs: list[float | None] = win["v"]
    ordered: list[float] | None = win.get("o")
    if ordered is None:
        # A state saved before the ordered values were kept.
        ordered = win["o"] = sorted([v for v in vs if v is not None])
    ts.append(t)
    vs.append(value)
    if value is not None:
        insort(ordered, value)
    limit = t - span_s
    while ts[0] <= limit:
        del ts[0]
        old = vs.pop(0)
        if old is not None:
            # Equal floats are interchangeable: the first equal one is as good as any.
            del ordered[bisect_left(ordered, old)]


def zone_median(
    win: State, since_t: float, floor: float | None = None
) -> tuple[float, float] | None:
    """(low, high): the window's medians for judging "too low" and "too high".

    Over the samples at or after ``since_t`` (seconds from the session's first
    sample), those that do not count (coasting for power, stopped for pace, a dropout)
    count as inside, so a direction can only be
    out when more than half of all the samples are out that way: ``low`` is the value
    that more than half the samples are at or under, ``high`` the value more than half
    are at or over. Without dropouts both are the median. A median ignores anything
    that fills less than half the window: a coast, a turn, a surge, a spike. None with
    fewer than three samples that count, or when no more than half of them count.
    Values under ``floor`` do not count either (walking, for a runner's pace).

    Reads the window only: a window without its ordered values (built by hand) is
    judged by sorting.
    """
    ts: list[float] = win["t"]
    ordered: list[float] | None = win.get("o")
    if ordered is not None and (not ts or ts[0] >= since_t):
        # The whole window is judged (the usual case): its ordered values, from the
        # first at or over ``floor``.
        first = 0 if floor is None else bisect_left(ordered, floor)
        n = len(ordered) - first
        k = len(ts) // 2
        if n < 3 or n <= k:
            return None
        return ordered[first + k], ordered[-1 - k]
    vs: list[float | None] = win["v"]
    i = bisect_left(ts, since_t) if ts and ts[0] < since_t else 0
    values = sorted([v for v in vs[i:] if v is not None and (floor is None or v >= floor)])
    n = len(values)
    k = (len(ts) - i) // 2
    if n < 3 or n <= k:
        return None
    return values[k], values[n - 1 - k]


def new_signal_state() -> State:
    """The state of a session that has seen no sample yet."""
    return {
        "t0": None,  # first sample time
        "t": None,  # last sample time
        "med": [[None, None], [None, None], [None, None]],  # last two raw hr, power, speed
        # Zone windows: every sample's time and its value, None when the sample does
        # not count (no reading; coasting for power; stopped for speed).
        "hr": _zone_window(),  # heart rate
        "pw": _zone_window(),  # power while pedalling
        "sw": _zone_window(),  # speed while moving
        # End of the last gap in the samples; None: none yet. (Not -inf: the state is
        # stored as JSON, where orjson writes infinities as null.)
        "obs": None,
        "d": 0.0,  # distance from speed (m), for distance-based plan intervals
        "o10": _window(),  # output (power, else speed), 10 s
        "o60": _window(),  # output, 60 s
        "has_p": False,  # output is power once any power was seen
        "wb": None,  # W' balance (J)
        "p10": None,  # [t, 10 s mean power] when last known
        "lag": [None, None],  # times of the last effort step up and the last step down
        "bk": None,  # open bucket: [index, sum out, n out, sum hr, n hr, sum p, n p]
        "bks": [],  # closed buckets: [index, mean out, mean hr, mean p]
        "base": None,  # steady baseline: [ef, mean output, mean hr]
        "best5": None,  # the fade rule's reference power (W) at the last bucket
        "refs": [],  # steady 5 min powers (one a minute) the steady reference is the median of
        "pref": None,  # [reference W, since session time s] from the plan, or None
        # Fatigue signals, refreshed when a bucket closes (None: not defined now).
        "efr": None,  # rolling EF / baseline EF
        "drift": None,  # HR slope at steady output, bpm/min
        "fade": None,  # [max(P5, P1), min(P5, P1)] / best 5 min
    }


def _clean(value: float | None, bounds: tuple[float, float]) -> float | None:
    if value is None or not (bounds[0] <= value <= bounds[1]) or value != value:
        return None
    return float(value)


def _median3(hist: list[float | None], x: float | None) -> float | None:
    a, b = hist
    hist[0] = b
    hist[1] = x
    if x is None:
        return None
    if a is not None and b is not None:
        return max(min(a, b), min(max(a, b), x))
    # Next to a dropout two values cannot outvote a spike: call the sample missing
    # (it costs one sample at each edge of a dropout, and the start of the session).
    return None


def _push(win: State, t: float, value: float, span_s: float) -> None:
    ts: list[float] = win["t"]
    vs: list[float] = win["v"]
    ts.append(t)
    vs.append(value)
    total: float = win["s"] + value
    limit = t - span_s
    while ts and ts[0] <= limit:
        ts.pop(0)
        total -= vs.pop(0)
    win["s"] = total


def _evict(win: State, t: float, span_s: float) -> None:
    ts: list[float] = win["t"]
    vs: list[float] = win["v"]
    limit = t - span_s
    total: float = win["s"]
    while ts and ts[0] <= limit:
        ts.pop(0)
        total -= vs.pop(0)
    win["s"] = total if ts else 0.0


def _mean(win: State, min_n: int) -> float | None:
    n = len(win["v"])
    return win["s"] / n if n >= min_n else None


def update_signals(sig: State, p: SignalParams, t: float, hr: float | None,
                   power: float | None, speed: float | None, cadence: float | None = None,
                   judged: tuple[bool, bool, bool] = (True, True, True),
                   ) -> tuple[float, bool]:  # fmt: skip
    """Feed one sample; returns (dt since the previous sample, whether it was a gap)."""
    prev_t = sig["t"]
    if sig["t0"] is None:
        sig["t0"] = t
        # The start is a step up from rest: HR catches up over the first minutes.
        sig["lag"] = [t, None]
    dt = 0.0 if prev_t is None else t - prev_t
    gap = dt > GAP_S
    if dt > LONG_GAP_S:
        # The athlete paused (watch stopped, traffic lights): starting again is a step
        # up from rest, after which HR catches up as at the start.
        sig["lag"][0] = t
    sig["t"] = t
    med = sig["med"]
    hr = _median3(med[0], _clean(hr, _HR_RANGE))
    power = _median3(med[1], _clean(power, _POWER_RANGE))
    speed = _median3(med[2], _clean(speed, _SPEED_RANGE))

    # Zone windows only for the channels a rule judges (``judged``: heart rate, power,
    # pace), with times from the first sample and values rounded: the state goes to
    # the changelog with every record. A whole number (whole seconds, bpm, watts: most
    # samples) is its own rounding, and ``round`` costs five times the test.
    rel = t - sig["t0"]
    if rel % 1:
        rel = round(rel, 2)
    value: float | None
    if judged[0]:
        value = hr if hr is None or not hr % 1 else round(hr, 1)
        _zone_push(sig["hr"], rel, value, p.hr_window_s)
    if judged[1]:
        # Coasting (no pedalling: power near zero, or a cadence of zero) is not effort
        # the power rule can judge: such samples do not count, whatever their number.
        pedalling = power is not None and power > p.coast_w and cadence != 0
        value = None
        if pedalling and power is not None:
            value = power if not power % 1 else round(power, 1)
        _zone_push(sig["pw"], rel, value, p.power_window_s)
    if judged[2]:
        moving = speed is not None and speed >= STOPPED_M_S
        value = round(speed, 3) if moving and speed is not None else None
        _zone_push(sig["sw"], rel, value, p.pace_window_s)
    if speed is not None and dt > 0:
        sig["d"] += speed * min(dt, GAP_S)
    if power is not None and not sig["has_p"]:
        # Output switches from speed to power: the output windows restart.
        sig["has_p"] = True
        sig["o10"] = _window()
        sig["o60"] = _window()

    out = power if sig["has_p"] else speed
    if out is not None:
        _push(sig["o10"], t, out, _SHORT_S)
        _push(sig["o60"], t, out, _LONG_S)
    else:
        _evict(sig["o10"], t, _SHORT_S)
        _evict(sig["o60"], t, _LONG_S)

    _update_w_prime(sig, p, dt)
    _detect_step(sig, p, t)
    _accumulate_bucket(sig, p, t, out, hr, power)
    return dt, gap


def _update_w_prime(sig: State, p: SignalParams, dt: float) -> None:
    # Differential form (DOMAIN.md), on the 10 s mean power: at 1 s resolution the
    # noise around CP biases the balance down (depletion is linear, recovery is not).
    if not sig["has_p"]:
        return
    w = sig["wb"]
    if w is None:
        sig["wb"] = p.w_prime_j
        return
    if dt <= 0:
        return
    if dt > GAP_S:
        # Time with no sample at all (a stop with auto-pause, a radio gap): the
        # athlete was not working, and W' recovers through all of it (Skiba, at 0 W).
        w = w_prime_recover(w, 0.0, dt - 1.0, p.cp_w, p.w_prime_j)
        dt = 1.0
    p10 = _mean(sig["o10"], 3)
    if p10 is None:
        # A short power dropout: the athlete did not stop because the meter did, so
        # hold the last 10 s mean; past HOLD_S count 0 W (as the session metrics do).
        held = sig["p10"]
        p10 = 0.0 if held is None or held[0] < sig["t"] - HOLD_S else held[1]
    else:
        sig["p10"] = [sig["t"], p10]
    sig["wb"] = w_prime_step(w, p10, dt, p.cp_w, p.w_prime_j)


def _detect_step(sig: State, p: SignalParams, t: float) -> None:
    short = _mean(sig["o10"], 3)
    long = _mean(sig["o60"], 10)
    if short is None or long is None:
        return
    floor = 0.3 * p.ftp_w if sig["has_p"] else 1.0
    if abs(short - long) > STEP_FRACTION * max(long, floor):
        sig["lag"][0 if short > long else 1] = t


def _accumulate_bucket(sig: State, p: SignalParams, t: float, out: float | None,
                       hr: float | None, power: float | None) -> None:  # fmt: skip
    index = int((t - sig["t0"]) // BUCKET_S)
    bk = sig["bk"]
    if bk is not None and bk[0] != index:
        _close_bucket(sig, p, bk)
        bk = None
    if bk is None:
        bk = sig["bk"] = [index, 0.0, 0, 0.0, 0, 0.0, 0]
    if out is not None:
        bk[1] += out
        bk[2] += 1
    if hr is not None:
        bk[3] += hr
        bk[4] += 1
    if power is not None:
        bk[5] += power
        bk[6] += 1


def _close_bucket(sig: State, p: SignalParams, bk: list[Any]) -> None:
    bks: list[list[Any]] = sig["bks"]
    # Rounded: the state is serialised to the changelog, and 0.01 W, bpm or m/s is far
    # below what any fatigue signal can resolve.
    bks.append(
        [
            bk[0],
            round(bk[1] / bk[2], 2) if bk[2] else None,
            round(bk[3] / bk[4], 2) if bk[4] else None,
            round(bk[5] / bk[6], 2) if bk[6] else None,
        ]
    )
    index = bk[0]
    keep = int((max(p.ef_window_s, p.drift_window_s, p.fade_window_s) + SETTLE_S) // BUCKET_S)
    while bks and bks[0][0] <= index - keep:
        bks.pop(0)
    end_t = (index + 1) * BUCKET_S  # session time at the end of this bucket
    sig["efr"] = _ef_ratio(sig, p, bks, index, end_t)
    sig["drift"] = _drift(sig, p, bks, index)
    sig["fade"] = _fade(sig, p, bks, index)


def _recent(bks: list[list[Any]], index: int, span_s: float) -> list[list[Any]]:
    first = index - int(span_s // BUCKET_S) + 1
    # Closed buckets are in index order; walk back from the end.
    out: list[list[Any]] = []
    for bucket in reversed(bks):
        if bucket[0] < first:
            break
        out.append(bucket)
    out.reverse()
    return out


def _steady_output(pairs: list[tuple[float, float]], n_needed: int,
                   max_cv: float) -> float | None:  # fmt: skip
    """Mean output of the window when it is covered and steady, else None."""
    if len(pairs) < _COVERAGE * n_needed:
        return None
    outs = [o for o, _ in pairs]
    mean = sum(outs) / len(outs)
    if mean <= 0:
        return None
    var = sum((o - mean) ** 2 for o in outs) / len(outs)
    return mean if math.sqrt(var) / mean < max_cv else None


def _output_floor(sig: State, p: SignalParams) -> float:
    # Below this the athlete is coasting or walking: no efficiency to speak of.
    return 0.4 * p.ftp_w if sig["has_p"] else 1.5


def _settled_rows(sig: State, p: SignalParams, bks: list[list[Any]], index: int,
                  window_s: float, max_cv: float) -> list[list[Any]] | None:  # fmt: skip
    """The buckets of the last ``window_s`` when output has been steady long enough.

    Steady over the window plus :data:`SETTLE_S` before it, so that heart rate has
    caught up with the effort (a 30-90 s lag) before its level or slope means anything;
    never in the first ``window_s + SETTLE_S`` of the session.
    """
    span_s = window_s + SETTLE_S
    n_needed = int(span_s // BUCKET_S)
    if index + 1 < n_needed:
        return None
    rows = [b for b in _recent(bks, index, span_s) if b[1] is not None and b[2] is not None]
    mean_out = _steady_output([(b[1], b[2]) for b in rows], n_needed, max_cv)
    if mean_out is None or mean_out < _output_floor(sig, p):
        return None
    first = index - int(window_s // BUCKET_S) + 1
    return [b for b in rows if b[0] >= first]


def _ef_ratio(sig: State, p: SignalParams, bks: list[list[Any]], index: int,
              end_t: float) -> float | None:  # fmt: skip
    rows = _settled_rows(sig, p, bks, index, p.ef_window_s, p.steady_cv_ef)
    if not rows:
        return None
    mean_out = sum(b[1] for b in rows) / len(rows)
    mean_hr = sum(b[2] for b in rows) / len(rows)
    ef = mean_out / mean_hr
    base = sig["base"]
    if base is None:
        if end_t - p.ef_window_s >= p.baseline_after_s:
            sig["base"] = [ef, mean_out, mean_hr]
        return None
    if abs(mean_out - base[1]) > p.comparable_fraction * base[1]:
        return None
    ratio: float = ef / base[0]
    return ratio


def _drift(sig: State, p: SignalParams, bks: list[list[Any]], index: int) -> float | None:
    """How far heart rate has risen over the early steady baseline, at the same output.

    A fraction of the baseline HR (0.05: 5 %), from the mean of the last
    ``drift_window_s`` at steady output within 5 % of the baseline's. A slope over
    minutes is not used: ordinary heart-rate wander (about 2 bpm over minutes, measured
    on the shared steady run) makes a 10-20 min slope swing by 0.1-0.15 bpm/min.
    """
    rows = _settled_rows(sig, p, bks, index, p.drift_window_s, p.steady_cv_drift)
    base = sig["base"]
    if not rows or base is None or len(base) < 3:
        return None
    mean_out = sum(b[1] for b in rows) / len(rows)
    if abs(mean_out - base[1]) > _DRIFT_COMPARABLE * base[1]:
        return None
    mean_hr = sum(b[2] for b in rows) / len(rows)
    rise: float = mean_hr / base[2] - 1.0
    return rise


def _fade(sig: State, p: SignalParams, bks: list[list[Any]], index: int) -> list[float] | None:
    """[max(P5, P1), min(P5, P1)] / reference, or None when there is no reference.

    The reference is the plan's target for the current interval (once the window lies
    inside it) or else the median of the session's steady 5 min powers: a deliberate
    hard block is one steady window among many, so riding the planned power after it
    is not a fade, while a repeat ridden well under the others is.
    """
    n_needed = int(p.fade_window_s // BUCKET_S)
    recent = _recent(bks, index, p.fade_window_s)
    powers = [b[3] for b in recent if b[3] is not None]
    if len(powers) < _COVERAGE * n_needed:
        return None
    p5 = sum(powers) / len(powers)
    refs: list[float] = sig["refs"]
    if index % 6 == 0 and p5 >= p.min_best_w:
        var = sum((x - p5) ** 2 for x in powers) / len(powers)
        if math.sqrt(var) < 0.10 * p5:
            refs.append(round(p5, 1))
            if len(refs) > _MAX_REFS:
                del refs[0]
    pref = sig["pref"]
    end_t = (index + 1) * BUCKET_S
    if pref is not None:
        if end_t - pref[1] < p.fade_window_s:
            return None
        ref = float(pref[0])
    else:
        if not refs:
            return None
        ordered = sorted(refs)
        ref = ordered[len(ordered) // 2]
    sig["best5"] = ref
    if ref < p.min_best_w:
        return None
    last = [b[3] for b in recent[-int(_LONG_S // BUCKET_S) :] if b[3] is not None]
    if not last:
        return None
    p1 = sum(last) / len(last)
    return [max(p5, p1) / ref, min(p5, p1) / ref]

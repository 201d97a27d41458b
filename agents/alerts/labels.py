"""Offline labelling: where a session's true excursions are, per alert rule.

The labels the evaluation scores the live engine against. They are computed from the
whole session at once (numpy, no streaming), with knowledge the live engine does not
have:

- cleaning with hindsight: a centered 5-sample median removes spikes, holes of up to
  5 s are interpolated from both sides (:func:`clean_series`); for generated sessions
  the labeller is given the noise-free truth instead;
- zone metrics on centered windows: heart rate over 5 s, power over the power rule's
  window, pace over the pace rule's window, each centred on the instant it describes
  (the live engine can only use trailing windows, so it sees a crossing later);
- the fatigue metrics are, by definition, about "the last 5 (10) minutes", so they use
  trailing windows of 10 s buckets, like the live signals, but over the cleaned data.

A rule direction's excursions are the runs where the metric is beyond its threshold
for about the rule's dwell time or longer (a hole pauses a run; a hole over 30 s, a gap or
a heart-rate lag period after a step in effort ends it). Runs are grouped into
episodes, the things the athlete must be told about once, by replaying the rule's
policy over the runs: a run whose direction has not re-armed since its last alert
(the metric never came back inside by the hysteresis margin) joins that alert's
episode; a run that ends before the rule's cooldown lets it through joins the last
episode. An episode is owed an alert unless all its runs are marginal (lasting from
3/4 of the dwell to 10 s plus 1/4 of the dwell beyond it). Alerts
inside any run are correct (``agents/alerts/evaluation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agents.alerts.config import (
    AlertConfig,
    resolve_hr_bounds,
    resolve_power_bounds,
)
from agents.alerts.signals import (
    BUCKET_S,
    GAP_S,
    LONG_GAP_S,
    MAX_PAUSE_S,
    SETTLE_S,
    STEP_FRACTION,
)
from pipeline.models import AthleteProfile

__all__ = ["Excursion", "SessionArrays", "clean_series", "label_session"]

Array = npt.NDArray[np.float64]
_COVERAGE = 0.8
MARGINAL_S = 10.0


#: A run that holds this share of the dwell is a near miss: no alert owed, none false.
NEAR_MISS = 0.75


def marginal_band_s(dwell_s: float) -> float:
    """How far past the dwell a run must last for its alert to be owed.

    A live detector measures the metric with noise, so a run that lasts about the dwell
    (from 3/4 of it to 10 s plus a quarter of it beyond) may or may not complete it:
    an alert on it is neither owed nor false.
    """
    return MARGINAL_S + dwell_s / 4


@dataclass(frozen=True, slots=True)
class Excursion:
    """A run beyond a rule's threshold, lasting at least the rule's dwell time."""

    rule: str
    direction: str
    start_s: float
    end_s: float
    #: Runs chained without a re-arm (or within the cooldown) share an episode: the
    #: athlete is told once per episode. -1 for a near miss (no alert owed).
    episode: int
    #: Lasting about the dwell (:func:`marginal_band_s`): whether a detector sees the
    #: dwell complete is down to noise, so an alert is allowed but not owed.
    marginal: bool


@dataclass(frozen=True, slots=True)
class SessionArrays:
    """A session on a 1 s grid from its first sample; NaN where a channel is missing.

    ``present`` is False where no sample exists at all (a gap in the recording).
    """

    t0_s: float
    hr: Array
    power: Array
    speed: Array
    present: npt.NDArray[np.bool_]


def clean_series(x: Array, max_hole_s: int = 5) -> Array:
    """Spikes out (centered median of 5), short holes filled, long holes left NaN."""
    y = x.copy()
    n = len(y)
    if n >= 5:
        padded = np.pad(y, 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 5)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(windows, axis=1)
        y = np.where(np.isnan(y), np.nan, med)
    nan = np.isnan(y)
    if nan.any() and (~nan).any():
        idx = np.arange(n)
        filled = np.interp(idx, idx[~nan], y[~nan])
        # Fill only holes no longer than max_hole_s and bounded on both sides.
        starts = np.flatnonzero(nan & ~np.r_[False, nan[:-1]])
        ends = np.flatnonzero(nan & ~np.r_[nan[1:], False])
        for s, e in zip(starts, ends, strict=True):
            if e - s + 1 <= max_hole_s and s > 0 and e < n - 1:
                y[s : e + 1] = filled[s : e + 1]
    return y


def _centered_mean(x: Array, width_s: float) -> Array:
    w = max(1, round(width_s))
    valid = ~np.isnan(x)
    vals = np.where(valid, x, 0.0)
    kernel = np.ones(w)
    sums = np.convolve(vals, kernel, mode="same")
    counts = np.convolve(valid.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    out[counts < max(1.0, w / 3)] = np.nan
    return out


def _trailing_mean(x: Array, width_s: float, min_n: int) -> Array:
    w = max(1, round(width_s))
    valid = ~np.isnan(x)
    csum = np.concatenate([[0.0], np.cumsum(np.where(valid, x, 0.0))])
    ccnt = np.concatenate([[0.0], np.cumsum(valid)])
    idx = np.arange(len(x)) + 1
    lo = np.maximum(0, idx - w)
    sums = csum[idx] - csum[lo]
    counts = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    out[counts < min_n] = np.nan
    result: Array = out
    return result


def _lag_mask(output: Array, lag_s: float, floor: float) -> tuple[Array, Array]:
    """Where HR rules are suspended after a step in effort: (after step up, down)."""
    short = _trailing_mean(output, 10, 3)
    long = _trailing_mean(output, 60, 10)
    with np.errstate(invalid="ignore"):
        step = np.abs(short - long) > STEP_FRACTION * np.maximum(long, floor)
    n = len(output)
    up = np.zeros(n, dtype=bool)
    down = np.zeros(n, dtype=bool)
    lag = round(lag_s)
    # The session start is a step up from rest: HR starts low and catches up.
    up[: min(n, lag)] = True
    for i in np.flatnonzero(step):
        mask = up if short[i] > long[i] else down
        mask[i : min(n, i + lag)] = True
    return up.astype(np.float64), down.astype(np.float64)


def _runs(
    excess: Array,
    breaks: npt.NDArray[np.bool_],
    dwell_s: float,
    margin: float,
    min_hold_s: float,
) -> list[tuple[int, int, int]]:
    """(onset, fire index or -1, end) of runs beyond the threshold for min_hold_s or more.

    The fire index is where the run completes ``dwell_s``; -1 for a near miss.

    The onset of a run is the first crossing since the metric was last inside by the
    hysteresis margin (or since a break), as for a live alert's ``started_at``.
    """
    runs: list[tuple[int, int, int]] = []
    start = -1
    onset = -1
    held = 0.0
    fire = -1
    last_valid = -1
    last_defined = -1
    for i in range(len(excess)):
        e = excess[i]
        if breaks[i]:
            if start >= 0 and held >= min_hold_s:
                runs.append((onset, fire, last_valid))
            start, fire, held, onset = -1, -1, 0.0, -1
            continue
        if e != e:  # NaN: a hole pauses the run, for up to MAX_PAUSE_S
            if last_defined >= 0 and i - last_defined > MAX_PAUSE_S:
                if start >= 0 and held >= min_hold_s:
                    runs.append((onset, fire, last_valid))
                start, fire, held, onset = -1, -1, 0.0, -1
            continue
        last_defined = i
        if e > 0:
            if onset < 0:
                onset = i
            if start < 0:
                start, held, fire = i, 0.0, -1
            else:
                held += 1.0
            if fire < 0 and held >= dwell_s:
                fire = i
            last_valid = i
        else:
            if start >= 0 and held >= min_hold_s:
                runs.append((onset, fire, last_valid))
            start, fire, held = -1, -1, 0.0
            if e <= -margin:
                onset = -1
    if start >= 0 and held >= min_hold_s:
        runs.append((onset, fire, last_valid))
    return runs


def _episodes(
    rule: str,
    per_direction: dict[str, tuple[Array, npt.NDArray[np.bool_]]],
    dwell_s: float,
    margin: float,
    cooldown_s: float,
    t0: float,
    resumes: Sequence[int] = (),
) -> list[Excursion]:
    """Runs of every direction of one rule, grouped into episodes (one alert each)."""
    band = marginal_band_s(dwell_s)
    candidates: list[tuple[int, int, int, str]] = []
    rearm_at: dict[str, npt.NDArray[np.intp]] = {}
    for direction, (excess, breaks) in per_direction.items():
        for s, f, e in _runs(excess, breaks, dwell_s, margin, NEAR_MISS * dwell_s):
            candidates.append((s, f, e, direction))
        with np.errstate(invalid="ignore"):
            inside = np.flatnonzero(excess <= -margin)
        # A long pause re-arms every direction, as live.
        rearm_at[direction] = np.union1d(inside, np.asarray(resumes, dtype=np.intp))
    candidates.sort()
    # The rule's policy, replayed over the runs: a direction fires when armed and out of
    # cooldown while its run lasts; it re-arms when the metric comes back inside by the
    # margin after firing.
    armed = dict.fromkeys(per_direction, True)
    fired_at: dict[str, float] = {}
    episode_of: dict[str, int] = {}
    near: dict[str, tuple[int, int, int]] = {}  # direction -> its last near miss
    episode = -1
    last_fire = -1e18
    out: list[Excursion] = []
    for s, f, e, direction in candidates:
        if f < 0:
            # A near miss: no alert owed, but one would not be false either.
            near[direction] = (s, e, len(out))
            out.append(Excursion(rule, direction, t0 + s, t0 + e, -1, True))
            continue
        if not armed[direction] and _rearmed(rearm_at[direction], fired_at[direction], s):
            armed[direction] = True
        fire = max(float(f), last_fire + cooldown_s)
        if armed[direction] and fire <= e:
            episode += 1
            joined = episode
            previous = near.pop(direction, None)
            if previous is not None and not _rearmed(rearm_at[direction], previous[1], s):
                # The metric stayed out since a near miss: an alert raised on the near
                # miss is this episode's alert.
                ps, pe, k = previous
                out[k] = Excursion(rule, direction, t0 + ps, t0 + pe, episode, True)
            armed[direction] = False
            fired_at[direction] = fire
            episode_of[direction] = episode
            last_fire = fire
        elif not armed[direction]:
            joined = episode_of[direction]  # never came back inside by the margin
        else:
            joined = max(episode, 0)  # swallowed by the cooldown of the last alert
        marginal = (e - f) < band
        out.append(Excursion(rule, direction, t0 + s, t0 + e, joined, marginal))
    return out


def _rearmed(rearm_idx: npt.NDArray[np.intp], fired_at: float, before: int) -> bool:
    k = int(np.searchsorted(rearm_idx, fired_at, side="right"))
    return k < len(rearm_idx) and int(rearm_idx[k]) < before


def _bucket_means(x: Array) -> Array:
    n_b = len(x) // int(BUCKET_S) + 1
    padded = np.full(n_b * int(BUCKET_S), np.nan)
    padded[: len(x)] = x
    blocks = padded.reshape(n_b, int(BUCKET_S))
    counts = np.sum(~np.isnan(blocks), axis=1)
    sums = np.nansum(blocks, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    means[counts == 0] = np.nan
    result: Array = means
    return result


def _fatigue(
    arr: SessionArrays, config: AlertConfig, athlete: AthleteProfile, has_power: bool
) -> tuple[Array, Array, Array, Array]:
    """Per-second EF ratio, drift slope, fade max ratio and fade min ratio (NaN: undefined).

    Computed per 10 s bucket over trailing windows; a bucket's value holds from the
    start of the next bucket, as in the live engine.
    """
    r = config.rules
    out_raw = arr.power if has_power else arr.speed
    out_b = _bucket_means(out_raw)
    hr_b = _bucket_means(arr.hr)
    p_b = _bucket_means(arr.power)
    n_b = len(out_b)
    floor = 0.4 * athlete.ftp_w if has_power else 1.5
    efr = np.full(n_b, np.nan)
    drift = np.full(n_b, np.nan)
    fade_hi = np.full(n_b, np.nan)
    fade_lo = np.full(n_b, np.nan)
    w_fd = int(r.power_fade.window_s // BUCKET_S)
    base: tuple[float, float] | None = None
    best: float | None = None
    min_best = r.power_fade.min_best_fraction_of_ftp * athlete.ftp_w
    both = ~np.isnan(out_b) & ~np.isnan(hr_b)

    def settled(b: int, window_s: float, max_cv: float) -> npt.NDArray[np.intp] | None:
        # Steady over the window and SETTLE_S before it (HR has caught up), as live.
        span = int((window_s + SETTLE_S) // BUCKET_S)
        if b + 1 < span:
            return None
        lo = b - span + 1
        m = both[lo : b + 1]
        if m.sum() < _COVERAGE * span:
            return None
        o = out_b[lo : b + 1][m]
        mean_o = float(o.mean())
        if mean_o < floor or float(o.std()) / mean_o >= max_cv:
            return None
        idx = np.arange(lo, b + 1)[m]
        kept: npt.NDArray[np.intp] = idx[idx > b - int(window_s // BUCKET_S)]
        return kept

    for b in range(n_b):
        # EF against the early steady baseline.
        rows = settled(b, r.ef_drop.window_s, r.ef_drop.steady_cv)
        if rows is not None and len(rows):
            mean_o = float(out_b[rows].mean())
            ef = mean_o / float(hr_b[rows].mean())
            if base is None:
                if (b + 1) * BUCKET_S - r.ef_drop.window_s >= r.ef_drop.baseline_after_s:
                    base = (ef, mean_o)
            elif abs(mean_o - base[1]) <= r.ef_drop.comparable_fraction * base[1]:
                efr[b] = ef / base[0]
        # HR slope at steady output.
        rows = settled(b, r.hr_drift.window_s, r.hr_drift.steady_cv)
        if rows is not None and len(rows) > 1:
            xs = rows * BUCKET_S / 60.0
            ys = hr_b[rows]
            xc = xs - xs.mean()
            drift[b] = float(np.dot(xc, ys - ys.mean()) / np.dot(xc, xc))
        # Fade against the best 5 min so far.
        lo = max(0, b - w_fd + 1)
        pw = p_b[lo : b + 1]
        pw = pw[~np.isnan(pw)]
        if len(pw) >= _COVERAGE * w_fd:
            p5 = float(pw.mean())
            best = p5 if best is None else max(best, p5)
            last = p_b[max(lo, b - 5) : b + 1]
            last = last[~np.isnan(last)]
            if best >= min_best and len(last):
                p1 = float(last.mean())
                fade_hi[b] = max(p5, p1) / best
                fade_lo[b] = min(p5, p1) / best

    def per_second(values: Array) -> Array:
        shifted = np.r_[np.nan, values[:-1]]  # bucket b's value holds during bucket b+1
        repeated: Array = np.repeat(shifted, int(BUCKET_S))[: len(arr.hr)]
        return repeated

    return per_second(efr), per_second(drift), per_second(fade_hi), per_second(fade_lo)


def _w_prime_balance(power: Array, athlete: AthleteProfile) -> Array:
    p10 = _trailing_mean(power, 10, 3)
    w_prime = athlete.w_prime_j
    cp = athlete.critical_power_w
    out = np.full(len(power), np.nan)
    w = w_prime
    started = False
    for i in range(len(power)):
        p = p10[i]
        if p != p:
            out[i] = w if started else np.nan
            continue
        if started:
            w = w - (p - cp) if p >= cp else w + (cp - p) * (w_prime - w) / w_prime
            w = min(w, w_prime)
        started = True
        out[i] = w
    return out


#: How far the truth must be past a fatigue (or W') threshold, in the metric's unit, and
#: how far (relative) inside or outside the steadiness gate, for the label to be clear.
#: Within these bands the live metric, measured with noise over a 5-10 min window, may
#: fall either side: an alert there is allowed but not owed.
FATIGUE_BANDS = {"ef_drop": 0.005, "hr_drift": 0.03, "power_fade": 0.01, "w_prime": 0.01}
STEADY_BAND = 0.15


def _fatigue_excess(
    arr: SessionArrays, config: AlertConfig, athlete: AthleteProfile, has_power: bool
) -> dict[str, Array]:
    r = config.rules
    efr, drift, fade_hi, fade_lo = _fatigue(arr, config, athlete, has_power)
    f = r.power_fade
    with np.errstate(invalid="ignore"):
        fade = np.where(fade_lo < f.floor_fraction, -1.0, f.fade_fraction - fade_hi)
    fade[np.isnan(fade_hi)] = np.nan
    w_ratio = _w_prime_balance(arr.power, athlete) / athlete.w_prime_j
    return {
        "w_prime": r.w_prime.fraction - w_ratio,
        "ef_drop": (1.0 - r.ef_drop.drop_fraction) - efr,
        "hr_drift": drift - r.hr_drift.slope_bpm_per_min,
        "power_fade": fade,
    }


def _with_gates(config: AlertConfig, factor: float) -> AlertConfig:
    rules = config.rules
    return config.model_copy(
        update={
            "rules": rules.model_copy(
                update={
                    "ef_drop": rules.ef_drop.model_copy(
                        update={"steady_cv": rules.ef_drop.steady_cv * factor}
                    ),
                    "hr_drift": rules.hr_drift.model_copy(
                        update={"steady_cv": rules.hr_drift.steady_cv * factor}
                    ),
                }
            )
        }
    )


def _fatigue_labels(
    arr: SessionArrays,
    config: AlertConfig,
    athlete: AthleteProfile,
    has_power: bool,
    gap: npt.NDArray[np.bool_],
    resumes: Sequence[int],
) -> list[Excursion]:
    """Fatigue and W' excursions in two strengths: clearly out (owed), or nearly (allowed).

    Clear: the truth is past the threshold by the rule's band with the steadiness gate
    tightened by STEADY_BAND. Allowed: past the threshold less the band, the gate
    loosened as much. Allowed-only runs are labelled as near misses.
    """
    strict = _fatigue_excess(arr, _with_gates(config, 1 - STEADY_BAND), athlete, has_power)
    loose = _fatigue_excess(arr, _with_gates(config, 1 + STEADY_BAND), athlete, has_power)
    r = config.rules
    out: list[Excursion] = []
    rules = (("ef_drop", "low"), ("hr_drift", "high"), ("power_fade", "low"), ("w_prime", "low"))
    for rule, direction in rules:
        cfg = getattr(r, rule)
        if not cfg.enabled or (rule in ("power_fade", "w_prime") and not has_power):
            continue
        band = FATIGUE_BANDS[rule]
        args = (cfg.dwell_s, cfg.hysteresis, cfg.cooldown_s, arr.t0_s, resumes)
        out += _episodes(rule, {direction: (strict[rule] - band, gap)}, *args)
        out += [
            Excursion(x.rule, x.direction, x.start_s, x.end_s, -1, True)
            for x in _episodes(rule, {direction: (loose[rule] + band, gap)}, *args)
        ]
    return out


def label_session(
    arr: SessionArrays, config: AlertConfig, athlete: AthleteProfile
) -> list[Excursion]:
    """Every excursion of every enabled rule in the session, in time order per rule."""
    r = config.rules
    n = len(arr.hr)
    # A gap in the recording longer than GAP_S ends every run, as it does live.
    absent = ~arr.present
    gap = np.zeros(n, dtype=bool)
    resumes: list[int] = []  # where the athlete starts again after a long pause
    if absent.any():
        starts = np.flatnonzero(absent & ~np.r_[False, absent[:-1]])
        ends = np.flatnonzero(absent & ~np.r_[absent[1:], False])
        for s, e in zip(starts, ends, strict=True):
            if e - s + 1 > GAP_S:
                gap[s : e + 1] = True
            if e - s + 1 > LONG_GAP_S and e + 1 < n:
                resumes.append(int(e + 1))
    has_power = bool(np.any(~np.isnan(arr.power)))
    labels: list[Excursion] = []
    t0 = arr.t0_s

    hr = _centered_mean(arr.hr, 5)
    hr_low, hr_high = resolve_hr_bounds(r.heart_rate, athlete)
    if r.heart_rate.enabled and (hr_low is not None or hr_high is not None):
        output = arr.power if has_power else arr.speed
        floor = 0.3 * athlete.ftp_w if has_power else 1.0
        after_up, after_down = _lag_mask(output, r.heart_rate.lag_s, floor)
        for i in resumes:
            after_up[i : i + round(r.heart_rate.lag_s)] = 1.0
        dirs: dict[str, tuple[Array, npt.NDArray[np.bool_]]] = {}
        if hr_high is not None:
            dirs["high"] = (hr - hr_high, gap | (after_down > 0))
        if hr_low is not None:
            dirs["low"] = (hr_low - hr, gap | (after_up > 0))
        cfg = r.heart_rate
        labels += _episodes(
            "heart_rate", dirs, cfg.dwell_s, cfg.hysteresis, cfg.cooldown_s, t0, resumes
        )

    target = r.pace.target_s_per_km
    if r.pace.enabled and target is not None:
        cfg_p = r.pace
        speed = _centered_mean(arr.speed, cfg_p.window_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            pace = np.where(speed >= 0.5, 1000.0 / speed, np.nan)
        slow = target + cfg_p.tolerance_s_per_km
        fast = target - cfg_p.tolerance_s_per_km
        labels += _episodes(
            "pace",
            {"slow": (pace - slow, gap), "fast": (fast - pace, gap)},
            cfg_p.dwell_s, cfg_p.hysteresis, cfg_p.cooldown_s, t0, resumes,
        )  # fmt: skip

    p_low, p_high = resolve_power_bounds(r.power, athlete)
    if r.power.enabled and has_power and (p_low is not None or p_high is not None):
        cfg_w = r.power
        power = _centered_mean(arr.power, cfg_w.window_s)
        pdirs: dict[str, tuple[Array, npt.NDArray[np.bool_]]] = {}
        if p_high is not None:
            pdirs["high"] = (power - p_high, gap)
        if p_low is not None:
            pdirs["low"] = (p_low - power, gap)
        labels += _episodes(
            "power", pdirs, cfg_w.dwell_s, cfg_w.hysteresis, cfg_w.cooldown_s, t0, resumes
        )

    labels += _fatigue_labels(arr, config, athlete, has_power, gap, resumes)
    return labels

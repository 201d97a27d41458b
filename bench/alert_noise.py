"""Measure the noise of the shared recordings that the alert scenarios are calibrated to.

``python -m bench.alert_noise [recordings dir]`` prints, per recording, on its steady
stretches (30 s centered median within 10 % of the 5 min centered median):

- power: second-to-second variability, sd of power / 30 s centered mean (%);
- heart rate: sensor jitter, sd of HR - 9 s centered mean (bpm), and slow wander, sd
  of the 60 s mean around a 10 min centered mean (bpm);
- speed: sd of speed - 30 s centered mean (m/s) and the lag (s) at which the
  residual's autocorrelation falls under 1/e (how long GPS errors persist);
- the share of time coasting (power 0 while moving), and stops (speed < 0.5 m/s).

The figures are stated in docs/alerts.md; ``agents.alerts.simulate`` uses them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.recordings import read_recording, shared_recordings_dir

Array = npt.NDArray[np.float64]


def _grid(path: Path) -> dict[str, Array]:
    samples = sorted(read_recording(path).samples, key=lambda s: s.t)
    t0 = samples[0].t
    n = round(samples[-1].t - t0) + 1
    out = {k: np.full(n, np.nan) for k in ("hr", "power", "speed", "cadence")}
    for s in samples:
        i = round(s.t - t0)
        for key, value in (("hr", s.heart_rate), ("power", s.power_w),
                           ("speed", s.speed_m_s), ("cadence", s.cadence)):  # fmt: skip
            if value is not None:
                out[key][i] = value
    return out


def _centered(x: Array, width: int, fn: str = "mean") -> Array:
    half = width // 2
    out = np.full(len(x), np.nan)
    for i in range(half, len(x) - half):
        w = x[i - half : i + half + 1]
        w = w[~np.isnan(w)]
        if len(w) >= 0.8 * width:
            out[i] = np.mean(w) if fn == "mean" else np.median(w)
    return out


def _steady(x: Array) -> npt.NDArray[np.bool_]:
    short = _centered(x, 31, "median")
    long = _centered(x, 301, "median")
    with np.errstate(invalid="ignore"):
        return (np.abs(short - long) < 0.1 * long) & (long > 0)


def _corr_time(resid: Array) -> float:
    r = resid[~np.isnan(resid)]
    if len(r) < 200:
        return float("nan")
    r = r - r.mean()
    var = float(np.dot(r, r))
    for lag in range(1, 120):
        if float(np.dot(r[:-lag], r[lag:])) / var < 1 / np.e:
            return float(lag)
    return 120.0


def measure(path: Path) -> dict[str, float]:
    g = _grid(path)
    out: dict[str, float] = {"seconds": float(len(g["hr"]))}
    p = g["power"]
    if np.count_nonzero(~np.isnan(p)) > 600:
        st = _steady(p) & (p > 0)
        m30 = _centered(p, 31)
        rel = (p - m30) / m30
        out["power_sd_pct"] = float(100 * np.nanstd(rel[st]))
        moving = g["speed"] > 2 if np.count_nonzero(~np.isnan(g["speed"])) else p >= 0
        out["coasting_pct"] = float(100 * np.mean((p == 0)[moving]))
    hr = g["hr"]
    if np.count_nonzero(~np.isnan(hr)) > 600:
        out["hr_jitter_bpm"] = float(np.nanstd(hr - _centered(hr, 9)))
        m60 = _centered(hr, 61)
        m600 = _centered(hr, 601)
        ref = p if np.count_nonzero(~np.isnan(p)) > 600 else g["speed"]
        st = _steady(ref)
        out["hr_wander_bpm"] = float(np.nanstd((m60 - m600)[st]))
    v = g["speed"]
    if np.count_nonzero(~np.isnan(v)) > 600:
        m30 = _centered(v, 31)
        st = _steady(v) & (v > 1)
        resid = np.where(st, v - m30, np.nan)
        out["speed_sd_m_s"] = float(np.nanstd(resid))
        out["speed_corr_s"] = _corr_time(resid)
        out["stopped_pct"] = float(100 * np.nanmean(v < 0.5))
    return out


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else shared_recordings_dir()
    if folder is None or not folder.is_dir():
        print("no recordings folder", file=sys.stderr)
        return 2
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".fit", ".tcx"):
            continue
        figures = measure(path)
        text = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
        print(f"{path.name.split('__')[0]}: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

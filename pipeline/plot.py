"""A session as a PNG: heart rate, power and pace over zone bands, W' balance, laps
and alerts (matplotlib, Agg backend: no display needed).

The data is a session's per-second table (:func:`agents.replay_series.series`):
rows with ``t``, ``heart_rate``, ``power_w``, ``pace`` (s/km, from the agents'
rolling speed) and ``w_prime_bal_j``; the zone bounds of its summary; its laps
(``start_t``) and alerts (``metric``, ``fired_at_s``). A panel whose metric the
session does not have says so instead of being left empty. matplotlib is part of the
``analysis`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.export import optional

#: The panels, top to bottom: (title, unit, the row field plotted, the zone-bounds key).
PANELS = (
    ("Heart rate", "bpm", "heart_rate", "heart_rate_bpm"),
    ("Power", "W", "power_w", "power_w"),
    ("Pace", "min/km", "pace", "pace_speed_m_s"),
    ("W' balance", "kJ", "w_prime_bal_j", None),
)
#: The metric an alert names -> the panel it is drawn on.
_ALERT_PANEL = {"heart_rate": 0, "power": 1, "pace": 2, "speed": 2, "w_prime_bal": 3}
_BAND_COLOURS = ("#d9d9d9", "#9ecae1", "#a1d99b", "#fdd49e", "#fc9272", "#de2d26", "#7a0177")
_LINE_COLOURS = ("#c0392b", "#2c3e50", "#16a085", "#8e44ad")
#: Slowest pace drawn (min/km): walking and stops would squash the chart.
_PACE_MAX_MIN = 12.0


@dataclass(frozen=True)
class Plotted:
    """What was drawn: each panel's title and number of points, its line colour and
    its box in the image (pixels, origin top left: x0, y0, x1, y1), for tests and logs."""

    panels: list[tuple[str, int]]
    colours: list[str]
    boxes: list[tuple[int, int, int, int]]
    path: Path


def _pace_min(row: dict[str, Any]) -> float | None:
    pace = row.get("pace")
    if pace is None or pace <= 0 or pace / 60.0 > _PACE_MAX_MIN:
        return None
    return float(pace) / 60.0


def plot_session(
    path: Path,
    rows: list[dict[str, Any]],
    *,
    zone_bounds: dict[str, list[float]],
    laps: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    title: str,
) -> Plotted:
    matplotlib = optional("matplotlib")
    matplotlib.use("Agg")
    plt = optional("matplotlib.pyplot")
    if not rows:
        raise ValueError("nothing to plot: the session has no samples")
    t0 = rows[0]["t"]
    minutes = [(row["t"] - t0) / 60.0 for row in rows]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(12, 10), sharex=True)
    drawn: list[tuple[str, int]] = []
    try:
        for i, (ax, (name, unit, key, bounds_key)) in enumerate(zip(axes, PANELS, strict=True)):
            if key == "pace":
                values = [_pace_min(row) for row in rows]
            elif key == "w_prime_bal_j":
                values = [None if row.get(key) is None else row[key] / 1000.0 for row in rows]
            else:
                values = [row.get(key) for row in rows]
            points = [(m, v) for m, v in zip(minutes, values, strict=True) if v is not None]
            ax.set_title(name, loc="left", fontsize=10)
            ax.set_ylabel(unit)
            ax.grid(True, alpha=0.3)
            if not points:
                ax.text(0.5, 0.5, f"no {name.lower()} in this session", transform=ax.transAxes,
                        ha="center", va="center", color="grey")  # fmt: skip
                drawn.append((name, 0))
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=_LINE_COLOURS[i], linewidth=0.8)
            _bands(ax, key, zone_bounds.get(bounds_key or "", []), max(ys))
            margin = (max(ys) - min(ys)) * 0.05 or 1.0
            if key == "pace":  # faster is up
                ax.set_ylim(max(ys) + margin, min(ys) - margin)
            else:
                ax.set_ylim(min(ys) - margin, max(ys) + margin)
            drawn.append((name, len(points)))
        for lap in laps:
            start = lap.get("start_t")
            if isinstance(start, int | float) and start > t0:
                for ax in axes:
                    ax.axvline((start - t0) / 60.0, color="black", linestyle=":", linewidth=0.8)
        for alert in alerts:
            at = alert.get("fired_at_s")
            panel = _ALERT_PANEL.get(str(alert.get("metric")), 0)
            if isinstance(at, int | float):
                axes[panel].axvline((at - t0) / 60.0, color="red", linewidth=1.2, alpha=0.8)
        axes[-1].set_xlabel("minutes")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=fig.dpi)
        height = fig.bbox.height
        boxes = []
        for ax in axes:
            box = ax.get_window_extent()
            boxes.append((round(box.x0), round(height - box.y1), round(box.x1),
                          round(height - box.y0)))  # fmt: skip
    finally:
        plt.close(fig)
    return Plotted(drawn, list(_LINE_COLOURS[: len(PANELS)]), boxes, path)


def _bands(ax: Any, key: str, lower: list[float], high: float) -> None:
    """Zone bands behind a panel's line (zones: lower bounds, ascending)."""
    if not lower:
        return
    edges = list(lower)
    if key == "pace":  # bounds are speeds (m/s); the panel is pace (min/km)
        edges = [1000.0 / s / 60.0 if s > 0 else _PACE_MAX_MIN for s in lower]
    # The last zone is open-ended: up to the top of the data (pace: down to 0 min/km).
    tops = [*edges[1:], 0.0 if key == "pace" else max(high, edges[-1]) * 2]
    for i, (bottom, top) in enumerate(zip(edges, tops, strict=True)):
        ax.axhspan(bottom, top, color=_BAND_COLOURS[i % len(_BAND_COLOURS)], alpha=0.25, lw=0)

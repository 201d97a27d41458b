"""The summary of a whole recording, through the live per-sample update.

:func:`summarise` is what ``livecoach analyze`` prints and what the tests compare with
the reference figures of ``data/recordings/LICENSES.txt``. It does not compute
anything itself: it feeds the samples to :meth:`SessionMetrics.add_sample` (the
function the metrics agent calls for every live sample), stops the session at the last
sample, and returns :meth:`SessionMetrics.summary` with the lap summaries added. The
Faust path must print the same dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agents.laps import LapMode
from agents.session_metrics import SampleLike, SessionMetrics
from pipeline.models import OFFLINE_SESSION_ID, AthleteProfile


def summarise(
    samples: Iterable[SampleLike],
    profile: AthleteProfile | None = None,
    *,
    session_id: str = str(OFFLINE_SESSION_ID),
    lap_mode: LapMode = "distance",
) -> dict[str, Any]:
    """Run ``samples`` (oldest first) through a fresh session; return its summary."""
    metrics = SessionMetrics(session_id, profile, lap_mode)
    for sample in samples:
        metrics.add_sample(sample)
    if metrics.state != "stopped":
        metrics.stop(metrics.last_t if metrics.last_t is not None else 0.0)
    summary = metrics.summary()
    summary["lap_summaries"] = metrics.drain_laps()
    return summary

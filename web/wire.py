"""Live events as the wire has them: the one translation from what the agents publish
on ``live`` to what a socket receives.

The agents keep the hot path's units (epoch seconds, pace in s/km, distance in m:
compact, cheap to compute with, and what replays and analyses compare); clients get the
spec's: ISO 8601 times with a zone, ``pace`` in minutes per km as a decimal (5.5 is
5:30/km), ``distance`` in km, with ``pace_s_per_km`` and ``distance_m`` beside them.
The edge parses every ``live`` entry once anyway (:func:`web.fanout.build_event`), so
this costs one pass over a dict per event and edge, not per socket (about a
microsecond: see :func:`pipeline.models.iso_z`).
"""

from __future__ import annotations

from typing import Any

from pipeline.models import iso_z

#: Event fields the agents write as epoch seconds (``started_at``: a stop's).
_TIMES = ("timestamp", "started_at")


def to_wire(event: dict[str, Any]) -> dict[str, Any]:
    """Convert ``event`` in place (and return it); an event already in wire form, or
    one without these fields, is left as it is."""
    for name in _TIMES:
        value = event.get(name)
        if type(value) is float or type(value) is int:
            event[name] = iso_z(value)
    if event.get("type") == "metrics_update":
        metrics = event.get("metrics")
        if type(metrics) is dict and "pace_s_per_km" not in metrics:
            pace = metrics.get("pace")
            distance = metrics.get("distance")
            metrics["pace_s_per_km"] = pace
            metrics["distance_m"] = distance
            metrics["pace"] = pace / 60.0 if type(pace) is float or type(pace) is int else None
            metrics["distance"] = (
                distance / 1000.0 if type(distance) is float or type(distance) is int else None
            )
    return event

"""Alerts as recorded against alerts as replayed: kept, moved, gained, lost.

An alert's id derives from its session, rule, direction and onset, so the same id on
both sides is the same alert (``kept``; ``changed`` lists the fields that differ, e.g.
the threshold a what-if lowered). Of the rest, a recorded and a replayed alert of the
same rule and direction whose onsets are within :data:`MOVE_WINDOW_S` are the same
alert ``moved`` (nearest onsets paired first); what is left was ``lost`` (recorded
only) or ``gained`` (replayed only).
"""

from __future__ import annotations

from typing import Any

#: Largest onset shift still counted as the same alert moved, not one lost and one gained.
MOVE_WINDOW_S = 120.0
#: Alert fields compared for ``changed`` (timing is in the id).
_COMPARED = ("severity", "threshold", "current", "message", "sound", "vibration")

Alert = dict[str, Any]


def _kind(alert: Alert) -> tuple[str, str]:
    return str(alert.get("rule")), str(alert.get("direction"))


def _onset(alert: Alert) -> float:
    return float(alert.get("started_at_s") or alert.get("fired_at_s") or 0.0)


def compare(recorded: list[Alert], replayed: list[Alert]) -> dict[str, Any]:
    by_id = {a["id"]: a for a in recorded}
    replayed_ids = {a["id"] for a in replayed}
    kept: list[dict[str, Any]] = []
    for alert in replayed:
        old = by_id.get(alert["id"])
        if old is not None:
            changed = {
                k: [old.get(k), alert.get(k)] for k in _COMPARED if old.get(k) != alert.get(k)
            }
            kept.append({"id": alert["id"], "rule": alert.get("rule"), "changed": changed})
    only_old = [a for a in recorded if a["id"] not in replayed_ids]
    only_new = [a for a in replayed if a["id"] not in by_id]
    pairs = sorted(
        (abs(_onset(o) - _onset(n)), i, j)
        for i, o in enumerate(only_old)
        for j, n in enumerate(only_new)
        if _kind(o) == _kind(n) and abs(_onset(o) - _onset(n)) <= MOVE_WINDOW_S
    )
    used_old: set[int] = set()
    used_new: set[int] = set()
    moved: list[dict[str, Any]] = []
    for _, i, j in pairs:
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        old, new = only_old[i], only_new[j]
        moved.append({"rule": new.get("rule"), "direction": new.get("direction"),
                      "recorded": old, "replayed": new,
                      "shift_s": round(_onset(new) - _onset(old), 3)})  # fmt: skip
    return {
        "kept": kept,
        "moved": moved,
        "gained": [n for j, n in enumerate(only_new) if j not in used_new],
        "lost": [o for i, o in enumerate(only_old) if i not in used_old],
    }


def summary_changes(
    recorded: dict[str, Any] | None, replayed: dict[str, Any] | None
) -> dict[str, list[Any]]:
    """Top-level summary fields that differ: ``{field: [recorded, replayed]}``."""
    if recorded is None or replayed is None:
        return {}
    keys = sorted(set(recorded) | set(replayed))
    return {
        k: [recorded.get(k), replayed.get(k)] for k in keys if recorded.get(k) != replayed.get(k)
    }

"""agents/replay_diff.py: recorded vs replayed alerts (pure)."""

from __future__ import annotations

from typing import Any

from agents.replay_diff import compare, summary_changes


def _alert(id_: str, onset: float, rule: str = "heart_rate", **extra: Any) -> dict[str, Any]:
    return {"id": id_, "rule": rule, "direction": "high", "started_at_s": onset,
            "fired_at_s": onset + 3, "severity": "warning", "threshold": 170, **extra}  # fmt: skip


def test_kept_moved_gained_lost() -> None:
    recorded = [_alert("a", 100), _alert("b", 500), _alert("c", 900, rule="power")]
    replayed = [_alert("a", 100, threshold=165), _alert("b2", 530), _alert("d", 2000)]
    diff = compare(recorded, replayed)
    assert [k["id"] for k in diff["kept"]] == ["a"]
    assert diff["kept"][0]["changed"] == {"threshold": [170, 165]}
    assert [(m["recorded"]["id"], m["replayed"]["id"], m["shift_s"]) for m in diff["moved"]] == [
        ("b", "b2", 30.0)
    ]
    assert [a["id"] for a in diff["gained"]] == ["d"]
    assert [a["id"] for a in diff["lost"]] == ["c"]  # another rule is never "moved" to


def test_nearest_onsets_pair_first_and_far_ones_do_not_move() -> None:
    recorded = [_alert("r1", 100), _alert("r2", 200)]
    replayed = [_alert("n1", 190), _alert("n2", 1000)]
    diff = compare(recorded, replayed)
    assert [(m["recorded"]["id"], m["replayed"]["id"]) for m in diff["moved"]] == [("r2", "n1")]
    assert [a["id"] for a in diff["lost"]] == ["r1"] and [a["id"] for a in diff["gained"]] == ["n2"]


def test_summary_changes_lists_differing_fields() -> None:
    assert summary_changes({"np": 200.0, "tss": 50}, {"np": 200.0, "tss": 55}) == {"tss": [50, 55]}
    assert summary_changes(None, {"np": 1}) == {}

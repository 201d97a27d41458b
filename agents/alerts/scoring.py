"""Scoring alerts against a coach's expectations (scenarios and hand-labelled recordings).

An alert is **correct** when it is welcome somewhere: an expectation names its rule
(and its direction, if the expectation gives one) and the alert fired between the
expectation's ``start_s`` and ``until_s``. An **owed** expectation is **detected** when
such an alert fired between ``start_s`` and ``by_s``. Precision is correct alerts over
alerts, recall detected over owed, counted per rule, per alert type (heart rate, pace,
power, fatigue) and per kind of situation. Times are seconds from the session start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.alerts.config import RULE_NAMES
from agents.alerts.rules import Alert
from agents.alerts.scenarios import TYPES, Expect

__all__ = ["Counts", "Scoreboard", "score_alerts"]


@dataclass
class Counts:
    alerts: int = 0
    correct: int = 0
    owed: int = 0
    detected: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.owed if self.owed else 1.0

    def add(self, other: Counts) -> None:
        self.alerts += other.alerts
        self.correct += other.correct
        self.owed += other.owed
        self.detected += other.detected

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "alerts": self.alerts,
            "correct": self.correct,
            "owed": self.owed,
            "detected": self.detected,
        }


def _type_of(rule: str) -> str:
    return next(name for name, rules in TYPES.items() if rule in rules)


def _matches(alert: Alert, e: Expect, t0: float) -> bool:
    return alert.rule in e.rules and (e.direction is None or e.direction == alert.direction)


@dataclass
class Scoreboard:
    by_rule: dict[str, Counts] = field(default_factory=lambda: {r: Counts() for r in RULE_NAMES})
    by_type: dict[str, Counts] = field(default_factory=lambda: {t: Counts() for t in TYPES})
    by_kind: dict[str, Counts] = field(default_factory=dict)
    overall: Counts = field(default_factory=Counts)
    #: Per session: name, kind, alerts (rule, direction, fired s), false, missed.
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def add_session(self, name: str, kind: str, alerts: Sequence[Alert],
                    expect: Iterable[Expect], t0: float = 0.0) -> None:  # fmt: skip
        expect = list(expect)
        kind_counts = self.by_kind.setdefault(kind, Counts())
        false: list[str] = []
        for a in alerts:
            fired = a.fired_at_s - t0
            ok = any(_matches(a, e, t0) and e.start_s <= fired <= e.until_s for e in expect)
            for counts in (self.by_rule[a.rule], self.by_type[_type_of(a.rule)], kind_counts,
                           self.overall):  # fmt: skip
                counts.alerts += 1
                counts.correct += ok
            if not ok:
                false.append(f"{a.rule}:{a.direction}@{fired:.0f}")
        missed: list[str] = []
        for e in expect:
            if not e.owed:
                continue
            hit = any(
                _matches(a, e, t0) and e.start_s <= a.fired_at_s - t0 <= e.by_s for a in alerts
            )
            targets = [self.by_type[_type_of(e.rules[0])], kind_counts, self.overall]
            if len(e.rules) == 1:
                targets.append(self.by_rule[e.rules[0]])
            for counts in targets:
                counts.owed += 1
                counts.detected += hit
            if not hit:
                missed.append(f"{'/'.join(e.rules)}:{e.direction}@{e.start_s}-{e.by_s}")
        self.sessions.append(
            {
                "name": name,
                "kind": kind,
                "alerts": [f"{a.rule}:{a.direction}@{a.fired_at_s - t0:.0f}" for a in alerts],
                "false": false,
                "missed": missed,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_json(),
            "by_type": {k: v.to_json() for k, v in self.by_type.items()},
            "by_rule": {k: v.to_json() for k, v in self.by_rule.items()},
            "by_kind": {k: v.to_json() for k, v in sorted(self.by_kind.items())},
            "sessions": self.sessions,
        }

    def format(self, title: str) -> str:
        lines = [title, f"  {'':<22}{'precision':>10}{'recall':>8}{'alerts':>8}{'owed':>6}"]

        def row(name: str, c: Counts) -> None:
            lines.append(
                f"  {name:<22}{c.precision:>10.3f}{c.recall:>8.3f}{c.alerts:>8}{c.owed:>6}"
            )

        for name, c in self.by_type.items():
            row(f"type {name}", c)
        row("overall", self.overall)
        for name, c in self.by_rule.items():
            row(f"rule {name}", c)
        for name, c in sorted(self.by_kind.items()):
            row(f"kind {name}", c)
        return "\n".join(lines)


def score_alerts(alerts: Sequence[Alert], expect: Iterable[Expect], kind: str,
                 name: str, t0: float = 0.0) -> Scoreboard:  # fmt: skip
    """One session on its own scoreboard (tests)."""
    board = Scoreboard()
    board.add_session(name, kind, alerts, expect, t0)
    return board

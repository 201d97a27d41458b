"""The accuracy harness: scoring, the scenario set's coverage, the 0.97 bar, recordings."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from agents.alerts.evaluation import (
    BAR,
    DEFAULT_RECORDINGS_DIR,
    RECORDING_SETUPS,
    evaluate,
)
from agents.alerts.recording_labels import RECORDING_LABELS
from agents.alerts.rules import Alert
from agents.alerts.scenarios import AMBIGUOUS, SCENARIOS, Expect
from agents.alerts.scoring import score_alerts
from pipeline.cli import main as cli_main


def _alert(fired: float, rule: str = "power", direction: str = "low") -> Alert:
    return Alert(
        id="x", session_id="s", rule=rule, direction=direction, metric=rule,
        severity="info", message="", current=0.0, threshold=0.0, started_at_s=fired - 30,
        fired_at_s=fired, sound=True, vibration=True,
    )  # fmt: skip


def test_scoring_counts_welcome_and_owed_alerts() -> None:
    owed = Expect(("power",), "low", 100, 160, 400)
    fair = Expect(("ef_drop", "hr_drift"), None, 1000, 2000, 2000, owed=False)
    board = score_alerts([_alert(150)], [owed, fair], "k", "s")
    assert (board.overall.precision, board.overall.recall) == (1.0, 1.0)
    late = score_alerts([_alert(200)], [owed], "k", "s")  # welcome, but not prompt
    assert (late.overall.precision, late.overall.recall) == (1.0, 0.0)
    wrong_way = score_alerts([_alert(150, direction="high")], [owed], "k", "s")
    assert (wrong_way.overall.precision, wrong_way.overall.recall) == (0.0, 0.0)
    stray = score_alerts([_alert(150), _alert(900)], [owed], "k", "s")
    assert stray.by_type["power"].precision == 0.5
    allowed = score_alerts([_alert(1500, "ef_drop")], [fair], "k", "s")
    assert allowed.by_type["fatigue"].precision == 1.0 and allowed.overall.owed == 0


def test_the_scenario_set_covers_every_kind_the_issue_lists() -> None:
    assert len(SCENARIOS) >= 60
    kinds = Counter(s.kind for s in SCENARIOS)
    for kind in (
        "coasting", "turns", "gps-noise", "normal-drift", "fade-after-block", "stops",
        "traffic-lights", "surges", "sensor-noise", "dropouts", "under-target",
        "over-target", "pace-off", "hr-ceiling", "cardiac-drift", "fade", "w-prime",
    ):  # fmt: skip
        assert kinds[kind] >= 3 or kind in ("hr-floor",), (kind, kinds[kind])
    assert len({s.id for s in SCENARIOS + AMBIGUOUS}) == len(SCENARIOS) + len(AMBIGUOUS)
    for scenario in SCENARIOS:
        assert len(scenario.description) > 40, scenario.id
        for e in scenario.expect:
            assert e.start_s <= e.by_s <= e.until_s, scenario.id
            assert e.start_s < scenario.duration_s, scenario.id
    # Every alert type has owed alerts to find.
    owed = Counter(e.rules[0] for s in SCENARIOS for e in s.expect if e.owed)
    assert owed["heart_rate"] >= 4 and owed["pace"] >= 4 and owed["power"] >= 8
    assert sum(owed[r] for r in ("hr_drift", "power_fade", "w_prime")) >= 8


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    data = evaluate(noise_seeds=1).to_json()
    json.dumps(data)
    return data


@pytest.mark.slow
def test_every_alert_type_reaches_the_bar(report: dict[str, object]) -> None:
    scenarios = report["scenarios"]
    assert isinstance(scenarios, dict)
    for name, figures in [*scenarios["by_type"].items(), ("overall", scenarios["overall"])]:
        assert figures["precision"] >= BAR, (name, figures)
        assert figures["recall"] >= BAR, (name, figures)
    kinds = scenarios["by_kind"]
    # The situations that must stay silent raised nothing.
    for kind in ("coasting", "turns", "gps-noise", "stops", "traffic-lights", "surges"):
        assert kinds[kind]["alerts"] == 0, (kind, kinds[kind])


@pytest.mark.slow
def test_recordings_are_scored_apart_when_present(report: dict[str, object]) -> None:
    if DEFAULT_RECORDINGS_DIR is None or not DEFAULT_RECORDINGS_DIR.is_dir():
        pytest.skip("shared recordings not present")
    names = {s["name"] for s in report["recordings"]["sessions"]}  # type: ignore[index]
    for setup in RECORDING_SETUPS:
        if setup.file in RECORDING_LABELS:
            assert setup.file.split("__")[0] in names


def test_recording_labels_name_known_recordings() -> None:
    files = {setup.file for setup in RECORDING_SETUPS}
    assert set(RECORDING_LABELS) <= files
    assert sum(e.owed for labels in RECORDING_LABELS.values() for e in labels) >= 10


@pytest.mark.slow
def test_cli_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["alerts-eval", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"scenarios", "recordings", "ambiguous"}
    assert status in (0, 1)

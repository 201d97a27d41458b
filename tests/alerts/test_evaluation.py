"""The accuracy harness: scoring rules, labels of the recordings, the 0.97 bar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.alerts.config import RULE_NAMES, AlertConfig
from agents.alerts.evaluation import (
    DEFAULT_RECORDINGS_DIR,
    RECORDING_SETUPS,
    evaluate,
    score_session,
)
from agents.alerts.labels import Excursion, clean_series
from agents.alerts.rules import Alert
from pipeline.cli import main as cli_main


def _alert(start: float, direction: str = "high") -> Alert:
    return Alert(
        id="x", session_id="s", rule="heart_rate", direction=direction, metric="heart_rate",
        severity="warning", message="", current=0.0, threshold=0.0, started_at_s=start,
        fired_at_s=start + 15, sound=True, vibration=True,
    )  # fmt: skip


def test_scoring_matches_within_dwell_plus_ten_seconds() -> None:
    config = AlertConfig()  # heart_rate dwell 15 s: tolerance 25 s
    labels = [
        Excursion("heart_rate", "high", 100.0, 200.0, 0, False),
        Excursion("heart_rate", "high", 500.0, 520.0, 1, True),  # marginal: not owed
    ]
    score = score_session([_alert(124.0)], labels, config)["heart_rate"]
    assert (score.precision, score.recall) == (1.0, 1.0)
    late = score_session([_alert(126.0)], labels, config)["heart_rate"]
    assert late.recall == 0.0 and late.precision == 1.0  # inside the run, but not prompt
    stray = score_session([_alert(124.0), _alert(300.0)], labels, config)["heart_rate"]
    assert stray.precision == 0.5
    wrong_way = score_session([_alert(124.0, "low")], labels, config)["heart_rate"]
    assert wrong_way.precision == 0.0 and wrong_way.recall == 0.0
    marginal_hit = score_session([_alert(124.0), _alert(505.0)], labels, config)["heart_rate"]
    assert marginal_hit.precision == 1.0


def test_cleaning_removes_spikes_and_fills_short_holes_only() -> None:
    x = np.full(60, 150.0)
    x[10] = 230.0
    x[20:23] = np.nan
    x[40:50] = np.nan
    y = clean_series(x)
    assert y[10] == 150.0
    assert not np.isnan(y[20:23]).any()
    assert np.isnan(y[40:50]).all()


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    result = evaluate(n_synthetic=80)
    data = result.to_json()
    json.dumps(data)
    return data


def test_every_rule_reaches_097_precision_and_recall(report: dict[str, object]) -> None:
    rules = report["rules"]
    assert isinstance(rules, dict)
    for rule in RULE_NAMES:
        figures = rules[rule]
        assert figures["required_excursions"] >= 20, (rule, figures)
        assert figures["precision"] >= 0.97, (rule, figures)
        assert figures["recall"] >= 0.97, (rule, figures)


def test_the_real_recordings_are_in_the_labelled_set(report: dict[str, object]) -> None:
    if not DEFAULT_RECORDINGS_DIR.is_dir():
        pytest.skip("shared recordings not present")
    names = {s["name"] for s in report["sessions"]}  # type: ignore[attr-defined]
    for setup in RECORDING_SETUPS:
        assert setup.file.split("__")[0] in names


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["alerts-eval", "--json", "--sessions", "4", "--recordings", "/nonexistent"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["rules"]) == set(RULE_NAMES)
    assert status in (0, 1)

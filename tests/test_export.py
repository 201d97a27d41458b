"""``livecoach export``: a stored session as FIT, Parquet and CSV, checked against the
summary the agents compute for it (``livecoach replay`` on a real Redis)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fitdecode
import pytest

from tests.ids import sid, uid
from tests.stored_session import interval_samples, store_session

pytestmark = pytest.mark.integration
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _cli(redis_url: str, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env |= {"LIVECOACH_REDIS_URL": redis_url, "LIVECOACH_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _np(powers: list[float]) -> float:
    """DOMAIN.md: 30 s rolling mean (partial at first), 4th power, mean, 4th root."""
    rolled = [sum(powers[max(0, i - 29) : i + 1]) / len(powers[max(0, i - 29) : i + 1])
              for i in range(len(powers))]  # fmt: skip
    return float(sum(p**4 for p in rolled) / len(rolled)) ** 0.25


@pytest.fixture
def session(redis_url: str, database_url: str) -> tuple[str, dict[str, Any]]:
    """A stored session and the summary the agents compute for it."""
    samples = interval_samples(sid(77), time.time() - 7200)
    session_id = store_session(database_url, uid(70), samples)
    result = _cli(redis_url, database_url, "replay", "--json", session_id)
    assert result.returncode == 0, result.stderr[-2000:]
    summary: dict[str, Any] = json.loads(result.stdout)["sessions"][0]["replayed"]["summary"]
    assert summary["samples"] == len(samples)
    return session_id, summary


def test_fit_export_gives_the_sessions_means_and_np(
    session: tuple[str, dict[str, Any]], redis_url: str, database_url: str, tmp_path: Path
) -> None:
    session_id, summary = session
    path = tmp_path / "ride.fit"
    result = _cli(redis_url, database_url, "export", session_id, "-o", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    hr, power, fit_session = [], [], {}
    with fitdecode.FitReader(str(path)) as fit:
        for frame in fit:
            if not isinstance(frame, fitdecode.FitDataMessage):
                continue
            if frame.name == "record":
                hr.append(float(frame.get_value("heart_rate")))
                power.append(float(frame.get_value("power")))
            elif frame.name == "session":
                fit_session = {f.name: f.value for f in frame.fields}
    assert len(hr) == summary["samples"]
    assert sum(hr) / len(hr) == pytest.approx(summary["mean_hr"], abs=1e-9)
    assert sum(power) / len(power) == pytest.approx(summary["mean_power"], abs=1e-9)
    assert _np(power) == pytest.approx(summary["np"], abs=0.5)
    assert fit_session["avg_heart_rate"] == round(summary["mean_hr"])
    assert fit_session["avg_power"] == round(summary["mean_power"])
    assert fit_session["normalized_power"] == round(summary["np"])


def test_parquet_and_csv_exports_have_typed_columns(
    session: tuple[str, dict[str, Any]], redis_url: str, database_url: str, tmp_path: Path
) -> None:
    session_id, summary = session
    parquet, table_csv = tmp_path / "ride.parquet", tmp_path / "ride.csv"
    for path in (parquet, table_csv):
        result = _cli(redis_url, database_url, "export", session_id, "-o", str(path))
        assert result.returncode == 0, result.stderr[-2000:]
    table = pq.read_table(parquet)
    types = {f.name: f.type for f in table.schema}
    assert types["t"] == pa.timestamp("ms", tz="UTC")
    assert types["heart_rate"] == pa.float64() and types["np"] == pa.float64()
    assert types["hr_zone"] == pa.string() and types["lap"] == pa.int32()
    assert table.num_rows == summary["samples"]
    hr = table.column("heart_rate").to_pylist()
    assert sum(hr) / len(hr) == pytest.approx(summary["mean_hr"], abs=1e-9)
    assert table.column("np").to_pylist()[-1] == pytest.approx(summary["np"], abs=1e-9)
    assert table.column("w_prime_bal_j").null_count == 0
    assert len(set(table.column("power_zone").to_pylist())) >= 2  # easy and hard blocks
    with table_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["samples"]
    assert rows[0]["t"].endswith("Z") and float(rows[-1]["np"]) == pytest.approx(summary["np"])


def test_export_refuses_an_unknown_session(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    result = _cli(redis_url, database_url, "export", sid(5), "-o", str(tmp_path / "x.fit"))
    assert result.returncode == 1
    assert "no live session" in result.stderr and "Traceback" not in result.stderr

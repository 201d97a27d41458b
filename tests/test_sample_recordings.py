"""Our own sample workout, in every format, reads and analyses to its known figures.

These run in any clone: the files are generated, not taken from the shared recordings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fitdecode
import pytest

from agents.summary import summarise
from pipeline.recordings import read_recording
from pipeline.sample_recordings import FIGURES, NAME, write_samples
from tests.conftest import make_data_dir

FORMATS = ("fit", "gpx", "tcx", "csv")


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


def _check_figures(summary: dict[str, object]) -> None:
    assert summary["samples"] == FIGURES.samples
    assert summary["duration_s"] == FIGURES.duration_s
    assert summary["distance_m"] == pytest.approx(FIGURES.distance_m, rel=1e-6)
    assert summary["mean_hr"] == pytest.approx(FIGURES.mean_hr)
    assert summary["max_hr"] == FIGURES.max_hr
    assert summary["mean_power"] == pytest.approx(FIGURES.mean_power)
    assert summary["np"] == pytest.approx(FIGURES.np)
    assert summary["decoupling_pct"] == pytest.approx(FIGURES.decoupling_pct)


def test_known_figures_are_the_hand_worked_ones() -> None:
    # 30 min at 8 m/s, 140 then 147 bpm at 200 W: written out, not recomputed.
    assert (FIGURES.samples, FIGURES.distance_m, FIGURES.mean_hr) == (1800, 14392.0, 143.5)
    assert round(FIGURES.decoupling_pct, 2) == 4.76


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_to_the_known_figures(samples_dir: Path, fmt: str) -> None:
    recording = read_recording(samples_dir / f"{NAME}.{fmt}")
    assert not recording.dropped
    first = recording.samples[0]
    assert (first.heart_rate, first.power_w, first.cadence) == (140, 200, 90)
    _check_figures(summarise(recording.samples))


def test_fit_file_passes_the_crc_check(samples_dir: Path) -> None:
    with fitdecode.FitReader(
        str(samples_dir / f"{NAME}.fit"), check_crc=fitdecode.CrcCheck.RAISE
    ) as reader:
        records = [f for f in reader if isinstance(f, fitdecode.FitDataMessage)]
    assert [f.name for f in records].count("record") == FIGURES.samples
    assert records[0].name == "file_id"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    cwd = env.pop("CWD", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env={**base, **env},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=cwd,
    )  # fmt: skip


def test_samples_command_writes_the_four_files(tmp_path: Path) -> None:
    result = _cli("samples", str(tmp_path / "rides"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "rides").iterdir()) == sorted(
        f"{NAME}.{fmt}" for fmt in FORMATS
    )
    assert "decoupling_pct 4.7619" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["fit", "gpx"])
def test_analyze_gives_the_known_figures(samples_dir: Path, redis_url: str, fmt: str) -> None:
    data_dir = make_data_dir()
    result = _cli(
        "analyze", "--json", str(samples_dir / f"{NAME}.{fmt}"),
        LIVECOACH_REDIS_URL=redis_url, LIVECOACH_DATA_DIR=str(data_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    _check_figures(json.loads(result.stdout))
    # The run's working folders are gone; nothing else was left in the data folder.
    assert [p.name for p in data_dir.iterdir()] == ["analyze"]
    assert list((data_dir / "analyze").iterdir()) == []


@pytest.mark.integration
def test_analyze_with_its_own_redis_cleans_up_in_an_unrelated_folder(samples_dir: Path) -> None:
    data_dir = make_data_dir()
    cwd = make_data_dir("livecoach-cwd-")
    result = _cli(
        "analyze", "--json", str(samples_dir / f"{NAME}.csv"),
        LIVECOACH_DATA_DIR=str(data_dir), CWD=str(cwd),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["samples"] == FIGURES.samples
    assert list(cwd.iterdir()) == []
    assert list((data_dir / "analyze").iterdir()) == []

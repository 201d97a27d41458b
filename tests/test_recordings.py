"""Recordings parse into samples, and our figures match the reference ones.

The reference figures are those of ``data/recordings/LICENSES.txt`` (per sample: mean
HR and power over the samples that carry them; NP over a 30-sample rolling mean from
the first sample; decoupling over samples with HR and output, split by index). The
recordings are read in place, never copied into the repository.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.summary import summarise
from pipeline.recordings import (
    CSV_RELATIVE_EPOCH_S,
    RecordingError,
    read_recording,
    shared_recordings_dir,
)
from tests.ids import uid

RECORDINGS = shared_recordings_dir()

# file: (mean HR, max HR, mean power, NP, decoupling %), from LICENSES.txt.
REFERENCE = {
    "ride_2x20_intervals_power_hr__Edge810-Vector-2013-08-16-15-35-10.fit": (
        153.9,
        176,
        275.5,
        301,
        5.2,
    ),
    "indoor_2x10_intervals_power_hr__sample-activity-indoor-trainer.fit": (
        147.7,
        176,
        201.4,
        227,
        11.2,
    ),
    "run_power_hr_drift_constant_power__developer-types-sample.fit": (130.8, 146, 218.7, 220, 5.8),
    "ride_hill_repeats_power_hr__4078723797.fit": (164.7, 190, 219.1, 267, 11.4),
    "ride_hill_repeats_power_hr_gpxext__4078723797_strava.gpx": (164.7, 190, 219.1, 267, 11.4),
    "ride_long_6h_power_hr__2019-02-17-062644-ELEMNT-297E-195-0.fit": (
        124.2,
        170,
        102.6,
        153,
        11.6,
    ),
    "run_steady_hr_drift_tcx__11km.tcx": (144.6, 163, None, None, 0.7),
}
SAMPLES = {
    "ride_2x20_intervals_power_hr__Edge810-Vector-2013-08-16-15-35-10.fit": 4700,
    "indoor_2x10_intervals_power_hr__sample-activity-indoor-trainer.fit": 2263,
    "run_power_hr_drift_constant_power__developer-types-sample.fit": 3424,
    "ride_hill_repeats_power_hr__4078723797.fit": 8357,
    "ride_hill_repeats_power_hr_gpxext__4078723797_strava.gpx": 8357,
    "ride_long_6h_power_hr__2019-02-17-062644-ELEMNT-297E-195-0.fit": 13471,
    "run_steady_hr_drift_tcx__11km.tcx": 1599,
}

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"{RECORDINGS} not present")


def test_every_recording_has_a_reference() -> None:
    on_disk = {p.name for p in RECORDINGS.iterdir() if p.suffix in (".fit", ".gpx", ".tcx")}
    assert on_disk == set(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_figures_match_reference(name: str) -> None:
    mean_hr, max_hr, mean_power, np_w, decoupling = REFERENCE[name]
    recording = read_recording(RECORDINGS / name)
    assert len(recording.samples) == SAMPLES[name]
    summary = summarise(recording.samples)
    assert summary["samples"] == SAMPLES[name]
    assert round(summary["mean_hr"], 1) == mean_hr
    assert summary["max_hr"] == max_hr
    if mean_power is None:
        assert summary["mean_power"] is None
        assert summary["np"] is None
    else:
        assert round(summary["mean_power"], 1) == mean_power
        assert abs(summary["np"] - np_w) <= 1.0
        assert round(summary["np"]) == np_w  # the reference is rounded to the watt
    assert abs(summary["decoupling_pct"] - decoupling) <= 0.5
    assert round(summary["decoupling_pct"], 1) == decoupling


def test_fit_parses_an_hour_well_under_a_second() -> None:
    path = RECORDINGS / "run_power_hr_drift_constant_power__developer-types-sample.fit"
    started = time.perf_counter()
    recording = read_recording(path)
    elapsed = time.perf_counter() - started
    assert len(recording.samples) == 3424
    assert elapsed < 0.8, f"parsing 3,424 FIT records took {elapsed:.2f} s"


def test_gpx_reads_extensions() -> None:
    recording = read_recording(
        RECORDINGS / "ride_hill_repeats_power_hr_gpxext__4078723797_strava.gpx"
    )
    first = recording.samples[0]
    assert (first.heart_rate, first.power_w, first.cadence) == (111, 0, 0)
    assert recording.samples[-1].distance_m is not None


def test_tcx_reads_speed_and_hr() -> None:
    recording = read_recording(RECORDINGS / "run_steady_hr_drift_tcx__11km.tcx")
    assert recording.samples[3].speed_m_s == pytest.approx(2.262762)
    assert recording.samples[-1].heart_rate == 163
    assert recording.samples[-1].distance_m == pytest.approx(11035.920898)


def test_csv_any_subset_relative_time(tmp_path: Path) -> None:
    path = tmp_path / "ride.csv"
    path.write_text("t,heart_rate,power\n0,100,200\n1,,210\n2,102,\n3,300,220\n")
    recording = read_recording(path, session_id=uid(7))
    assert [s.t - CSV_RELATIVE_EPOCH_S for s in recording.samples] == [0, 1, 2, 3]
    assert [s.heart_rate for s in recording.samples] == [100, None, 102, None]
    assert [s.power_w for s in recording.samples] == [200, 210, None, 220]
    assert recording.samples[0].session_id == uid(7)
    # The heart rate of 300 is a glitch: dropped from its record, counted, record kept.
    assert recording.dropped["heart_rate"] == 1


def test_csv_iso_times(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("t,speed,distance\n2026-01-01T00:00:00Z,3.0,0\n2026-01-01T00:00:01Z,3.1,3\n")
    recording = read_recording(path)
    assert recording.samples[1].t == CSV_RELATIVE_EPOCH_S + 1
    assert recording.samples[1].speed_m_s == 3.1


def test_csv_unknown_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("t,hr\n0,100\n")
    with pytest.raises(RecordingError, match=r"unknown CSV column\(s\) \['hr'\]"):
        read_recording(path)


def test_csv_without_time(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("heart_rate\n100\n")
    with pytest.raises(RecordingError, match="no 't' column"):
        read_recording(path)


@pytest.mark.parametrize("suffix", ["fit", "gpx", "tcx"])
def test_unreadable_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garbage.{suffix}"
    path.write_bytes(b"this is not a workout\x00\x01")
    with pytest.raises(RecordingError, match=f"garbage.{suffix}: not a readable {suffix.upper()}"):
        read_recording(path)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file"):
        read_recording(tmp_path / "nope.fit")
    with pytest.raises(RecordingError, match="unknown recording format 'xlsx'"):
        read_recording(tmp_path / "ride.xlsx")

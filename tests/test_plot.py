"""``livecoach plot`` / ``analyze --plot``: a PNG per shared recording with its four
panels drawn (each panel's line is in the image, inside that panel's box)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.analyze import SESSION_ID, USER_ID, recording_records
from agents.replay import Recorded
from agents.replay_series import series
from pipeline.recordings import read_recording
from tests.test_recordings import RECORDINGS, REFERENCE

plt_image = pytest.importorskip("matplotlib.image")
pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"{RECORDINGS} not present")


def _line_pixels(image: object, box: tuple[int, int, int, int], colour: str) -> int:
    """Pixels of ``colour`` (within a small tolerance) inside ``box``."""
    import numpy as np

    x0, y0, x1, y1 = box
    region = np.asarray(image)[y0:y1, x0:x1, :3]
    target = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(region - target).max(axis=2) < 0.08).sum())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_every_panel_with_data_is_drawn(name: str, tmp_path: Path) -> None:
    from pipeline.plot import plot_session

    recording = read_recording(RECORDINGS / name)
    session = Recorded(str(SESSION_ID), str(USER_ID), recording_records(recording.samples))
    table = series(session)
    path = tmp_path / "plot.png"
    plotted = plot_session(path, table.rows, zone_bounds=table.zone_bounds, laps=table.laps,
                           alerts=table.alerts, title=name)  # fmt: skip
    assert [title for title, _ in plotted.panels] == ["Heart rate", "Power", "Pace", "W' balance"]
    counts = dict(plotted.panels)
    assert counts["Heart rate"] > 0.9 * len(table.rows)  # every recording has heart rate
    has_power = REFERENCE[name][2] is not None
    assert (counts["Power"] > 0) == has_power and (counts["W' balance"] > 0) == has_power
    image = plt_image.imread(path)
    for (title, n), box, colour in zip(plotted.panels, plotted.boxes, plotted.colours, strict=True):
        drawn = _line_pixels(image, box, colour)
        if n:
            assert drawn > 300, f"{title}: its line is not in its panel ({drawn} pixels)"
        else:
            assert drawn == 0, title
    others = [b for b in plotted.boxes if b != plotted.boxes[0]]
    assert all(_line_pixels(image, b, plotted.colours[0]) < 50 for b in others)


@pytest.mark.integration
def test_plot_and_analyze_plot_write_a_png(tmp_path: Path, redis_url: str) -> None:
    name = str(RECORDINGS / "indoor_2x10_intervals_power_hr__sample-activity-indoor-trainer.fit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env["LIVECOACH_REDIS_URL"] = redis_url
    for args in (["plot", name, "-o"], ["analyze", name, "--plot"]):
        out = tmp_path / f"{args[0]}.png"
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args, str(out)],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "Heart rate" in result.stderr and "laps" in result.stderr

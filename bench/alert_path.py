"""The alert path's cost inside the live agent, without Redis or the machine's other load.

``python -m bench.alert_path [SESSIONS] [SECONDS]`` feeds ``Processor.process`` one-
sample records of SESSIONS interleaved sessions (default 1,000 x 300 s, the default
alert settings: an HR ceiling and the fatigue rules; heart rate, power, cadence at
1 Hz, as ``livecoach bench pipeline`` sends) twice, alerts on and off, and prints the
per-record p50, p99 and mean of each and the differences. It complements the pipeline
benchmark, whose p99 on a shared machine moves by hundreds of milliseconds between
runs.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import uuid
from typing import Any

from agents.processing import Processor

T0 = 1_767_261_600.0


def _run(alerts: bool, sessions: int, seconds: int) -> list[float]:
    processor = Processor(alerts=alerts)
    states: dict[str, Any] = {}
    # Session and user ids as the samples topic carries them: UUID text.
    for sid in (str(uuid.UUID(int=n)) for n in range(1, sessions + 1)):
        start = {
            "kind": "control", "session_id": sid, "user_id": sid, "ingest_ms": 0,
            "action": "start", "at_ms": int(T0 * 1000), "payload": {},
        }  # fmt: skip
        states[sid] = processor.process(None, start).state
    times: list[float] = []
    gc.collect()
    for k in range(seconds):
        for n, sid in enumerate(states, 1):
            record = {
                "kind": "samples", "session_id": sid, "user_id": sid, "ingest_ms": 0,
                "samples": [{"session_id": sid, "t": T0 + 1 + k,
                             "heart_rate": 140.0 + (n + k) % 30,
                             "power_w": 200.0 + (n * 7 + k) % 80, "cadence": 88.0}],
            }  # fmt: skip
            started = time.perf_counter()
            states[sid] = processor.process(states[sid], record).state
            times.append(time.perf_counter() - started)
    return times


def _figures(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_us": 1e6 * ordered[len(ordered) // 2],
        "p99_us": 1e6 * ordered[int(len(ordered) * 0.99)],
        "mean_us": 1e6 * statistics.fmean(times),
    }


def main() -> int:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    on = _figures(_run(True, sessions, seconds))
    off = _figures(_run(False, sessions, seconds))
    for name, fig in (("alerts on", on), ("alerts off", off)):
        print(f"{name:>10}: " + ", ".join(f"{k} {v:.1f}" for k, v in fig.items()))
    print("alert path: " + ", ".join(f"{k} +{on[k] - off[k]:.1f}" for k in on))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The leaderboard agent's table writes for one group, before and after the split
(agents/group_state.py): ``python -m bench.group_state [athletes] [seconds]``.

Builds a race board of ``athletes`` members after ``seconds`` of 1 Hz inputs (track
points every 5 s, as the live agent sends them), then times Faust's JSON codec on what
one write serialises: the whole board (one ``group-boards`` value, as before) and the
header and a member row (the split). Median of 20 timings each, in this process.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from faust.serializers import codecs

from agents import leaderboard as lb
from agents.group_state import BoardStore
from agents.write_behind import Hold


def _board(athletes: int, seconds: int) -> tuple[BoardStore, dict[bytes, Any], dict[bytes, Any]]:
    headers: dict[bytes, Any] = {}
    members: dict[bytes, Any] = {}
    store = BoardStore(headers, members, every_s=3.0)
    group = "00000000-0000-0000-0000-000000000001"
    key = group.encode()

    class _Event:
        def ack(self) -> bool:
            return True

    for second in range(1, seconds + 1):
        hold = Hold(_Event())
        for a in range(athletes):
            speed = 6.0 + (a * 37 % 100) / 25.0
            record = {"kind": "input", "group_id": group, "athlete_id": f"athlete-{a:04d}",
                      "session_id": f"session-{a:04d}", "ingest_ms": second * 1000,
                      "status": "active", "t": float(second), "samples": second,
                      "distance_m": speed * second, "elapsed_s": float(second),
                      "moving_s": float(second), "np_w": 200.0, "w_per_kg": 3.0,
                      "alerts_open": 0}  # fmt: skip
            if second % 5 == 0:
                record["track"] = [[float(second), speed * second]]
            board, _ = store.checkout(key, group)
            lb.apply(board, record)
            store.checkin(key, board, record, hold)
        hold.release()
    lb.emit(board, 0.0, full=True)
    store.headers.write_all()
    store.members.write_all()
    return store, headers, members


def _ms(value: Any) -> float:
    codec = codecs.get_codec("json")
    times = []
    for _ in range(20):
        started = time.perf_counter()
        codec.dumps(value)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def main(athletes: int = 500, seconds: int = 600) -> dict[str, Any]:
    store, headers, members = _board(athletes, seconds)
    board = next(iter(store.working.values()))[1]
    header = next(iter(headers.values()))
    row = max(members.values(), key=lambda m: len(json.dumps(m)))
    codec = codecs.get_codec("json")
    return {
        "athletes": athletes,
        "seconds": seconds,
        "whole_board_bytes": len(codec.dumps(board)),
        "whole_board_ms": _ms(board),
        "header_bytes": len(codec.dumps(header)),
        "header_ms": _ms(header),
        "member_row_bytes_max": len(codec.dumps(row)),
        "member_row_ms": _ms(row),
    }


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:3]))))

"""A group's live leaderboard, without Faust: member inputs in, standings and boards out.

The leaderboard agent (:mod:`agents.app`) keeps one board per group, a JSON-able dict
(the value of its changelog-backed table), and calls :func:`apply` for every record of
the ``groups`` topic and :func:`emit` when :func:`due` says a board is due. The logic
is here so that it is tested directly and replays run the same code.

Ranking (docs/groups.md):

- a race: finished members first, by ``finish_s``; then by distance, farthest first.
  ``gap_m`` is the leader's distance minus the member's; ``gap_s`` how long after the
  leader the member reached the distance they are at, each on their own session clock
  (``elapsed_s``, pauses excluded: a member who joined late races the leader's
  recorded pace, as in a time trial). Finished members' ``gap_s`` is the difference
  of finish times; their ``distance_m`` is the race's.
- a class: by ``pct_target`` (% of the targeted time in target), then
  ``time_in_zone_s``, highest first; no gaps.
- ties (equal published figures) share a rank, competition style (1, 2, 2, 4); tied
  rows are listed by athlete id. A member with nothing to rank by (no sample; in a
  class, no targeted second) is ``no_data``, unranked, listed last.

``gap_s`` needs where the leader was when: each member keeps a distance-over-time
history of at most :data:`HISTORY_MAX_POINTS` points, from the track points its inputs
carry (agents/group_member.py: chosen by sample time, so a replay keeps the same), one
every :data:`HISTORY_STEP_S` of session time at first; when it is full every other
point is dropped and the step doubles (a 2 h race keeps a point a minute, linearly
interpolated between).

Boards: at most one per group every :data:`EMIT_INTERVAL_S` of wall time; a delta
holds only the rows whose published figures changed (figures are rounded as
published, so a change nobody could see sends nothing); a full board every
:data:`FULL_EVERY_S`, on :func:`request_full` (a group created, a board recovered
after a restart) and when the group finishes (``final``). Members stay on the board
once there (``left``, ``stopped``) unless the coach removes them (a ``removed``
control): the next delta lists them in ``removed`` and no later board has them.

A removed member's session may still be sending inputs (the ones it made before its
``group`` control with ``left`` reached the live agent, and that last ``left`` input):
when the edge says so (``payload.leaving``), the session is remembered in the board's
``gone`` until its ``left`` (or ``stopped``) input arrives, and its inputs till then are
dropped; a later input of the same session is a new membership (re-invited, joined).
"""

from __future__ import annotations

import bisect
from typing import Any

from pipeline.constants import group_channel

#: Version of a board's JSON.
BOARD_VERSION = 1
#: Least wall time between two boards of one group.
EMIT_INTERVAL_S = 1.0
#: A full board at least this often; the boards between are deltas.
FULL_EVERY_S = 30.0
#: A member's distance-over-time history: the first step and the most points.
HISTORY_STEP_S = 5.0
HISTORY_MAX_POINTS = 128

Board = dict[str, Any]
Row = dict[str, Any]
Event = dict[str, Any]

#: The published fields of a row, and their rounding (None: not rounded).
ROW_FIELDS: tuple[tuple[str, int | None], ...] = (
    ("athlete_id", None),
    ("session_id", None),
    ("rank", None),
    ("status", None),
    ("distance_m", 1),
    ("elapsed_s", 1),
    ("gap_m", 1),
    ("gap_s", 1),
    ("finish_s", 1),
    ("pct_target", 1),
    ("time_in_zone_s", 1),
    ("w_per_kg", 2),
    ("np_w", 1),
    ("alerts_open", None),
)


def new_board(group_id: str, group: dict[str, Any] | None = None) -> Board:
    """The board of a group before any record (``group``: its ``payload.group``)."""
    return {
        "v": BOARD_VERSION,
        "id": group_id,
        "group": group,
        "members": {},
        "seq": 0,
        "pub": {},
        "ingest_ms": 0,
        "t": None,
        "finished": False,
        #: Athlete id -> the session of a removed member whose last input is to come.
        "gone": {},
        "changed": False,
        "full_due": True,
        "last_emit_s": None,
        "last_full_s": None,
    }


def kind_of(board: Board) -> str:
    group = board.get("group") or {}
    return "class" if group.get("kind") == "class" else "race"


def apply(board: Board, record: dict[str, Any]) -> bool:
    """Fold one ``groups`` record into ``board``; True when it finished the group."""
    if record.get("kind") == "control":
        action = record.get("action")
        payload = record.get("payload") or {}
        if isinstance(payload.get("group"), dict):
            board["group"] = payload["group"]
        if action == "finished":
            board["finished"] = True
            return True
        if action == "removed":
            if not board["finished"]:
                _remove(board, payload)
            return False
        board["full_due"] = True  # created: everyone gets the board from the start
        return False
    if board["finished"]:
        return False  # the final board is final
    if board["group"] is None:  # no ``created`` seen: the group as its members have it
        board["group"] = {"id": board["id"], "kind": record.get("group_kind", "race"),
                          "distance_m": record.get("race_distance_m")}  # fmt: skip
    _apply_input(board, record)
    return False


def _remove(board: Board, payload: dict[str, Any]) -> None:
    athlete = str(payload.get("athlete_id"))
    member = board["members"].pop(athlete, None)
    session = payload.get("session_id")
    if member is not None:
        session = session or member["in"]["session_id"]
    if payload.get("leaving") and session is not None:
        board.setdefault("gone", {})[athlete] = str(session)
    board["changed"] = True


def _apply_input(board: Board, record: dict[str, Any]) -> None:
    athlete = str(record["athlete_id"])
    session = str(record["session_id"])
    gone = board.get("gone")
    if gone and gone.get(athlete) == session:
        # A removed member's input made before its session heard it left: dropped. Its
        # last (``left``/``stopped``) ends that membership.
        if record.get("status") in ("left", "stopped"):
            del gone[athlete]
        return
    members = board["members"]
    member = members.get(athlete)
    if member is None or member["in"]["session_id"] != session:
        # A member's first session here, or a new one: its figures start again.
        member = members[athlete] = {"in": None, "h": [HISTORY_STEP_S, [], []]}
    old = member["in"]
    t = record.get("t")
    if old is not None and t is not None and old.get("t") is not None and t < old["t"]:
        return  # an older snapshot (read again after a restart): keep the newer
    dropped = ("kind", "group_id", "track", "group_kind", "race_distance_m")
    member["in"] = {k: v for k, v in record.items() if k not in dropped}
    member["in"]["athlete_id"] = athlete
    member["in"]["session_id"] = session
    for elapsed_s, distance_m in record.get("track") or ():
        _remember(member["h"], elapsed_s, distance_m)
    board["ingest_ms"] = max(board["ingest_ms"], int(record.get("ingest_ms") or 0))
    if t is not None and (board["t"] is None or t > board["t"]):
        board["t"] = t
    board["changed"] = True


def _remember(history: list[Any], elapsed_s: float, distance_m: float) -> None:
    step, times, distances = history
    if times and elapsed_s - times[-1] < step:
        return
    times.append(round(elapsed_s, 1))
    distances.append(round(distance_m, 1))
    if len(times) > HISTORY_MAX_POINTS:
        history[0] = step * 2
        history[1] = times[::2]
        history[2] = distances[::2]


def curve(member: dict[str, Any]) -> tuple[list[float], list[float]]:
    """A member's session times and distances: 0 m at 0 s, its history, its latest."""
    _, times, distances = member["h"]
    latest = member["in"]
    times = [0.0, *times]
    distances = [0.0, *distances]
    elapsed, distance = latest.get("elapsed_s"), latest.get("distance_m")
    if elapsed is not None and distance is not None and elapsed > times[-1]:
        times.append(elapsed)
        distances.append(distance)
    return times, distances


def time_at(times: list[float], distances: list[float], distance_m: float) -> float:
    """When a :func:`curve` first reached ``distance_m``, interpolated linearly."""
    i = bisect.bisect_left(distances, distance_m)
    if i >= len(distances):
        return float(times[-1])
    if i == 0:
        return float(times[0])
    d0, d1 = distances[i - 1], distances[i]
    t0, t1 = times[i - 1], times[i]
    if d1 <= d0:
        return float(t1)
    return float(t0 + (t1 - t0) * (distance_m - d0) / (d1 - d0))


def _rounded(value: Any, digits: int | None) -> Any:
    if digits is None or value is None:
        return value
    return round(float(value), digits)


def standings(board: Board) -> list[Row]:
    """Every member's row, ranked, unranked ones last."""
    kind = kind_of(board)
    ranked: list[tuple[tuple[Any, ...], Row]] = []
    unranked: list[Row] = []
    members = board["members"]
    for athlete in sorted(members):
        figures = members[athlete]["in"]
        row: Row = {
            name: _rounded(figures.get(name), digits)
            for name, digits in ROW_FIELDS
            if name not in ("rank", "gap_m", "gap_s")
        }
        row["alerts_open"] = int(figures.get("alerts_open") or 0)
        row["rank"] = row["gap_m"] = row["gap_s"] = None
        if row["finish_s"] is not None:
            row["status"] = "finished"
            finish_m = (board.get("group") or {}).get("distance_m")
            if isinstance(finish_m, int | float) and row["distance_m"] is not None:
                row["distance_m"] = round(min(row["distance_m"], float(finish_m)), 1)
        if kind == "race":
            row["pct_target"] = row["time_in_zone_s"] = None
            has_data = bool(figures.get("samples")) and row["distance_m"] is not None
            key: tuple[Any, ...] = ()
            if row["finish_s"] is not None:
                key = (0, row["finish_s"])
            elif has_data:
                key = (1, -row["distance_m"])
            has_data = has_data or row["finish_s"] is not None
        else:
            row["finish_s"] = None
            has_data = bool(figures.get("samples")) and row["pct_target"] is not None
            key = (-row["pct_target"], -(row["time_in_zone_s"] or 0.0)) if has_data else ()
        if has_data:
            ranked.append((key, row))
        else:
            row["status"] = "no_data"
            unranked.append(row)
    ranked.sort(key=lambda item: item[0])  # stable: ties stay by athlete id
    rows: list[Row] = []
    previous: tuple[Any, ...] | None = None
    for position, (key, row) in enumerate(ranked, start=1):
        row["rank"] = rows[-1]["rank"] if key == previous else position
        previous = key
        rows.append(row)
    if kind == "race" and rows:
        _gaps(board, rows)
    return [{name: row[name] for name, _ in ROW_FIELDS} for row in rows + unranked]


def _gaps(board: Board, rows: list[Row]) -> None:
    leader = rows[0]
    times, distances = curve(board["members"][leader["athlete_id"]])
    for row in rows:
        row["gap_m"] = round(max(0.0, leader["distance_m"] - row["distance_m"]), 1)
        if row["finish_s"] is not None and leader["finish_s"] is not None:
            row["gap_s"] = round(row["finish_s"] - leader["finish_s"], 1)
        elif row["elapsed_s"] is not None:
            row["gap_s"] = round(row["elapsed_s"] - time_at(times, distances, row["distance_m"]), 1)


def request_full(board: Board) -> None:
    """The next board is a full one."""
    board["full_due"] = True


def due(board: Board, now_s: float) -> str | None:
    """``"full"``, ``"delta"`` or None: what to publish for ``board`` at ``now_s``."""
    if board["finished"]:
        return None
    last = board["last_emit_s"]
    if last is not None and now_s - last < EMIT_INTERVAL_S:
        return None
    if not board["members"] and not board["pub"]:
        return None  # nothing to show, and nothing shown to take back
    last_full = board["last_full_s"]
    if board["full_due"] or last_full is None or now_s - last_full >= FULL_EVERY_S:
        return "full"
    return "delta" if board["changed"] else None


def emit(
    board: Board, now_s: float, *, full: bool = False, final: bool = False
) -> tuple[Event | None, Event]:
    """The next board of ``board`` (None: a delta with no row changed) and the full
    board as of it (what the agent stores at ``group_board_key``)."""
    rows = standings(board)
    published = board["pub"]
    full = full or final
    board["changed"] = False
    changed = rows if full else [r for r in rows if published.get(r["athlete_id"]) != r]
    current = {row["athlete_id"]: row for row in rows}
    removed = [] if full else sorted(set(published) - set(current))
    event: Event | None = None
    if changed or full or removed:
        board["seq"] += 1
        board["pub"] = current
        board["last_emit_s"] = now_s
        if full:
            board["full_due"] = False
            board["last_full_s"] = now_s
        event = _event(board, changed, full=full, final=final, removed=removed)
    return event, _event(board, rows, full=True, final=final)


def _event(
    board: Board, rows: list[Row], *, full: bool, final: bool, removed: list[str] | None = None
) -> Event:
    group_id = board["id"]
    t = board["t"]
    return {
        "type": "leaderboard",
        "group_id": group_id,
        "kind": kind_of(board),
        "seq": board["seq"],
        "timestamp": t if t is not None else board["ingest_ms"] / 1000.0,
        "full": full,
        "final": final,
        "ingest_ms": board["ingest_ms"],
        "rows": rows,
        "removed": removed or [],
        "channels": [group_channel(group_id)],
    }

"""web.boards without a socket: merging leaderboards, and one socket's pacing (a fake
queue stands in for the connection's; the real one is tests/web/test_group_channel.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from web.boards import BoardPacer, merge_boards
from web.standings import StandingsMemo


def row(athlete: str, rank: int | None, distance_m: float) -> dict[str, Any]:
    return {"athlete_id": athlete, "rank": rank, "distance_m": distance_m}


def delta(seq: int, *rows: dict[str, Any], removed: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "leaderboard", "group_id": "g", "seq": seq, "full": False,
            "rows": list(rows), "removed": list(removed)}  # fmt: skip


def test_a_delta_on_a_full_board_is_the_next_full_board() -> None:
    full = {**delta(4, row("a", 1, 10), row("b", 2, 9), row("c", None, 0)), "full": True}
    newer = delta(5, row("b", 1, 12), row("a", 2, 11), removed=("c",))
    merged = merge_boards(full, newer)
    assert merged["full"] is True and merged["seq"] == 5 and merged["removed"] == []
    assert [(r["athlete_id"], r["distance_m"]) for r in merged["rows"]] == [("b", 12), ("a", 11)]
    assert full["rows"][0] == row("a", 1, 10)  # inputs untouched: every socket shares them


def test_two_deltas_are_one_delta_from_the_first() -> None:
    merged = merge_boards(delta(6, row("a", 1, 1), removed=("x",)), delta(7, row("x", 3, 0)))
    assert merged["seq"] == 7 and merged["from_seq"] == 6 and merged["full"] is False
    assert merged["removed"] == [] and {r["athlete_id"] for r in merged["rows"]} == {"a", "x"}
    again = merge_boards(merged, delta(8, removed=("a",)))
    assert again["from_seq"] == 6 and again["removed"] == ["a"]
    assert [r["athlete_id"] for r in again["rows"]] == ["x"]
    # A full board replaces whatever was pending.
    full = {**delta(9, row("z", 1, 5)), "full": True}
    assert merge_boards(again, full) is full


@dataclass
class Item:
    frame: str
    alive: bool = True
    taken: bool = False
    written: bool = False
    written_at: float | None = None
    ingest_ms: int | None = None
    group: str | None = None
    final: bool = False
    read_at: float | None = None


def test_pacing_holds_merges_and_merges_into_an_unsent_frame() -> None:
    async def run() -> None:
        sent: list[Item] = []

        def send(frame: str, ingest_ms: int | None) -> Item:
            sent.append(Item(frame, ingest_ms=ingest_ms))
            return sent[-1]

        pacer = BoardPacer(send, interval_s=0.2)
        pacer.offer("g", delta(1, row("a", 1, 1)), "shared-frame", 1, 10.0)
        assert [i.frame for i in sent] == ["shared-frame"]  # at once, the shared frame
        # Stamped for the edge's metrics: its group, and the newest board it holds.
        assert (sent[0].group, sent[0].final, sent[0].read_at) == ("g", False, 10.0)
        # Not taken by the writer yet (a slow socket): merged into that frame in place.
        pacer.offer("g", {**delta(2, row("b", 2, 1)), "final": True}, None, 2, 11.0)
        assert len(sent) == 1 and orjson.loads(sent[0].frame)["from_seq"] == 1
        assert (sent[0].ingest_ms, sent[0].read_at, sent[0].final) == (2, 11.0, True)
        sent[0].taken = sent[0].written = True
        # Within the interval: held, merged, sent once when it is over.
        pacer.offer("g", delta(3, row("a", 1, 2)), None, 3)
        pacer.offer("g", delta(4, row("b", 1, 3)), None, 4)
        pacer.offer("g", delta(2, row("b", 9, 9)), None, 4)  # old: dropped
        assert len(sent) == 1
        await asyncio.sleep(0.3)
        assert len(sent) == 2
        second = orjson.loads(sent[1].frame)
        assert (second["from_seq"], second["seq"]) == (3, 4)
        assert (sent[1].ingest_ms, sent[1].read_at, sent[1].final) == (4, None, False)
        assert {r["athlete_id"]: r["distance_m"] for r in second["rows"]} == {"a": 2, "b": 3}
        # Subscribing: held until the stored board, then one full board with the newer.
        pacer.start_snapshot("h")
        pacer.offer("h", {**delta(11, row("a", 1, 7)), "group_id": "h"}, None, 5)
        assert len(sent) == 2
        stored = {**delta(10, row("a", 2, 6), row("b", 1, 6.5)), "group_id": "h", "full": True}
        pacer.snapshot("h", stored)
        third = orjson.loads(sent[2].frame)
        assert third["full"] is True and third["seq"] == 11
        assert [r["athlete_id"] for r in third["rows"]] == ["a", "b"]
        pacer.close()

    asyncio.run(run())


def test_member_sockets_share_the_standings_they_build_windows_from() -> None:
    async def run() -> None:
        memo = StandingsMemo()
        sent: dict[str, list[Item]] = {"a": [], "b": [], "c": []}

        def pacer_of(athlete: str) -> BoardPacer:
            def send(frame: str, ingest_ms: int | None) -> Item:
                sent[athlete].append(Item(frame, taken=True, written=True))
                return sent[athlete][-1]

            pacer = BoardPacer(send, interval_s=0.0, memo=memo)
            pacer.set_window("g", athlete)
            return pacer

        pacers = {athlete: pacer_of(athlete) for athlete in sent}
        rows = [row(x, i + 1, 100.0 - i) for i, x in enumerate("abcdefgh")]
        # Each socket read the stored board itself (a parse of its own): the same content.
        for pacer in pacers.values():
            pacer.start_snapshot("g")
            pacer.snapshot("g", orjson.loads(orjson.dumps({**delta(3, *rows), "full": True})))
        states = [p._groups["g"].standings for p in pacers.values()]
        assert states[0] is states[1] is states[2] and states[0].seq == 3
        # One delta object, as the fan-out hands it to every socket: applied once.
        moved = delta(4, row("h", 1, 101.0), *[row(x, i + 2, 100.0 - i) for i, x in
                                               enumerate("abcdefg")])  # fmt: skip
        for pacer in pacers.values():
            pacer.offer("g", moved, "shared", 4)
        after = [p._groups["g"].standings for p in pacers.values()]
        assert after[0] is after[1] is after[2] and after[0] is not states[0]
        assert after[0].seq == 4 and states[0].seq == 3  # the older one untouched
        windows = {x: orjson.loads(sent[x][-1].frame) for x in sent}
        assert [r["athlete_id"] for r in windows["c"]["rows"]] == ["h", "a", "b", "c", "d", "e"]
        assert [r["athlete_id"] for r in windows["a"]["rows"]] == ["h", "a", "b", "c"]
        assert windows["a"]["size"] == 8 and windows["a"]["seq"] == 4
        # A socket that is behind (seq 3 applied elsewhere) still gets the right board.
        late = pacer_of("c")
        late.offer("g", {**delta(3, *rows), "full": True}, None, 3)
        assert late._groups["g"].standings is states[0]
        late.offer("g", moved, None, 4)
        assert late._groups["g"].standings is after[0]
        for pacer in [*pacers.values(), late]:
            pacer.close()

    asyncio.run(run())

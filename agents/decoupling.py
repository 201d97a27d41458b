"""Live aerobic decoupling (Friel), exact, from running sums and a block store.

Decoupling compares efficiency (output per heartbeat) between the first and second
half of the samples seen so far, split by index: ``EF = mean(output) / mean(HR)``,
``decoupling % = 100 * (EF1 - EF2) / EF1`` (positive: HR drifted up for the same
output; under 5 % counts as coupled). Output is power, or speed on a run without a
power meter; only samples with both HR and the output count.

The midpoint moves as samples arrive, so the sums of the first half need the samples
between the midpoint and now. :class:`HalfSplitSums` keeps in its own (small,
JSON-able) state the running totals and the pairs of the block being filled. Each
full block of pairs, with the sums before it, is written once to a ``store`` (any
``MutableMapping``: a dict, or a Faust table with a changelog), read back when the
midpoint is in it, and deleted when the midpoint has left it. The figure is exact at
every sample; the state is at most one block, and the store holds about the second
half of the pairs, written once per block rather than once per sample.

The figure is asked for with every ``metrics_update`` (once a sample). The midpoint
stays in a stored block for 128 samples, so that block's running sums are kept in
memory (not in the state: they are rebuilt from the store after a restart, with the
same additions in the same order, so the figure does not depend on it). A figure is
then two lookups instead of a store read and two sums over up to 64 pairs.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from itertools import accumulate
from typing import Any

#: Pairs per stored block.
BLOCK = 64

BlockStore = MutableMapping[str, list[float]]


class HalfSplitSums:
    __slots__ = (
        "_first_block",
        "_running",
        "_tail",
        "_tail_start",
        "key",
        "n",
        "store",
        "sum_hr",
        "sum_out",
    )

    def __init__(self, key: str, store: BlockStore | None = None) -> None:
        #: Prefix of this instance's keys in ``store`` (session id and output name).
        self.key = key
        self.store: BlockStore = store if store is not None else {}
        self.n = 0
        self.sum_hr = 0.0
        self.sum_out = 0.0
        # The oldest block still in the store (the one holding the midpoint).
        self._first_block = 0
        # Sums before the block being filled, then its pairs: hr0, out0, hr1, out1, ...
        # A stored block has the same layout: [hr_before, out_before, hr0, out0, ...].
        self._tail_start: tuple[float, float] = (0.0, 0.0)
        self._tail: list[float] = []
        # A stored block's running sums: (index, sums before it, HR sums, output sums),
        # the k-th sums being those of its first k pairs.
        self._running: tuple[int, tuple[float, float], list[float], list[float]] | None = None

    def _block_key(self, index: int) -> str:
        return f"{self.key}/{index}"

    def add(self, hr: float, output: float) -> None:
        self.n += 1
        self.sum_hr += hr
        self.sum_out += output
        self._tail += (hr, output)
        if self.n % BLOCK:
            return
        self.store[self._block_key(self.n // BLOCK - 1)] = [*self._tail_start, *self._tail]
        self._tail_start = (self.sum_hr, self.sum_out)
        self._tail = []
        # The midpoint only moves forward: blocks wholly before it are never read again.
        midpoint_block = (self.n // 2) // BLOCK
        while self._first_block < midpoint_block:
            self.store.pop(self._block_key(self._first_block), None)
            self._first_block += 1

    def _prefix(self, m: int) -> tuple[float, float]:
        """Exact sums of the first ``m`` pairs."""
        block = m // BLOCK
        rest = m - block * BLOCK
        if block == self.n // BLOCK:
            (hr, out), pairs = self._tail_start, self._tail
            return hr + sum(pairs[0 : 2 * rest : 2]), out + sum(pairs[1 : 2 * rest : 2])
        running = self._running
        if running is None or running[0] != block:
            # Stored blocks never change: their running sums hold until the next block.
            stored = self.store[self._block_key(block)]
            running = self._running = (
                block,
                (stored[0], stored[1]),
                list(accumulate(stored[2::2], initial=0.0)),
                list(accumulate(stored[3::2], initial=0.0)),
            )
        (hr, out), hr_sums, out_sums = running[1], running[2], running[3]
        return hr + hr_sums[rest], out + out_sums[rest]

    def decoupling_pct(self) -> float | None:
        """Decoupling of the first ``n // 2`` pairs against the rest; None until defined."""
        if self.n < 2:
            return None
        hr1, out1 = self._prefix(self.n // 2)
        hr2, out2 = self.sum_hr - hr1, self.sum_out - out1
        if hr1 <= 0 or hr2 <= 0 or out1 <= 0:
            return None
        # Both halves' means share their own count, which cancels in output / HR.
        ef1 = out1 / hr1
        ef2 = out2 / hr2
        return 100.0 * (ef1 - ef2) / ef1

    def to_dict(self) -> dict[str, Any]:
        """The state without the store (the store persists itself)."""
        return {
            "key": self.key,
            "n": self.n,
            "hr": self.sum_hr,
            "out": self.sum_out,
            "first_block": self._first_block,
            "tail_start": list(self._tail_start),
            "tail": self._tail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], store: BlockStore | None = None) -> HalfSplitSums:
        sums = cls(str(data["key"]), store)
        sums.n = int(data["n"])
        sums.sum_hr = float(data["hr"])
        sums.sum_out = float(data["out"])
        sums._first_block = int(data["first_block"])
        hr, out = data["tail_start"]
        sums._tail_start = (float(hr), float(out))
        sums._tail = [float(x) for x in data["tail"]]
        return sums

"""Live aerobic decoupling (Friel), exact, from running sums and a block store.

Decoupling compares efficiency (output per heartbeat) between the first and second
half of the samples seen so far, split by index: ``EF = mean(output) / mean(HR)``,
``decoupling % = 100 * (EF1 - EF2) / EF1`` (positive: HR drifted up for the same
output; under 5 % counts as coupled). Output is power, or speed on a run without a
power meter; only samples with both HR and the output count.

The midpoint moves as samples arrive, so the sums of the first half need the samples
between the midpoint and now. :class:`HalfSplitSums` keeps in its own (small,
JSON-able) state the running totals, the prefix sums at every :data:`BLOCK` pairs from
the midpoint on, and the pairs of the block being filled. Each full block of pairs is
written once to a ``store`` (any ``MutableMapping``: a dict, or a Faust table with a
changelog), read back when the midpoint enters it, and deleted when the midpoint
leaves it. The figure is exact at every sample; the state is ``O(n / (2 * BLOCK))``
numbers plus one block, and the store holds the second half of the pairs, written
once per block rather than once per sample.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

#: Pairs per stored block.
BLOCK = 64

BlockStore = MutableMapping[str, list[float]]


class HalfSplitSums:
    __slots__ = ("_first_block", "_marks", "_tail", "key", "n", "store", "sum_hr", "sum_out")

    def __init__(self, key: str, store: BlockStore | None = None) -> None:
        #: Prefix of this instance's keys in ``store`` (session id and output name).
        self.key = key
        self.store: BlockStore = store if store is not None else {}
        self.n = 0
        self.sum_hr = 0.0
        self.sum_out = 0.0
        # Prefix sums (hr, out) after (first_block + j) * BLOCK pairs.
        self._first_block = 0
        self._marks: list[tuple[float, float]] = [(0.0, 0.0)]
        # hr0, out0, hr1, out1, ... of the block being filled.
        self._tail: list[float] = []

    def _block_key(self, index: int) -> str:
        return f"{self.key}/{index}"

    def add(self, hr: float, output: float) -> None:
        self.n += 1
        self.sum_hr += hr
        self.sum_out += output
        self._tail += (hr, output)
        if self.n % BLOCK:
            return
        self.store[self._block_key(self.n // BLOCK - 1)] = self._tail
        self._tail = []
        self._marks.append((self.sum_hr, self.sum_out))
        # The midpoint only moves forward: blocks wholly before it are never read again.
        midpoint_block = (self.n // 2) // BLOCK
        while self._first_block < midpoint_block:
            self.store.pop(self._block_key(self._first_block), None)
            del self._marks[0]
            self._first_block += 1

    def _prefix(self, m: int) -> tuple[float, float]:
        """Exact sums of the first ``m`` pairs."""
        block = m // BLOCK
        hr, out = self._marks[block - self._first_block]
        rest = m - block * BLOCK
        if rest:
            pairs = self._tail if block == self.n // BLOCK else self.store[self._block_key(block)]
            hr += sum(pairs[0 : 2 * rest : 2])
            out += sum(pairs[1 : 2 * rest : 2])
        return hr, out

    def decoupling_pct(self) -> float | None:
        """Decoupling of the first ``n // 2`` pairs against the rest; None until defined."""
        if self.n < 2:
            return None
        m = self.n // 2
        hr1, out1 = self._prefix(m)
        hr2, out2 = self.sum_hr - hr1, self.sum_out - out1
        if hr1 <= 0 or hr2 <= 0 or out1 <= 0:
            return None
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
            "marks": [list(mark) for mark in self._marks],
            "tail": self._tail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], store: BlockStore | None = None) -> HalfSplitSums:
        sums = cls(str(data["key"]), store)
        sums.n = int(data["n"])
        sums.sum_hr = float(data["hr"])
        sums.sum_out = float(data["out"])
        sums._first_block = int(data["first_block"])
        sums._marks = [(float(hr), float(out)) for hr, out in data["marks"]]
        sums._tail = [float(x) for x in data["tail"]]
        return sums

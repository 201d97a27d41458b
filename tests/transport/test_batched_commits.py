"""Commit offsets of batched reads acked out of order (the live agent's write-behind).

Drives the real consumer's bookkeeping (no server needed: nothing is started).
"""

from __future__ import annotations

from collections.abc import Iterator

import faust
import pytest
from faust.types import TP

from pipeline.transport.consumer import Consumer
from pipeline.transport.driver import read_in_batches

TOPIC = "events"
tp = TP(TOPIC, 0)


@pytest.fixture
def consumer() -> Iterator[Consumer]:
    app = faust.App("lc-commits", broker="redis://127.0.0.1:1/0", store="memory://")
    read_in_batches(app, TOPIC)
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    yield consumer


def _deliver(consumer: Consumer, first: int, last: int) -> None:
    """What _getmany records for a batch read of entries first..last."""
    consumer._batch_first.setdefault(tp, {})[last] = first


def _ack(consumer: Consumer, last: int) -> None:
    """What Faust's ack does for the batch's message (offset: its last entry)."""
    consumer._acked_index[tp].add(last)
    consumer._acked[tp].append(last)


def test_a_batch_acked_first_is_committed_with_its_entries(consumer: Consumer) -> None:
    _deliver(consumer, 0, 9)
    _ack(consumer, 9)
    assert consumer._new_offset(tp) == 10


def test_a_later_batch_acked_before_an_earlier_one_waits_for_it(consumer: Consumer) -> None:
    for first, last in [(0, 0), (1, 4), (5, 9)]:
        _deliver(consumer, first, last)
    _ack(consumer, 4)  # 0 is still held: nothing may be committed, not even 1..4
    _ack(consumer, 9)
    assert consumer._new_offset(tp) is None
    _ack(consumer, 0)
    assert consumer._new_offset(tp) == 10


def test_one_unacked_offset_after_a_commit_is_not_skipped(consumer: Consumer) -> None:
    consumer._committed_offset[tp] = 10
    _deliver(consumer, 10, 10)
    _deliver(consumer, 11, 15)
    _ack(consumer, 15)
    # Faust alone would commit 16 here (it tolerates one missing offset after a commit).
    assert consumer._new_offset(tp) is None
    _ack(consumer, 10)
    assert consumer._new_offset(tp) == 16


def test_a_seek_forgets_batches_read_before_it(consumer: Consumer) -> None:
    _deliver(consumer, 0, 9)
    consumer._set_position(tp, 0)
    assert tp not in consumer._batch_first

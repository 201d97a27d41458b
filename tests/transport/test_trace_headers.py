"""A batched read keeps each entry's ``traceparent`` header, aligned with its offset."""

from __future__ import annotations

from pipeline.transport.consumer import (
    BATCH_OFFSETS_HEADER,
    BATCH_TRACEPARENTS_HEADER,
    Record,
    _joined,
    batch_offsets,
    batch_traceparents,
)

PARENT_A = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PARENT_B = b"00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-01"


def _record(offset: int, traceparent: bytes | None) -> Record:
    headers = {"traceparent": traceparent} if traceparent else {}
    return Record(offset, b"k", b'{"n": %d}' % offset, headers, 1000 + offset)


def test_traceparents_of_a_batch_line_up_with_its_offsets() -> None:
    batch = [_record(5, PARENT_A), _record(6, None), _record(7, PARENT_B)]
    joined = _joined(batch)
    assert batch_offsets(joined.headers[BATCH_OFFSETS_HEADER]) == [5, 6, 7]
    parents = batch_traceparents(joined.headers[BATCH_TRACEPARENTS_HEADER], 3)
    assert parents == [PARENT_A, None, PARENT_B]


def test_an_untraced_batch_has_no_header_and_old_records_read_as_untraced() -> None:
    joined = _joined([_record(1, None), _record(2, None)])
    assert BATCH_TRACEPARENTS_HEADER not in joined.headers
    assert batch_traceparents(None, 2) == [None, None]
    # A header that does not match the batch (never written so) is ignored, not misread.
    assert batch_traceparents(PARENT_A, 2) == [None, None]

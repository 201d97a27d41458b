"""The pipeline benchmark builds its records by hand (pydantic's cost would load the
machine it measures): they must stay what the edge appends."""

from __future__ import annotations

from bench.pipeline import _record
from pipeline.records import SampleBatchRecord, samples_topic_record
from tests.ids import sid, uid


def test_bench_records_are_valid_samples_topic_records() -> None:
    raw = _record(sid(7), 1_767_261_600.0, samples_per_record=3)
    record = samples_topic_record.validate_json(raw)
    assert isinstance(record, SampleBatchRecord)
    assert record.session_id == uid(7) and len(record.samples) == 3
    assert record.model_dump_json().encode() == raw

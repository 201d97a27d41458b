"""Where a consumer resumes after Redis came back from older data (pure functions)."""

from __future__ import annotations

from pipeline.transport.epochs import first_reused, resume_offset


def test_first_reused_takes_the_runs_after_the_known_one() -> None:
    # Newest first: run C began appending at 80, B at 50, A at 0.
    epochs = [("C", 80), ("B", 50), ("A", 0)]
    assert first_reused(epochs, "B", "C") == 80
    assert first_reused(epochs, "A", "C") == 50  # two restarts since: the lower one
    assert first_reused(epochs, "C", "C") is None  # nothing newer


def test_first_reused_without_the_known_run_trusts_only_the_current_one() -> None:
    # The known run appended nothing here (or Redis lost its entry): only the current
    # run is surely newer; the older entries are not.
    assert first_reused([("C", 80), ("A", 0)], "B", "C") == 80
    assert first_reused([("A", 0)], "B", "C") is None


def test_resume_offset() -> None:
    assert resume_offset(100, 120, 80) == 80  # offsets 80-99 now hold new records
    assert resume_offset(100, 90, None) == 90  # the tail 90-99 was lost, nothing new
    assert resume_offset(70, 120, 80) == 70  # nothing read was lost

"""Idempotent appends: a producer id per producer instance, a batch sequence per partition.

Kafka's idempotent producer, for Redis. A reply lost on the way back (the connection
broke after Redis ran the append) makes redis-py's retry, or ours, send the same batch
again; without a check it would be appended twice, silently. Every producer instance
draws a random id, and numbers its batches per partition. The append script keeps, in a
hash beside the partition's stream (same hash slot, see :func:`keys.producer_key`), the
first offset of each of the producer's recent batches: a batch it has seen is not
appended again, and the script answers with the offsets of the first attempt.

A retry reuses the batch's sequence number; a new batch takes the next one. The hash
keeps the producer's last ``window`` batches (:data:`SEQUENCE_WINDOW` by default) and
expires ``state_ttl_s`` after the producer's last append (the transport's tunable
``producer_state_ttl_s``, an hour by default), so a producer that went away costs
nothing after that. A retry that arrives after the state expired, or after
Redis lost it, is appended again (at least once).
"""

from __future__ import annotations

import os
import secrets

from pipeline.transport.tunables import Tunables

#: How long a producer's sequence state outlives its last append, by default.
PRODUCER_STATE_TTL_S = Tunables.producer_state_ttl_s
#: Batches of one producer per partition remembered (and so the most it may have in
#: flight at once: a batch older than that is refused rather than risk a duplicate).
#: Under 128 so the hash stays a compact listpack.
SEQUENCE_WINDOW = 100


class ProducerIdentity:
    """The id of one producer instance and its next batch sequence per partition."""

    __slots__ = ("_sequences", "producer_id", "state_ttl_ms", "window")

    def __init__(
        self, *, window: int = SEQUENCE_WINDOW, state_ttl_s: float = PRODUCER_STATE_TTL_S
    ) -> None:
        self.producer_id = secrets.token_hex(8)
        #: Batches per partition remembered: at least as many as may be in flight.
        self.window = window
        #: How long Redis keeps the sequence state after the last append.
        self.state_ttl_ms = int(state_ttl_s * 1000)
        self._sequences: dict[tuple[str, int], int] = {}

    def next_sequence(self, topic: str, partition: int) -> int:
        """The sequence number of a new batch for ``topic``/``partition`` (from 1)."""
        tp = (topic, partition)
        seq = self._sequences.get(tp, 0) + 1
        self._sequences[tp] = seq
        return seq


_default: ProducerIdentity | None = None


def default_identity() -> ProducerIdentity:
    """The identity of this process's appends that name none (new in a forked child)."""
    global _default
    if _default is None:
        _default = ProducerIdentity()
    return _default


def _forget_default() -> None:
    global _default
    _default = None


# A forked child must not reuse its parent's id and sequences.
os.register_at_fork(after_in_child=_forget_default)

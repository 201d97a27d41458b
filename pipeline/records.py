"""What travels on the ``samples`` topic, between the edge and the agents.

One stream entry carries a batch: the edge groups the samples it accepted for one
session within a few milliseconds into one :class:`SampleBatchRecord`, which divides
Faust's per-event cost. Lifecycle changes (start, pause, resume, stop, lap) travel on
the same topic and key as :class:`ControlRecord`, so that the agents see them in order
with the samples around them. Both are keyed by session id (its canonical UUID text).

``ingest_ms`` is when the edge accepted the record (epoch milliseconds): the start of
the sample-to-socket latency the edge measures.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: ``group``: the session joined a group (``payload.group``) or left it (``payload.group``
#: null), see docs/groups.md.
ControlAction = Literal["start", "pause", "resume", "stop", "lap", "profile", "group"]


class SampleBatchRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["samples"] = "samples"
    session_id: UUID
    user_id: UUID
    ingest_ms: int
    #: Validated samples (pipeline.models.Sample dumped in JSON mode), oldest first.
    samples: list[dict[str, Any]]


class ControlRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["control"] = "control"
    session_id: UUID
    user_id: UUID
    ingest_ms: int
    action: ControlAction
    #: When the action happened (epoch milliseconds, the device's or the edge's clock).
    at_ms: int
    #: Action details: lap name, auto-lap mode on start, profile changes, ...
    payload: dict[str, Any] = Field(default_factory=dict)


SamplesTopicRecord = Annotated[SampleBatchRecord | ControlRecord, Field(discriminator="kind")]
samples_topic_record: TypeAdapter[SampleBatchRecord | ControlRecord] = TypeAdapter(
    SamplesTopicRecord
)


def session_key(session_id: UUID | str) -> bytes:
    """The message key of a session on ``samples`` and ``live``."""
    return str(session_id).encode()

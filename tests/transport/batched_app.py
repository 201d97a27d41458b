"""A Faust app whose ``events`` topic is read in batches (``read_in_batches``).

Run by ``test_batched_reads.py`` as ``faust -A batched_app worker``. The ``forward``
agent sends every value it got to ``forwarded`` with the size of the batch it came in
and the offset the batch's header gives for it.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from pipeline.transport.consumer import BATCH_OFFSETS_HEADER, batch_offsets
from pipeline.transport.driver import read_in_batches

PARTITIONS = int(os.environ.get("LC_PARTITIONS", "2"))

app = faust.App(
    os.environ.get("LC_APP_ID", "lc-batched"),
    broker=os.environ.get("LC_BROKER", "redis://127.0.0.1:6379/0"),
    store="memory://",
    datadir=os.environ.get("LC_DATA_DIR", "/tmp/lc-faust-data"),
    topic_partitions=PARTITIONS,
    web_port=int(os.environ.get("LC_WEB_PORT", "6066")),
    web_host="127.0.0.1",
    broker_commit_interval=0.5,
    stream_wait_empty=False,
)

events = app.topic("events", partitions=PARTITIONS, value_serializer="json")
forwarded = app.topic("forwarded", partitions=PARTITIONS, value_serializer="json")
read_in_batches(app, "events")


@app.agent(events)
async def forward(stream: Any) -> Any:
    async for event in stream.events():
        batch = event.value
        offsets = batch_offsets(dict(event.message.headers)[BATCH_OFFSETS_HEADER])
        for value, offset in zip(batch, offsets, strict=True):
            where = {"partition": event.message.partition, "offset": offset}
            await forwarded.send(value={"n": value["n"], "batch": len(batch), **where})

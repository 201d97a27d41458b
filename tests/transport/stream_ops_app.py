"""The stream operations of Faust's user guide in one app, for ``test_stream_ops.py``.

Run as ``faust -A stream_ops_app worker`` with this folder on ``PYTHONPATH`` and the
broker in Faust's ``BROKER_URL`` setting (the app names none). Every operation reads a
topic of its own and writes what it saw to a topic, so that the test can compare input
and output straight from Redis:

* ``group_by``: ``orders`` (key: order id, value ``{"user", "amount"}``) regrouped by
  user into the table ``user_totals`` (its changelog is the output).
* ``through`` and a sink: ``raw`` is copied through the topic ``relayed``; the agent
  yields ``{"n", "double"}`` into its sink topic ``sunk``.
* ``take``: ``items`` (one key, so one partition, in order) in batches of at most 10
  (or what 1 s gathers) to ``batches`` (one key too).
* ``noack``: ``manual`` acked by hand after each event is written to ``manual-out``.
* channels: ``notes`` is forwarded into an in-memory channel, whose agent writes
  ``from-channel``.
* ``single`` (one partition) echoed to ``single-out`` (one partition).
* ``GlobalTable``: ``settings`` fills ``ops-settings``; a ``lookups`` agent answers on
  ``looked-up`` from it.
"""

from __future__ import annotations

from typing import Any

import faust

PARTITIONS = 4

app = faust.App(
    "lc-ops",
    store="memory://",
    topic_partitions=PARTITIONS,
    web_host="127.0.0.1",
    broker_commit_interval=1.0,
)


def _json(name: str) -> Any:
    # Every topic has the app's partition count: Faust never declares a source topic, so
    # another count would not reach Redis (issue 12 item 13).
    return app.topic(name, partitions=PARTITIONS, value_serializer="json")


orders = _json("orders")
user_totals = app.Table("user_totals", default=int)

raw = _json("raw")
relayed = _json("relayed")
sunk = _json("sunk")

items = _json("items")
batches = _json("batches")

manual = _json("manual")
manual_out = _json("manual-out")

notes = _json("notes")
from_channel = _json("from-channel")
note_channel = app.channel()

# Declared with one partition, which Faust never declares for a source topic (Kafka
# would auto-create it): what the transport makes of the count (issue 12 item 13).
single = app.topic("single", partitions=1, value_serializer="json")
single_out = app.topic("single-out", partitions=1, value_serializer="json")

settings_topic = _json("settings")
settings = app.GlobalTable("ops-settings", default=str)
lookups = _json("lookups")
looked_up = _json("looked-up")


@app.agent(orders)
async def total_by_user(stream: Any) -> None:
    async for order in stream.group_by(lambda order: order["user"], name="orders-by-user"):
        user_totals[order["user"]] += order["amount"]


@app.agent(raw, sink=[sunk])
async def relay(stream: Any) -> Any:
    async for value in stream.through(relayed):
        yield {"n": value["n"], "double": 2 * value["n"]}


@app.agent(items)
async def batcher(stream: Any) -> None:
    async for batch in stream.take(10, within=1.0):
        # One key: the batches stay in order in one partition.
        await batches.send(key=b"batches", value=[value["n"] for value in batch])


@app.agent(manual)
async def acked_by_hand(stream: Any) -> None:
    async for event in stream.noack().events():
        await manual_out.send(key=event.key, value=event.value)
        event.ack()


@app.agent(notes)
async def to_channel(stream: Any) -> None:
    async for value in stream:
        await note_channel.send(value=value)


@app.agent(note_channel)
async def from_the_channel(stream: Any) -> None:
    async for value in stream:
        await from_channel.send(value=value)


@app.agent(single)
async def echo_single(stream: Any) -> None:
    async for value in stream:
        await single_out.send(value=value)


@app.agent(settings_topic)
async def store_setting(stream: Any) -> None:
    async for event in stream.events():
        settings[event.key.decode()] = event.value


@app.agent(lookups)
async def lookup(stream: Any) -> None:
    async for name in stream:
        await looked_up.send(value={"name": name, "setting": settings[name]})

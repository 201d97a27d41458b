"""A Faust app exercising the documented features, run by the transport tests.

Run as ``faust -A faust_app worker`` (with this folder on PYTHONPATH) or
``python faust_app.py worker``. Configured from the environment:

* ``LC_BROKER``: broker URL (``redis://...``)
* ``LC_APP_ID``: application id
* ``LC_WEB_PORT``: Faust web port
* ``LC_PARTITIONS``: partitions of the topics (default 4)
* ``LC_SESSION_TIMEOUT``: broker session timeout in seconds
* ``LC_DATA_DIR``: Faust's data folder
* ``LC_GATE_FILE``: while this file exists, ``count`` holds the event it is at (and
  logs ``gate: holding n=<n>`` once): a test's way to keep events buffered

Topics: ``events`` (key: entity id; value ``{"n": int, "ts": float}``) feeds
``count`` (a Table, forwards ``{"key", "n", "count"}`` to ``counted``) and the
windowed tables; ``requests`` is answered by ``double`` (asked by a task at start-up,
answers go to ``answers``); ``settings`` fills a GlobalTable read by ``lookup``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import faust

BROKER = os.environ.get("LC_BROKER", "redis://127.0.0.1:6379/0")
PARTITIONS = int(os.environ.get("LC_PARTITIONS", "4"))

app = faust.App(
    os.environ.get("LC_APP_ID", "lc-test"),
    broker=BROKER,
    store="memory://",
    datadir=os.environ.get("LC_DATA_DIR", "/tmp/lc-faust-data"),
    topic_partitions=PARTITIONS,
    web_port=int(os.environ.get("LC_WEB_PORT", "6066")),
    web_host="127.0.0.1",
    broker_session_timeout=float(os.environ.get("LC_SESSION_TIMEOUT", "10")),
    broker_commit_interval=float(os.environ.get("LC_COMMIT_INTERVAL", "1.0")),
    topic_disable_leader=False,
    # Faust never acks the last message of its reply stream, so waiting for every
    # stream to go empty would hang a graceful stop after an ask().
    stream_wait_empty=False,
)

events = app.topic("events", partitions=PARTITIONS, value_serializer="json")
counted = app.topic("counted", partitions=PARTITIONS, value_serializer="json")
requests = app.topic("requests", partitions=PARTITIONS, value_serializer="json")
answers = app.topic("answers", partitions=1, value_serializer="json")
settings_topic = app.topic("settings", partitions=PARTITIONS, value_serializer="json")
lookups = app.topic("lookups", partitions=PARTITIONS, value_serializer="json")
looked_up = app.topic("looked-up", partitions=1, value_serializer="json")

counts = app.Table("counts", default=int, partitions=PARTITIONS)
tumbling = app.Table("tumbling", default=int, partitions=PARTITIONS).tumbling(10.0, expires=3600.0)
hopping = app.Table("hopping", default=int, partitions=PARTITIONS).hopping(
    10.0, 5.0, expires=3600.0
)
settings = app.GlobalTable("settings-table", default=str, partitions=PARTITIONS)


GATE_FILE = os.environ.get("LC_GATE_FILE")


def _gate_closed() -> bool:
    return GATE_FILE is not None and os.path.exists(GATE_FILE)


async def _gate(n: int) -> None:
    if not _gate_closed():
        return
    print(f"gate: holding n={n}", flush=True)
    while _gate_closed():
        await asyncio.sleep(0.02)


@app.agent(events)
async def count(stream: Any) -> Any:
    async for event in stream.events():
        key = event.key.decode() if isinstance(event.key, bytes) else str(event.key)
        value = event.value
        await _gate(value["n"])
        counts[key] += 1
        if "ts" in value:
            tumbling[key] += 1
            hopping[key] += 1
        await counted.send(
            key=key,
            value={
                "key": key,
                "n": value["n"],
                "count": counts[key],
                "pid": os.getpid(),
                "gen": app.consumer_generation_id,
                "partition": event.message.partition,
            },
        )


@app.agent(requests)
async def double(stream: Any) -> Any:
    async for value in stream:
        yield value * 2


@app.agent(settings_topic)
async def store_setting(stream: Any) -> Any:
    async for event in stream.events():
        settings[event.key.decode()] = event.value


@app.agent(lookups)
async def lookup(stream: Any) -> Any:
    async for value in stream:
        await looked_up.send(value={"name": value, "setting": settings[value]})


@app.task
async def ask_double() -> None:
    if os.environ.get("LC_ASK") != "1":
        return
    answer = await double.ask(value=21)
    await answers.send(value={"answer": answer})


@app.command()
async def ask_once() -> None:
    """``faust -A faust_app ask-once``: a client-only command asking the workers."""
    print("answer:", await double.ask(value=21))  # the test reads it


@app.command()
async def ask_loop() -> None:
    """``faust -A faust_app ask-loop``: a long-running client asking again and again.

    ``LC_ASK_COUNT`` questions, one every ``LC_ASK_INTERVAL`` seconds, each given
    ``LC_ASK_TIMEOUT`` seconds; prints ``answer <n>: <2n>``, ``timeout <n>`` or
    ``error <n>: <exception>`` per question.
    """
    count = int(os.environ.get("LC_ASK_COUNT", "100"))
    interval = float(os.environ.get("LC_ASK_INTERVAL", "0.1"))
    timeout = float(os.environ.get("LC_ASK_TIMEOUT", "5"))
    for n in range(count):
        try:
            answer = await asyncio.wait_for(double.ask(value=n), timeout)
            print(f"answer {n}: {answer}", flush=True)
        except TimeoutError:
            print(f"timeout {n}", flush=True)
        except Exception as exc:  # the test reads what went wrong
            print(f"error {n}: {exc!r}", flush=True)
        await asyncio.sleep(interval)


if __name__ == "__main__":
    app.main()

"""Two roles of an app sharing a topic nobody declares, run by ``test_partitions.py``.

``LC_ROLE=producer`` sends ``LC_SEND`` keyed records to ``shared`` at start-up;
``LC_ROLE=consumer`` forwards every record of ``shared`` to ``shared-out``. Each app
has its own ``topic_partitions`` (``LC_PARTITIONS``): Faust never declares ``shared``
(on Kafka the broker's auto-create picks the count), so both must follow the count
stored in Redis by whichever needed it first.
"""

from __future__ import annotations

import os
from typing import Any

import faust

ROLE = os.environ.get("LC_ROLE", "consumer")

app = faust.App(
    os.environ.get("LC_APP_ID", f"lc-{ROLE}"),
    broker=os.environ.get("LC_BROKER", "redis://127.0.0.1:6379/0"),
    store="memory://",
    datadir=os.environ.get("LC_DATA_DIR", "/tmp/lc-faust-data"),
    topic_partitions=int(os.environ.get("LC_PARTITIONS", "4")),
    web_port=int(os.environ.get("LC_WEB_PORT", "6066")),
    web_host="127.0.0.1",
)

shared = app.topic("shared", value_serializer="json")
shared_out = app.topic("shared-out", value_serializer="json")

if ROLE == "consumer":

    @app.agent(shared)
    async def forward(stream: Any) -> Any:
        async for event in stream.events():
            await shared_out.send(value={"n": event.value["n"]}, partition=0)

else:

    @app.task
    async def send_all() -> None:
        for n in range(int(os.environ.get("LC_SEND", "100"))):
            await shared.send(key=f"key-{n}", value={"n": n})


if __name__ == "__main__":
    app.main()

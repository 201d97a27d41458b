"""A Faust app whose table is set, updated and deleted, run by ``test_tombstones.py``.

Topic ``ops`` (key: entity id; value ``{"n": int, "op": "set" | "add" | "del" |
"get"}``) drives the table ``members``: ``set`` makes a key's value ``[n]``, ``add``
adds ``n`` to its list (a set union: replaying an event after a crash changes
nothing), ``del`` deletes the key (a tombstone in the changelog) and ``get`` sends
the key's current value to ``got``. So the table after any replay equals the table
computed from the ops in order, which the test does independently.

Configured from the environment like ``faust_app.py`` (``LC_BROKER``, ``LC_APP_ID``,
``LC_WEB_PORT``, ``LC_DATA_DIR``, ``LC_COMMIT_INTERVAL``).
"""

from __future__ import annotations

import os
from typing import Any

import faust

PARTITIONS = 4

app = faust.App(
    os.environ.get("LC_APP_ID", "lc-tomb"),
    broker=os.environ.get("LC_BROKER", "redis://127.0.0.1:6379/0"),
    store="memory://",
    datadir=os.environ.get("LC_DATA_DIR", "/tmp/lc-faust-data"),
    topic_partitions=PARTITIONS,
    web_port=int(os.environ.get("LC_WEB_PORT", "6066")),
    web_host="127.0.0.1",
    broker_commit_interval=float(os.environ.get("LC_COMMIT_INTERVAL", "1.0")),
)

ops = app.topic("ops", partitions=PARTITIONS, value_serializer="json")
got = app.topic("got", partitions=1, value_serializer="json")
members = app.Table("members", default=None, partitions=PARTITIONS)


@app.agent(ops)
async def apply(stream: Any) -> Any:
    async for event in stream.events():
        key = event.key.decode()
        op, n = event.value["op"], event.value["n"]
        if op == "set":
            members[key] = [n]
        elif op == "add":
            members[key] = sorted({*(members.get(key) or []), n})
        elif op == "del" and key in members:
            del members[key]
        elif op == "get":
            await got.send(value={"key": key, "n": n, "value": members.get(key)}, partition=0)


if __name__ == "__main__":
    app.main()

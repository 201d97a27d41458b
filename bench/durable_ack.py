"""What durable acknowledgement costs: append latency with ``WAIT 1 <ms>`` and without.

``python -m bench.durable_ack --runs 5 --sends 2000 --concurrency 16``

Starts a private primary and one replica (Debian's redis-server, loopback, in a
temporary folder) and sends sample-sized records through the edge's own
``BatchingProducer`` (2 ms linger, as the edge), from ``--concurrency`` tasks at once,
each awaiting its record's offset: the time a device's 202 waits on Redis. Each run
measures durable acknowledgement off and on, in alternating order; the report gives
the median and p99 of every run and the median of the runs' figures side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from pipeline.embedded import SYSTEM_REDIS, free_port
from pipeline.transport.clients import redis_client
from web.producer import BatchingProducer

#: About a one-sample batch record as the edge writes it.
RECORD = b'{"session_id":"6f1c","user_id":"9a2b","ingest_ms":1,"samples":[' + b"x" * 160 + b"]}"


@contextlib.contextmanager
def primary_with_replica() -> Iterator[str]:
    """A private primary and one in-sync replica; the primary's URL."""
    with tempfile.TemporaryDirectory(prefix="lc-bench-wait-") as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            ports = [free_port(), free_port()]
            for i, port in enumerate(ports):
                folder = Path(tmp) / str(i)
                folder.mkdir()
                args = [SYSTEM_REDIS, "--port", str(port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
                if i:
                    args += ["--replicaof", "127.0.0.1", str(ports[0])]
                procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
            primary = redis.Redis(port=ports[0])
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(redis.RedisError):
                    if primary.info("replication").get("slave0", {}).get("state") == "online":
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("replica not in sync within 20 s")
                time.sleep(0.05)
            primary.close()
            yield f"redis://127.0.0.1:{ports[0]}/0"
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


async def _one_run(url: str, sends: int, concurrency: int, durable_ack_ms: int) -> list[float]:
    client = redis_client(url)
    producer = BatchingProducer(client, "bench-wait", 8, durable_ack_ms=durable_ack_ms)
    latencies: list[float] = []
    keys = [f"session-{i}".encode() for i in range(64)]
    per_task = sends // concurrency

    async def device(n: int) -> None:
        for i in range(per_task):
            started = time.perf_counter()
            await producer.send(keys[(n + i) % len(keys)], RECORD, int(time.time() * 1000))
            latencies.append((time.perf_counter() - started) * 1000)

    try:
        await asyncio.gather(*(device(n) for n in range(concurrency)))
    finally:
        await producer.aclose()
        await client.aclose()
    return latencies


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--wait-ms", type=int, default=500, help="LIVECOACH_DURABLE_ACK_MS")
    args = parser.parse_args()
    if not Path(SYSTEM_REDIS).exists():
        raise SystemExit(f"needs {SYSTEM_REDIS}")
    figures: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    with primary_with_replica() as url:
        asyncio.run(_one_run(url, 200, args.concurrency, 0))  # warm-up
        for run in range(args.runs):
            order = ["off", "on"] if run % 2 == 0 else ["on", "off"]
            for mode in order:
                wait_ms = args.wait_ms if mode == "on" else 0
                lat = asyncio.run(_one_run(url, args.sends, args.concurrency, wait_ms))
                figures[mode].append((statistics.median(lat), _p(lat, 0.99)))
                print(f"run {run + 1} durable ack {mode:>3}: p50 {figures[mode][-1][0]:.2f} ms"
                      f"  p99 {figures[mode][-1][1]:.2f} ms  ({len(lat)} sends)")  # fmt: skip
    load = os.getloadavg()[0]
    print(f"\nmedian of {args.runs} runs ({args.concurrency} concurrent senders, load {load:.1f}):")
    for mode, runs in figures.items():
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        print(f"  durable ack {mode:>3}: p50 {p50:.2f} ms  p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()

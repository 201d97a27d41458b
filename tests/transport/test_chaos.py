"""Chaos: three workers of a plain Faust app under kill -9, SIGSTOP and Redis restarts.

The app (``faust_app.py``) knows nothing of livecoach: it counts events per key in a
table and forwards each event with the worker's pid and generation. While events flow,
random faults hit it: a worker killed with ``kill -9`` and restarted, a worker frozen
with SIGSTOP past its session timeout and resumed, Redis restarted with its AOF, and
Redis restarted empty (after the events so far were processed, so that Redis itself
loses nothing unprocessed; losing unprocessed data is tested on its own).

Checked at the end: every event has an output; duplicates stay within what was
uncommitted when the faults struck (Kafka's at-least-once bound); and in each output
partition the generations never go back within one Redis lifetime, which they would if
a stale owner (frozen, or a twin) wrote after the new owner had started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
import redis
from transport_workers import SYSTEM_REDIS, Feeder, Worker, make_data_dir, wait_for

from pipeline.embedded import EmbeddedRedis, free_port
from pipeline.transport import streams
from pipeline.transport.keys import group_key, tp_field

pytestmark = [pytest.mark.integration, pytest.mark.slow]

P = 6
WORKERS = 3
RATE = 200  # events/s
SESSION_TIMEOUT_S = 5.0
COMMIT_INTERVAL_S = 1.0
FAULTS = 8
#: Events a fault may repeat beyond those uncommitted when it struck: what was processed
#: in the moment between reading the commits and the fault itself.
SLACK_PER_FAULT = RATE // 2


def _uncommitted(client: redis.Redis) -> int:
    """Events of ``events`` appended but not yet covered by the group's commits."""
    committed = client.hgetall(group_key("lc-test", "offsets"))
    total = 0
    for p in range(P):
        try:
            end = (
                streams.offset_of(
                    client.xinfo_stream(streams.stream_key("events", p))["last-generated-id"]
                )
                + 1
            )
        except redis.ResponseError:
            continue  # not created yet
        total += end - int(committed.get(tp_field("events", p).encode(), 0))
    return total


class Outputs:
    """Copies the ``counted`` topic out of Redis as it grows, across Redis restarts."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.records: list[tuple[int, int, dict[str, Any]]] = []  # (lifetime, partition, value)
        self.lifetime = 0
        self._next = dict.fromkeys(range(P), 0)
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Outputs:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def pause(self) -> None:
        with self._lock:
            self._paused.set()

    def resume(self, *, redis_lost_everything: bool) -> None:
        with self._lock:
            if redis_lost_everything:
                self.lifetime += 1
                self._next = dict.fromkeys(range(P), 0)
            self._paused.clear()

    def poll(self) -> None:
        with self._lock:
            if self._paused.is_set():
                return
            for p in range(P):
                key = streams.stream_key("counted", p)
                entries = self.client.xrange(key, streams.stream_id(self._next[p]), "+")
                for entry_id, fields in entries:
                    _key, value, _headers, _ts = streams.decode_entry(fields)
                    self.records.append((self.lifetime, p, json.loads(value)))
                    self._next[p] = streams.offset_of(entry_id) + 1

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(redis.ConnectionError):  # restarting: we are resumed
                self.poll()
            time.sleep(0.2)

    def seen(self) -> set[int]:
        return {value["n"] for _, _, value in list(self.records)}


def _generations_go_back(records: list[tuple[int, int, dict[str, Any]]]) -> list[str]:
    """Where a partition's output came from an older generation after a newer one."""
    problems = []
    latest: dict[tuple[int, int], tuple[int, int]] = {}
    for lifetime, _partition, value in records:
        where = (lifetime, value["partition"])
        gen, pid = int(value["gen"]), int(value["pid"])
        if where in latest and gen < latest[where][0]:
            problems.append(
                f"partition {value['partition']}: pid {pid} wrote under generation {gen} "
                f"after pid {latest[where][1]} under {latest[where][0]}"
            )
        if where not in latest or gen >= latest[where][0]:
            latest[where] = (gen, pid)
    return problems


@pytest.mark.timeout(420)
def test_three_workers_survive_kills_freezes_and_redis_restarts() -> None:
    # A new plan every run (CI covers more orders over time); the seed repeats one.
    seed = int(os.environ.get("LIVECOACH_CHAOS_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    data_dir = make_data_dir("lc-chaos-")
    port = free_port()
    server = EmbeddedRedis(data_dir, port=port, appendonly=True, executable=SYSTEM_REDIS)
    server.start()
    url = server.url
    env = {"LC_SESSION_TIMEOUT": str(SESSION_TIMEOUT_S), "LC_PARTITIONS": str(P),
           "LC_COMMIT_INTERVAL": str(COMMIT_INTERVAL_S)}  # fmt: skip
    workers = [Worker(url, **env).start() for _ in range(WORKERS)]
    outputs = Outputs(url).start()
    feeder = Feeder(url, "events", P, rate=RATE, keys=24, limit=1_000_000).start()
    faults: list[str] = []
    at_risk: list[int] = []  # per fault: events uncommitted when it struck
    control = redis.Redis.from_url(url)
    try:
        wait_for(lambda: len(outputs.seen()) > RATE, 90, "events flowing", workers)
        kinds = ["kill", "freeze", "redis-aof", "redis-empty"]
        plan = kinds + [rng.choice(kinds) for _ in range(FAULTS - len(kinds))]
        rng.shuffle(plan)
        for kind in plan:
            feeder.wait_sent(feeder.sent + rng.randint(2 * RATE, 5 * RATE))
            victim = rng.choice(workers)
            at_risk.append(_uncommitted(control))
            if kind == "kill":
                victim.kill()
                victim.start()
            elif kind == "freeze":
                victim.signal(signal.SIGSTOP)
                time.sleep(SESSION_TIMEOUT_S + 3.0)  # the fault: frozen past its session
                victim.signal(signal.SIGCONT)
            else:
                feeder.stop()
                sent = feeder.sent
                if kind == "redis-empty":
                    # Drain first: what Redis loses then was processed already.
                    wait_for(lambda s=sent: outputs.seen() >= set(range(s)), 90,
                             "every event before the wipe", workers)  # fmt: skip
                outputs.pause()
                server.stop()
                if kind == "redis-empty":
                    shutil.rmtree(server.dir)
                server.start()
                outputs.resume(redis_lost_everything=kind == "redis-empty")
                truth = feeder.truth
                feeder = Feeder(url, "events", P, rate=RATE, keys=24, limit=1_000_000)
                feeder.sent, feeder.truth = sent, truth  # continue the numbering
                feeder.start()
            faults.append(kind)
        feeder.wait_sent(feeder.sent + 3 * RATE)
        feeder.stop()
        total = feeder.sent
        try:
            wait_for(lambda: outputs.seen() >= set(range(total)), 120,
                     f"all {total} events processed", workers)  # fmt: skip
        except AssertionError as exc:
            missing = sorted(set(range(total)) - outputs.seen())
            raise AssertionError(f"{len(missing)} missing, first {missing[:20]}\n{exc}") from None
        for worker in workers:
            assert worker.stop() == 0, worker.log()[-3000:]
        counts = Counter(value["n"] for _, _, value in outputs.records)
        duplicates = sum(c - 1 for c in counts.values())
        bound = sum(at_risk) + SLACK_PER_FAULT * len(faults)
        went_back = _generations_go_back(outputs.records)
        print(
            f"\nchaos (seed {seed}): faults {faults}; {total} events, 0 missing, "
            f"{duplicates} duplicate outputs (bound {bound}: uncommitted at the faults "
            f"{at_risk}); generation went back {len(went_back)} times"
        )
        assert duplicates <= bound
        assert not went_back, went_back[:10]
    except AssertionError as exc:
        exc.add_note(f"chaos plan {faults}: LIVECOACH_CHAOS_SEED={seed} repeats it")
        raise
    finally:
        feeder.stop()
        outputs.stop()
        control.close()
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.signal(signal.SIGCONT)  # a frozen worker cannot be killed cleanly
            worker.cleanup()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

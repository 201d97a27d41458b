"""Faust's own example programs, unchanged, on ``redis://`` (issue 12 acceptance).

Each test runs one program of Faust's ``examples/`` folder (fetched from the sdist of
the installed Faust, see ``faust_examples.py``) with only the broker URL changed, and
compares what it printed or wrote with a count made here from the Redis streams,
before and after a restart of the worker (SIGTERM, then start again in the same
folder). Redis 7 throughout; the cheapest example also on 6.2.

Where Faust itself misbehaves, as it would on Kafka, the test says so and checks it
(rpc's graceful stop, withdrawals' country agent). ``crontab/tz_unaware.py`` runs only
with ``LC_EXAMPLES_CRONTAB=1`` (a minute per message); ``concurrency.py`` needs the
internet and is skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from faust_examples import (
    ExampleProgram,
    ExamplesUnavailable,
    examples_root,
    json_values,
    ready,
    records,
    run_command,
    table_state,
)
from transport_workers import SYSTEM_REDIS, make_data_dir, wait_for

from pipeline.embedded import EmbeddedRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Faust's default ``topic_partitions``, which most examples keep.
FAUST_PARTITIONS = 8


@pytest.fixture(scope="session")
def root() -> Path:
    try:
        return examples_root()
    except ExamplesUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def redis7() -> Iterator[EmbeddedRedis]:
    if shutil.which(SYSTEM_REDIS) is None:
        pytest.skip(f"no Redis 7 at {SYSTEM_REDIS}")
    data_dir = make_data_dir("lc-examples-")
    server = EmbeddedRedis(data_dir, executable=SYSTEM_REDIS)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def url(redis7: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis7.url)
    client.flushall()  # our own private server
    client.close()
    return redis7.url


@pytest.fixture
def programs() -> Iterator[Callable[..., ExampleProgram]]:
    """Make example programs; every one still running at the end is killed (by pid)."""
    made: list[ExampleProgram] = []

    def make(url: str, root: Path, module: str, *args: str, **env: str) -> ExampleProgram:
        worker = ExampleProgram(url, root, module, *args, **env)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.cleanup()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _printed_once(
    printed: Callable[[], list[str]],
    sent: Callable[[], list[str]],
    at_least: int,
    what: str,
    running: list[ExampleProgram],
    timeout_s: float = 60,
    may_repeat: Counter[str] | None = None,
) -> int:
    """Wait until at least ``at_least`` values were sent and each was printed exactly once
    (or, for those in ``may_repeat``, up to that many times more).

    On a timeout the message says which values were never printed, or printed too often.
    """
    last: list[Counter[str]] = []
    allowed = may_repeat or Counter()

    def check() -> int:
        want, got = Counter(sent()), Counter(printed())
        last[:] = [want, got]
        complete = want.total() >= at_least and not want - got
        return want.total() if complete and got - want <= allowed else 0

    try:
        return int(wait_for(check, timeout_s, what, running))
    except AssertionError as exc:
        if not last:
            raise
        want, got = last
        raise AssertionError(
            f"{exc}\nsent {want.total()}, printed {got.total()}; never printed: "
            f"{dict(want - got)}; printed more often than sent: {dict(got - want)}"
        ) from None


# --- hello_world: every greeting of `greetings` printed exactly once ----------------------


def test_hello_world(
    versioned_url: str, root: Path, programs: Callable[..., ExampleProgram]
) -> None:
    client = _client(versioned_url)
    worker = programs(versioned_url, root, "examples.hello_world").start()

    def greetings() -> list[str]:
        return json_values(client, "greetings", FAUST_PARTITIONS)

    def printed() -> list[str]:
        return [line for line in worker.printed() if line.startswith("hello ")]

    # The timer sends 100 greetings every 5 s; between two sends all are printed.
    _printed_once(printed, greetings, 100, "100 greetings printed once", [worker])
    worker.stop()
    before = len(greetings())
    worker.start()
    # Whatever the first run left unprinted, and 100 new ones, each printed once.
    _printed_once(printed, greetings, before + 100, "restart: printed once", [worker])
    worker.stop()
    assert Counter(printed()) <= Counter(greetings())
    client.close()


def _raw_values(client: redis.Redis, topic: str, partitions: int = FAUST_PARTITIONS) -> list[bytes]:
    return [r["value"] for r in records(client, topic, partitions)]


# --- word_count: the table (its changelog and its web view) counts the posts' words ------


def test_word_count(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    worker = programs(url, root, "examples.word_count").start()

    def words_in_posts() -> Counter[str]:
        return Counter(w for v in _raw_values(client, "posts") for w in json.loads(v).split())

    def table_equals_posts(total: int) -> Any:
        truth = words_in_posts()
        table = table_state(client, "word-counts", "word_counts", FAUST_PARTITIONS)
        return sum(truth.values()) == total and table == dict(truth) and table

    # Its start-up task sends 1,000 posts of each of 4 words.
    wait_for(lambda: table_equals_posts(4000), 60, "4,000 words counted", [worker])
    assert _count_page(worker, "fox") == {"fox": 1000}
    worker.stop()
    worker.start()  # the task sends another 4,000; the table comes back from rocksdb
    table = wait_for(lambda: table_equals_posts(8000), 60, "8,000 words counted", [worker])
    assert table == {"the": 2000, "quick": 2000, "brown": 2000, "fox": 2000}
    assert _count_page(worker, "fox") == {"fox": 2000}
    worker.stop()
    client.close()


def _count_page(worker: ExampleProgram, word: str) -> Any:
    page = f"http://127.0.0.1:{worker.web_port}/count/{word}/"
    with urllib.request.urlopen(page, timeout=10) as response:
        return json.load(response)


# --- tabletest: per-partition sums equal the input's, input arriving while it is down ----


def test_tabletest(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    partitions = 4
    worker = programs(url, root, "examples.tabletest").start()
    wait_for(lambda: ready(worker), 60, "worker ready", [worker])
    # Its command sends 0, 1, 2, ... to each of the 4 partitions, 100 at a time.
    producer = programs(url, root, "examples.tabletest", "produce").start()

    def sent() -> tuple[dict[str, int], int]:
        sums: dict[str, int] = defaultdict(int)
        per_partition: Counter[str] = Counter()
        for rec in records(client, "countstopic", partitions):
            key = rec["key"].decode()  # key_type=str: the raw string
            sums[key] += json.loads(rec["value"])
            per_partition[key] += 1
        return dict(sums), min(per_partition.values(), default=0)

    def table_equals_input(at_least: int) -> int:
        sums, fewest = sent()
        table = table_state(client, "tabletest", "counts", partitions)
        return fewest if fewest >= at_least and table == sums else 0

    first = wait_for(lambda: table_equals_input(101), 60, "sums of 101 events", [worker])
    worker.stop()
    # The command goes on while the worker is down.
    wait_for(lambda: sent()[1] >= first + 100, 30, "100 more events", [producer])
    down = sent()[1]
    worker.start()
    wait_for(lambda: table_equals_input(down + 1), 60, "the sums after a restart", [worker])
    producer.kill()
    final = wait_for(lambda: table_equals_input(1), 60, "the final sums", [worker])
    worker.stop()
    # The example checks the order itself and says "!!! PREV ..." on a gap or a repeat.
    assert not [line for line in worker.printed() if line.startswith("!!!")], worker.log()
    assert final > down
    client.close()


# --- withdrawals: per-user totals (a windowed table) equal the input's sums ---------------


def test_withdrawals(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    partitions = 4
    app_id = "faust-withdrawals-v5"  # Faust appends the version to the id
    worker = programs(url, root, "examples.withdrawals").start()
    wait_for(lambda: ready(worker), 60, "worker ready", [worker])

    def produce(count: int) -> None:
        args = ("produce", "--max-messages", str(count), "--max-latency", "0")
        done = run_command(url, root, "examples.withdrawals", *args, timeout_s=60)
        assert done.returncode == 0, done.stdout

    def totals_match(count: int) -> bool:
        values = json_values(client, "withdrawals", partitions)
        by_user: dict[str, float] = defaultdict(float)
        for w in values:
            by_user[w["user"]] += w["amount"]
        table = _window_sums(client, app_id, "user_to_total", partitions)
        return len(values) == count and _close(table, by_user)

    produce(300)
    wait_for(lambda: totals_match(300), 60, "totals of 300 withdrawals", [worker])
    worker.stop()
    produce(200)  # while the worker is down
    worker.start()
    wait_for(lambda: totals_match(500), 60, "totals of 500 withdrawals", [worker])
    worker.stop()
    # The example's second agent, track_country_withdrawal (group_by country), reads its
    # own agent topic, to which nothing sends: its table stays empty, on any broker.
    assert _window_sums(client, app_id, "country_to_total", partitions) == {}
    client.close()


def _window_sums(client: redis.Redis, app_id: str, table: str, partitions: int) -> dict[str, float]:
    """Per key, the sum of its windows' latest values in a windowed table's changelog."""
    sums: dict[str, float] = defaultdict(float)
    for (key, _window), value in table_state(client, app_id, table, partitions).items():
        sums[key] += value
    return dict(sums)


def _close(got: dict[str, float], want: dict[str, float]) -> bool:
    return got.keys() == want.keys() and all(math.isclose(got[k], want[k]) for k in want)


# --- rpc: agents asking agents (join, map) from a timer, and ask() from a command ----------

RPC_VALUES = [30.3, 40.4, 50.5, 60.6, 70.7, 80.8, 90.9]


def _rpc_answered(client: redis.Redis, worker: ExampleProgram, run: int) -> bool:
    """The join and the map of the latest tick of ``run`` answered, every request counted."""
    # pow(v) asks mul(v ** 2), which answers v ** 2 * 100 (JSON keeps a float exact).
    joined = f"JOINED: {[v**2 * 100.0 for v in RPC_VALUES]!r}"
    replies = Counter(f"RECEIVED REPLY: {v**2 * 100.0!r}" for v in RPC_VALUES)
    if joined not in worker.printed(run):
        return False
    printed = worker.printed()
    assert not [x for x in printed if x.startswith("JOINED") and x != joined], printed
    ticks = printed.count(joined)
    got = Counter(line for line in printed if line.startswith("RECEIVED REPLY"))
    # Each tick sends 7 requests for the join and 7 for the map; a tick that a stop
    # cut short may leave up to 14 more, unanswered.
    requests = len(list(records(client, "RPC__pow", FAUST_PARTITIONS)))
    return got == {k: n * ticks for k, n in replies.items()} and (
        14 * ticks <= requests <= 14 * (ticks + 1)
    )


def test_rpc_from_a_timer(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    worker = programs(url, root, "examples.advanced.rpc").start()
    wait_for(lambda: _rpc_answered(client, worker, 0), 40, "a join and a map", [worker])
    # Faust's own graceful stop waits for every message to be acked, but the stream that
    # drains the reply topic acks a message only when the next one arrives: the worker
    # waits forever for the last reply (transport-independent; it would on Kafka too).
    worker.signal(signal.SIGTERM)
    wait_for(lambda: _waits_for_reply(worker), 30, "Faust waiting for its last reply", [])
    assert worker.process is not None and worker.process.poll() is None
    client.close()


def test_rpc_after_a_restart(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    worker = programs(url, root, "examples.advanced.rpc").start()
    wait_for(lambda: _rpc_answered(client, worker, 0), 40, "a join and a map", [worker])
    worker.kill()  # its graceful stop never ends: see test_rpc_from_a_timer
    worker.start()
    wait_for(lambda: _rpc_answered(client, worker, 1), 40, "answered after a restart", [worker])
    worker.kill()
    client.close()


def test_rpc_ask_from_a_command(
    url: str, root: Path, programs: Callable[..., ExampleProgram]
) -> None:
    worker = programs(url, root, "examples.advanced.rpc").start()
    wait_for(lambda: ready(worker), 60, "worker ready", [worker])
    done = run_command(url, root, "examples.advanced.rpc", "x100", "3", timeout_s=15, may_hang=True)
    assert "3 * 100 = 300.0" in done.stdout.splitlines(), done.stdout
    # The answer came; a command that used ask() may then hang in Faust's own stop
    # (wait_empty never sees the reply stream's last message acked; any broker).
    assert done.returncode == 0 or "wait_empty: Waiting for tasks" in done.stdout, done.stdout
    worker.kill()  # its graceful stop may never end: see test_rpc_from_a_timer


def _waits_for_reply(worker: ExampleProgram) -> bool:
    waiting = re.search(
        r"wait_empty: Waiting for tasks \[\(1, <ConsumerMessage: TP\(topic='f-reply-", worker.log()
    )
    return waiting is not None


# --- leader: one worker of two publishes; the other takes over when it stops --------------


def test_leader(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    pair = [programs(url, root, "examples.leader").start() for _ in range(2)]
    topic = "leader-example-examples.leader.say"

    def publishers() -> list[int]:
        return [i for i, w in enumerate(pair) if "PUBLISHING ON LEADER!" in w.printed()]

    def sent() -> list[str]:
        # value_serializer='raw': the agent gets (and prints) the bytes of str(random()).
        return [repr(v) for v in _raw_values(client, topic)]

    def printed() -> list[str]:
        return [x for w in pair for x in w.printed() if x != "PUBLISHING ON LEADER!"]

    _printed_once(printed, sent, 3, "3 greetings printed once", pair)
    leaders = publishers()
    assert len(leaders) == 1, leaders
    leader, other = pair[leaders[0]], pair[1 - leaders[0]]
    before_stop = Counter(other.printed())
    leader.stop()
    count = len(_raw_values(client, topic))
    wait_for(lambda: len(publishers()) == 2, 60, "the other worker to lead", [other])
    # Nothing is lost. The survivor may process again what it had processed itself but
    # not yet committed when the rebalance began (seen: 3 of 34, about 1 in 3 runs):
    # never what the stopped worker processed (it committed as it stopped).
    _printed_once(printed, sent, count + 3, "takeover: printed", [other], may_repeat=before_stop)
    other.stop()
    client.close()


# --- windowing/tumbling.py and hopping.py: each window counts the events in it -----------


def _window_starts(timestamp_s: float, size_s: int, step_s: int) -> list[int]:
    """Starts of the windows [start, start + size) that hold a timestamp."""
    last = int(timestamp_s // step_s) * step_s
    return [s for s in range(last - size_s + step_s, last + 1, step_s) if s <= timestamp_s]


@pytest.mark.parametrize(
    ("module", "topic", "table", "size_s", "step_s"),
    [
        ("examples.windowing.tumbling", "tumbling_topic", "tumbling_table", 10, 10),
        ("examples.windowing.hopping", "hopping_topic", "hopping_table", 10, 5),
    ],
)
def test_windowing(
    url: str,
    root: Path,
    programs: Callable[..., ExampleProgram],
    module: str,
    topic: str,
    table: str,
    size_s: int,
    step_s: int,
) -> None:
    client = _client(url)
    worker = programs(url, root, module).start()

    last: list[Any] = []

    def windows_match(at_least: int, restart_s: float | None = None) -> int:
        # relative_to_stream: an event's window is that of its record's timestamp.
        events = list(records(client, topic, FAUST_PARTITIONS))
        truth: Counter[float] = Counter()
        for event in events:
            timestamp_s = event["timestamp_ms"] / 1000
            truth.update(float(s) for s in _window_starts(timestamp_s, size_s, step_s))
        state = table_state(client, "windowing", table, FAUST_PARTITIONS)
        got = {start: value for (_key, (start, _end)), value in state.items()}
        last[:] = [len(events), dict(truth), got]
        if len(events) < at_least or got.keys() != truth.keys():
            return 0
        if restart_s is None:
            return len(events) if got == truth else 0
        # The examples' table has one key ('counter') written from events of all 8
        # source partitions, so a window's updates are spread over the changelog's
        # partitions. Faust recovers them one by one and the last applied wins, not the
        # newest: a window open across a restart may go on from an older count (seen:
        # one short in 4 of 10 runs; on Kafka too: a table should be keyed like its
        # stream). Windows opened after the restart are exact; none counts an event twice.
        after = [w for w in truth if w > restart_s]
        exact = bool(after) and all(got[w] == truth[w] for w in after)
        return len(events) if exact and all(got[w] <= n for w, n in truth.items()) else 0

    def wait_windows(at_least: int, what: str, restart_s: float | None = None) -> int:
        try:
            return int(wait_for(lambda: windows_match(at_least, restart_s), 30, what, [worker]))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n(events, windows, table): {last}") from None

    # The leader's timer sends one event every 2 s.
    first = wait_windows(2, "2 events in their windows")
    worker.stop()
    restart_s = time.time()
    worker.start()
    # Until a window opened after the restart holds what it should.
    wait_windows(first + 1, "windows after a restart", restart_s)
    worker.stop()
    client.close()


# --- windowed_aggregation: each closed window's count and mean equal the input's --------


def test_windowed_aggregation(
    url: str, root: Path, programs: Callable[..., ExampleProgram]
) -> None:
    client = _client(url)
    worker = programs(url, root, "examples.windowed_aggregation").start()

    def aggregates_match() -> list[dict[str, Any]]:
        # relative_to_field(date): an event's window is that of its `date` (whole seconds).
        values: dict[int, list[float]] = defaultdict(list)
        for event in json_values(client, "raw-event", 1):
            values[int(event["date"]) // 10 * 10].append(event["value"])
        aggregates = json_values(client, "agg-event", 1)
        for agg in aggregates:
            window = values[int(agg["date"])]
            if agg["count"] != len(window) or not math.isclose(
                agg["mean"], sum(window) / len(window)
            ):
                raise AssertionError(f"{agg} but the window holds {len(window)}: {window}")
        return aggregates

    # The timer sends an event every 0.1 s; a window is aggregated ~1-2 s after it ends.
    done = wait_for(lambda: aggregates_match(), 40, "a window aggregated", [worker])
    assert done
    worker.stop()
    client.close()


# --- tableofset: a SetTable fed by its commands, recovered after a restart ---------------


def test_tableofset(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    app_id = "table-of-sets-windowed-v2"  # Faust appends the version to the id
    worker = programs(url, root, "examples.tableofset").start()
    wait_for(lambda: ready(worker), 60, "worker ready", [worker])

    def command(*args: str) -> None:
        done = run_command(url, root, "examples.tableofset", *args, timeout_s=30)
        assert done.returncode == 0, done.stdout

    def expected() -> dict[str, set[str]]:
        # The input: joins, then leaves (nobody here joins again after leaving).
        people: dict[str, set[str]] = defaultdict(set)
        for topic, change in (("people_joining2", set.add), ("people_leaving2", set.discard)):
            for rec in records(client, topic, 4):
                change(people[rec["key"].decode()], json.loads(rec["value"]))
        return {k: v for k, v in people.items() if v}

    def table() -> dict[str, set[str]]:
        # The SetTable's changelog holds operations: key [1, key] adds, [2, key] discards.
        people: dict[str, set[str]] = defaultdict(set)
        for rec in records(client, f"{app_id}-people-changelog", 4):
            op, key = json.loads(rec["key"])
            change = set.add if op == 1 else set.discard
            change(people[key], json.loads(rec["value"]))
        return {k: v for k, v in people.items() if v}

    command("joining", "here", "alice")
    command("joining", "here", "bob")
    command("joining", "there", "carol")
    command("leaving", "here", "alice")
    want = {"here": {"bob"}, "there": {"carol"}}
    wait_for(lambda: expected() == want and table() == want, 30, "the sets", [worker])
    assert "TABLE CUR: {'bob'}" in worker.printed()
    worker.stop()
    command("joining", "there", "dave")  # while the worker is down
    worker.start()
    want = {"here": {"bob"}, "there": {"carol", "dave"}}
    wait_for(lambda: expected() == want and table() == want, 60, "after restart", [worker])
    # The worker's own view, recovered from the changelog, includes carol.
    current = "TABLE CUR: {'carol', 'dave'}", "TABLE CUR: {'dave', 'carol'}"
    wait_for(lambda: set(worker.printed(1)) & set(current), 30, "the recovered set", [worker])
    worker.stop()
    client.close()


# --- bound_agent: agents on in-memory channels, with a dead-letter channel --------------

STAGE = re.compile(r"\[(stage1|stage2)\] action arrived: <DeviceAction: device_id=(\d+)>")
DEAD = re.compile(
    r"\[dead letter\] arrived: "
    r"<DeadLetter: stage='(stage\d)', record=<DeviceAction: device_id=(\d+)>>"
)


def test_bound_agent(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    # Its agents are built in main(), so it runs as `python -m examples.bound_agent`.
    worker = programs(url, root, "examples.bound_agent:main").start()

    def accounted(run: int) -> int:
        """Batches generated so far in ``run``, if every action is accounted for."""
        text = worker.log()[worker.run_starts[run] :]
        arrived = Counter(stage for stage, _ in STAGE.findall(text))
        dead = Counter(stage for stage, _ in DEAD.findall(text))
        # Each batch is device_id 0..n-1; each action reaches stage 1 or its dead letters,
        # and each that passed stage 1 reaches stage 2 or its dead letters.
        ids = Counter(int(i) for stage, i in STAGE.findall(text) if stage == "stage1")
        ids.update(int(i) for stage, i in DEAD.findall(text) if stage == "stage1")
        batches = ids[0]
        downward_closed = all(ids[k] >= ids[k + 1] for k in range(max(ids, default=0)))
        balanced = arrived["stage1"] == arrived["stage2"] + dead["stage2"]
        return batches if downward_closed and balanced else 0

    # The leader's timer sends a batch of 3-101 actions every 3 s.
    wait_for(lambda: accounted(0) >= 2, 30, "2 batches accounted for", [worker])
    worker.stop()
    worker.start()
    wait_for(lambda: accounted(1) >= 1, 30, "a batch after a restart", [worker])
    worker.stop()


# --- crontab/tz_unaware: one message a minute (opt-in: LC_EXAMPLES_CRONTAB=1) -----------


@pytest.mark.skipif(
    os.environ.get("LC_EXAMPLES_CRONTAB") != "1",
    reason="crontab/tz_unaware.py publishes once a minute: two runs cost about two "
    "minutes, beyond this module's budget; LC_EXAMPLES_CRONTAB=1 runs it",
)
@pytest.mark.timeout(240)
def test_tz_unaware(url: str, root: Path, programs: Callable[..., ExampleProgram]) -> None:
    client = _client(url)
    worker = programs(url, root, "examples.crontab.tz_unaware").start()

    def sent() -> list[str]:
        values = json_values(client, "tz_unaware_topic", FAUST_PARTITIONS)
        return [f"record: <Model: random={v['random']!r}>" for v in values]

    def printed() -> list[str]:
        return [line for line in worker.printed() if line.startswith("record: ")]

    # The leader's crontab sends one record at the start of every minute.
    _printed_once(printed, sent, 1, "a minute's record printed", [worker], timeout_s=75)
    worker.stop()
    worker.start()
    _printed_once(printed, sent, 2, "another after a restart", [worker], timeout_s=75)
    worker.stop()
    client.close()


# --- concurrency.py: not run -------------------------------------------------------------


def test_concurrency_is_not_run() -> None:
    pytest.skip(
        "concurrency.py's agent fetches www.google.com 200 requests at a time (no "
        "network here), and its __main__ only produces: running it would test the "
        "network, not the transport"
    )

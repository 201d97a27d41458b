"""Faust's own example programs, unchanged, on ``redis://`` (issue 12 acceptance).

Each test runs one program of Faust's ``examples/`` folder (fetched from the sdist of
the installed Faust, see ``faust_examples.py``) with only the broker URL changed, and
compares what it printed or wrote with a count made here from the Redis streams,
before and after a restart of the worker (SIGTERM, then start again in the same
folder). Redis 7 throughout; the cheapest example also on 6.2.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from faust_examples import (
    ExamplesUnavailable,
    ExampleWorker,
    examples_root,
    json_values,
    records,
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
def workers() -> Iterator[Callable[..., ExampleWorker]]:
    """Make example workers; every one still running at the end is killed (by pid)."""
    made: list[ExampleWorker] = []

    def make(url: str, root: Path, module: str, *args: str, **env: str) -> ExampleWorker:
        worker = ExampleWorker(url, root, module, *args, **env)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.cleanup()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _exactly(printed: list[str], produced: list[str]) -> bool:
    return Counter(printed) == Counter(produced)


# --- hello_world: every greeting of `greetings` printed exactly once ----------------------


def test_hello_world(versioned_url: str, root: Path, workers: Callable[..., ExampleWorker]) -> None:
    client = _client(versioned_url)
    worker = workers(versioned_url, root, "examples.hello_world").start()

    def greetings() -> list[str]:
        return json_values(client, "greetings", FAUST_PARTITIONS)

    def all_printed_once(at_least: int) -> bool:
        produced = greetings()
        return len(produced) >= at_least and _exactly(_greetings(worker), produced)

    # The timer sends 100 greetings every 5 s; between two sends all are printed.
    wait_for(lambda: all_printed_once(100), 30, "100 greetings printed once", [worker])
    worker.stop()
    before = len(greetings())
    worker.start()
    # Whatever the first run left unprinted, and 100 new ones, each printed once.
    wait_for(lambda: all_printed_once(before + 100), 30, "restart: printed once", [worker])
    worker.stop()
    assert Counter(_greetings(worker)) <= Counter(greetings())
    client.close()


def _greetings(worker: ExampleWorker) -> list[str]:
    return [line for line in worker.printed() if line.startswith("hello ")]


def _raw_values(client: redis.Redis, topic: str, partitions: int = FAUST_PARTITIONS) -> list[bytes]:
    return [r["value"] for r in records(client, topic, partitions)]


# --- word_count: the table (its changelog and its web view) counts the posts' words ------


def test_word_count(url: str, root: Path, workers: Callable[..., ExampleWorker]) -> None:
    client = _client(url)
    worker = workers(url, root, "examples.word_count").start()

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


def _count_page(worker: ExampleWorker, word: str) -> Any:
    page = f"http://127.0.0.1:{worker.web_port}/count/{word}/"
    with urllib.request.urlopen(page, timeout=10) as response:
        return json.load(response)

"""Private servers for the benchmarks: never the machine's shared ones, removed after.

One helper for every benchmark: a Redis of its own (Debian's redis-server when present,
else the embedded one) and, when asked, a migrated PostgreSQL of its own, in a
temporary folder the embedded servers' account can enter.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.embedded import EmbeddedPostgres, EmbeddedRedis, system_redis
from pipeline.migrations import migrate


@contextmanager
def private_redis(prefix: str = "livecoach-bench-") -> Iterator[str]:
    """A private Redis; its URL."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data = Path(tmp)
        data.chmod(0o711)
        with EmbeddedRedis(data, executable=system_redis()) as redis_url:
            yield redis_url


@contextmanager
def private_servers(prefix: str = "livecoach-bench-") -> Iterator[tuple[str, str]]:
    """A private Redis and a migrated private PostgreSQL (not durable: a benchmark's
    data need not survive a crash); their URLs."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data = Path(tmp)
        data.chmod(0o711)
        redis = EmbeddedRedis(data, executable=system_redis())
        with redis as redis_url, EmbeddedPostgres(data, durable=False) as db_url:
            migrate(db_url)
            yield redis_url, db_url


@contextmanager
def private_postgres(prefix: str = "livecoach-bench-") -> Iterator[str]:
    """A migrated private PostgreSQL alone (not durable); its URL."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data = Path(tmp)
        data.chmod(0o711)
        with EmbeddedPostgres(data, durable=False) as db_url:
            migrate(db_url)
            yield db_url

"""Shared fixtures: a real Redis and a real PostgreSQL for every test, isolated per test.

``LIVECOACH_TEST_REDIS_URL`` / ``LIVECOACH_TEST_DATABASE_URL`` point the suite at
existing servers (CI uses the machine's Redis 7 and PostgreSQL 15 this way); when they
are unset, the session starts the embedded servers (Redis 6.2, PostgreSQL 18) once.

Isolation: each test gets an empty Redis database (FLUSHDB of the configured db number
only, never FLUSHALL) and its own PostgreSQL database cloned from a migrated template.
Tests that kill or restart a server start their own with ``redis_server_factory``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from psycopg import sql

from pipeline.embedded import EmbeddedPostgres, EmbeddedRedis
from pipeline.migrations import migrate

#: The suite's samples are dated from fixed times (T0 in May 2026, the spec's example in
#: September 2025): the default window of accepted client times (7 days before the
#: server's clock) would refuse them. Every edge of the suite, in process or started
#: as a process, accepts five years back; tests/web/test_client_time.py checks the
#: default window itself by passing it explicitly.
os.environ.setdefault("LIVECOACH_CLIENT_TIME_PAST_S", str(5 * 365 * 86400))

TEST_REDIS_ENV = "LIVECOACH_TEST_REDIS_URL"
TEST_DATABASE_ENV = "LIVECOACH_TEST_DATABASE_URL"


def make_data_dir(prefix: str = "livecoach-test-") -> Path:
    """A fresh folder the embedded PostgreSQL account can enter (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session", autouse=True)
def private_data_dir() -> Iterator[Path]:
    """A throw-away default data folder for the session (never the user's own).

    Faust apps built by tests keep their working folders under the data folder; with
    the default one they would land in ``/var/lib/livecoach`` or the user's folder.
    """
    # Programs the tests start (Chromium writes ~/.cache/dconf) keep their caches and
    # settings in a throw-away folder too: the suite creates nothing in $HOME.
    home = make_data_dir("livecoach-xdg-")
    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    os.environ["XDG_CACHE_HOME"] = str(home / "cache")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    configured = os.environ.get("LIVECOACH_DATA_DIR")
    path = Path(configured) if configured else make_data_dir("livecoach-data-")
    if not configured:
        os.environ["LIVECOACH_DATA_DIR"] = str(path)
    try:
        yield path
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(home, ignore_errors=True)
        if not configured:
            os.environ.pop("LIVECOACH_DATA_DIR", None)
            shutil.rmtree(path, ignore_errors=True)


def _assert_stopped(pids: list[int]) -> None:
    alive = [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert not alive, f"embedded server processes still running after stop: {alive}"


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    """(redis_url, database_url) for the whole session."""
    redis_url = os.environ.get(TEST_REDIS_ENV)
    database_url = os.environ.get(TEST_DATABASE_ENV)
    data_dir = make_data_dir()
    started: list[EmbeddedRedis | EmbeddedPostgres] = []
    try:
        if not redis_url:
            server = EmbeddedRedis(data_dir)
            redis_url = server.start()
            started.append(server)
        if not database_url:
            pg = EmbeddedPostgres(data_dir, durable=False)
            database_url = pg.start()
            started.append(pg)
        yield redis_url, database_url
    finally:
        for server in reversed(started):
            server.stop()
        _assert_stopped([s.pid for s in started if s.pid is not None])
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def redis_url(service_urls: tuple[str, str]) -> Iterator[str]:
    """URL of an empty Redis database for this test."""
    url = service_urls[0]
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def template_database(service_urls: tuple[str, str]) -> Iterator[str]:
    """Name of a database with every migration applied, cloned for each test."""
    admin_url = service_urls[1]
    name = f"lc_template_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(_with_database(admin_url, name))
    yield name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_url(service_urls: tuple[str, str], template_database: str) -> Iterator[str]:
    """URL of a migrated database of this test's own, dropped afterwards."""
    admin_url = service_urls[1]
    name = f"lc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_database)
            )
        )
    yield _with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def empty_database_url(service_urls: tuple[str, str]) -> Iterator[str]:
    """URL of an empty (unmigrated) database of this test's own."""
    admin_url = service_urls[1]
    name = f"lc_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., EmbeddedRedis]]:
    """Start private redis-servers (to kill or restart in a test); all stopped afterwards.

    ``factory(appendonly=True)`` starts one on a free port and returns it.
    """
    servers: list[EmbeddedRedis] = []
    data_dir = make_data_dir("livecoach-redis-")

    def factory(*, appendonly: bool = False, port: int = 0) -> EmbeddedRedis:
        server = EmbeddedRedis(data_dir / str(len(servers)), appendonly=appendonly, port=port)
        server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def wire_checked() -> Iterator[None]:
    """Fail a test that received a frame the protocol's JSON Schema refuses."""
    from tests import wire_check

    wire_check.install()
    wire_check.take_violations()
    yield
    violations = wire_check.take_violations()
    assert not violations, "frames not valid against schema/protocol.schema.json:\n" + "\n".join(
        violations[:10]
    )


@pytest.fixture(autouse=True)
def garbage_collected() -> Iterator[None]:
    """Collect a test's garbage at its own teardown, not during a later test.

    An unclosed connection or stream writer warns from its finalizer when it is collected;
    left to the collector's own schedule, the warning (an error here) lands in whichever
    test runs then (CI, 2026-12-07: an unclosed redis Connection failed a worker-restart
    test, an asyncio StreamWriter a pure one). Collected here, it fails the test that
    leaked it, at its teardown.
    """
    yield
    gc.collect()

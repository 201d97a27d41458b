"""The embedded servers ask every client for their generated password (issue 15, 2 and 3).

Each test starts its own servers in a fresh data folder. "Another local account" is
``nobody``, reached with ``setpriv`` (the tests that need it skip when not root); it
runs the distribution's own clients (``psql``, ``redis-cli``), which know nothing of
livecoach.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from pipeline.embedded import (
    SYSTEM_USER,
    EmbeddedPostgres,
    EmbeddedRedis,
    _postgres_bin,
    _system_user,
)
from pipeline.errors import EmbeddedServerError
from tests.conftest import make_data_dir

pytestmark = pytest.mark.integration

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="switching to another account needs root")


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command as ``nobody`` with no supplementary groups and an empty environment."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *args],
        capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = make_data_dir("livecoach-sec-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postgres(data_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(data_dir, durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(data_dir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir)
    server.start()
    yield server
    server.stop()


def _private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"{path} has mode {oct(mode)}"


# -- PostgreSQL ------------------------------------------------------------------------


def test_postgres_wants_the_password(postgres: EmbeddedPostgres) -> None:
    url = f"postgresql://postgres@127.0.0.1:{postgres.port}/livecoach"
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(url, connect_timeout=5)
    wrong = f"postgresql://postgres:not-the-password@127.0.0.1:{postgres.port}/livecoach"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    with psycopg.connect(postgres.url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    _private(postgres.password_file)
    assert postgres.password_file.read_text().strip() in postgres.url
    hba = (postgres.pgdata / "pg_hba.conf").read_text()
    methods = {line.split()[-1] for line in hba.splitlines() if line and line[0] != "#"}
    assert methods == {"scram-sha-256"}


def test_postgres_stores_scram_verifiers(postgres: EmbeddedPostgres) -> None:
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
        verifier = row.fetchone()
    assert verifier is not None and str(verifier[0]).startswith("SCRAM-SHA-256$")


@needs_root
def test_postgres_refuses_another_local_account(postgres: EmbeddedPostgres) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("no psql client installed")
    url = f"postgresql://postgres@127.0.0.1:{postgres.port}/livecoach"
    done = _as_nobody(psql, "--no-password", url, "-c", "COPY (SELECT 1) TO PROGRAM 'id'")
    assert done.returncode != 0
    assert "no password supplied" in done.stderr
    # Nor can that account read the password or the cluster's files.
    for secret in (postgres.password_file, postgres.pgdata / "pg_hba.conf"):
        peek = _as_nobody("cat", str(secret))
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
    server = psutil.Process(postgres.pid)
    assert server.username() == SYSTEM_USER


def _trust_cluster(data_dir: Path) -> Path:
    """A cluster as livecoach made them before issue 15: ``initdb --auth=trust``."""
    account = _system_user()
    root = data_dir / "postgres"
    root.mkdir()
    run_as = {}
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
    pgdata = root / "data"
    subprocess.run(
        [str(_postgres_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
         "--no-instructions", "--no-sync"],
        check=True, capture_output=True, **run_as,  # type: ignore[call-overload]
    )  # fmt: skip
    return pgdata


def test_a_trust_cluster_is_upgraded(data_dir: Path) -> None:
    pgdata = _trust_cluster(data_dir)
    assert "trust" in (pgdata / "pg_hba.conf").read_text()
    server = EmbeddedPostgres(data_dir, durable=False)
    server.start()
    try:
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/livecoach")
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        _private(server.password_file)
        _private(pgdata / "pg_hba.conf")
    finally:
        server.stop()
    # And again: the upgraded cluster starts with the kept password, upgraded no more.
    again = EmbeddedPostgres(data_dir, durable=False)
    again.start()
    try:
        assert again.password == server.password
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        again.stop()


def test_a_lost_password_file_is_a_clear_error(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir, durable=False)
    server.start()
    server.stop()
    server.password_file.unlink()
    with pytest.raises(EmbeddedServerError, match=r"password.*missing") as caught:
        EmbeddedPostgres(data_dir, durable=False).start()
    assert "LIVECOACH_DATA_DIR" in str(caught.value)


# -- Redis -----------------------------------------------------------------------------


def _raw(port: int, *commands: bytes) -> bytes:
    """Inline commands on a bare socket (no client library, no AUTH); the replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(c + b"\r\n" for c in commands))
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_redis_wants_the_password(redis_server: EmbeddedRedis) -> None:
    replies = _raw(redis_server.port, b"PING", b"XADD live:0 * type message text forged")
    assert replies.count(b"-NOAUTH") == 2, replies
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_server.port, password="wrong").ping()
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.xlen("live:0") == 0  # the forged event never landed
        assert client.ping()
    finally:
        client.close()
    _private(redis_server.password_file)
    _private(redis_server.dir / "redis.conf")
    assert redis_server.password not in (redis_server.dir / "redis.conf").read_text()


@pytest.mark.parametrize(
    "command",
    [
        ("CONFIG", "SET", "dir", "/etc"),
        ("CONFIG", "GET", "requirepass"),
        ("DEBUG", "SLEEP", "0"),
        ("MODULE", "LOAD", "/tmp/evil.so"),
        ("ACL", "SETUSER", "default", "+@all"),
        ("REPLICAOF", "127.0.0.1", "1"),
        ("SHUTDOWN",),
    ],
)
def test_redis_refuses_dangerous_commands(
    redis_server: EmbeddedRedis, command: tuple[str, ...]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
        assert client.ping()  # still up, still ours
    finally:
        client.close()


def test_redis_keeps_what_livecoach_and_its_tests_use(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.client_setname("livecoach-test")
        client.xadd("s", {"a": 1})
        client.eval("return redis.call('XLEN', KEYS[1])", 1, "s")
        client.publish("chan", "x")
        client.flushdb()
        client.flushall()
        assert client.info("server")["redis_version"]
    finally:
        client.close()


@needs_root
def test_redis_refuses_another_local_account(redis_server: EmbeddedRedis) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("no redis-cli installed")
    port = str(redis_server.port)
    done = _as_nobody("redis-cli", "-p", port, "XADD", "live:0", "*", "text", "forged")
    assert "NOAUTH" in done.stdout + done.stderr
    peek = _as_nobody("cat", str(redis_server.password_file))
    assert peek.returncode != 0 and "Permission denied" in peek.stderr
    server = psutil.Process(redis_server.pid)
    assert server.username() == SYSTEM_USER
    assert os.stat(redis_server.dir).st_uid == server.uids().real  # it writes its own files

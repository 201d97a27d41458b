"""Secrets livecoach generates once and keeps in its data folder.

The JWT secret and the embedded PostgreSQL's and Redis's passwords each live in a file
of their own. Each file is

- readable by its owner only from the moment it exists: created with ``O_EXCL`` and
  mode 0600 (never written first and ``chmod``-ed after);
- complete before anyone can read it: written under a temporary name, flushed, then
  renamed into place, so a reader sees no file or the whole secret, never a part;
- created once: under an exclusive ``flock`` on a lock file beside it, so processes
  starting together on a fresh folder agree on one value.

``fcntl.flock`` and ``os.replace`` are a few lines of the standard library; a locking
package would add a dependency for no more than that. POSIX only, like the rest of
livecoach's embedded servers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import secrets
import stat
from pathlib import Path

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

#: Bytes of randomness in a generated secret (encoded as URL-safe base64: 43+ characters).
SECRET_BYTES = 32
#: A secret file must hold at least this many characters.
MIN_SECRET_CHARS = 32


def generate() -> str:
    """A fresh secret: URL-safe, so it may go into a connection URL unquoted."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _read(path: Path, variable: str) -> str:
    info = path.stat()
    if info.st_mode & 0o077:
        # A file from an older livecoach (written 0644 and chmod-ed later) or copied
        # carelessly: close it now; the secret may have been read already, so say so.
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
        log.warning(
            "%s was readable by other accounts (mode %o); now 0600. Delete it to "
            "generate a new secret if others may have read it.",
            path,
            stat.S_IMODE(info.st_mode),
        )
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            variable,
            f"the secret in {path} has {len(value)} characters, fewer than "
            f"{MIN_SECRET_CHARS}; delete the file to have a new one generated",
        )
    return value


def read_or_create(path: Path, *, variable: str, owner: pwd.struct_passwd | None = None) -> str:
    """The secret kept in ``path``, generated there first if the file does not exist.

    ``owner``: the account the file is handed to (a server running as another account
    that must read it); the hand-over happens before the file appears under its name.
    ``variable`` names the setting for errors (``LIVECOACH_DATA_DIR`` usually).
    """
    if path.exists():
        return _read(path, variable)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if not path.exists():  # another process may have created it while we waited
            _create(path, owner)
        return _read(path, variable)
    finally:
        os.close(lock_fd)  # releases the lock


def _create(path: Path, owner: pwd.struct_passwd | None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with_excl = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, with_excl, 0o600)
    except FileExistsError:
        tmp.unlink()  # left by a crashed process with our pid; we hold the lock
        fd = os.open(tmp, with_excl, 0o600)
    try:
        os.write(fd, (generate() + "\n").encode())
        if owner is not None:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("generated a new secret in %s", path)

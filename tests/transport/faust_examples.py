"""Run Faust's own example programs, unchanged, on a private Redis, and read what they did.

Faust's ``examples/`` folder is not in its wheel, only in the source distribution on
PyPI: :func:`examples_root` downloads the sdist of the installed version once into a
cache folder and extracts only ``examples/`` (the sdist also holds Faust's own source,
which must not shadow the installed, compiled Faust on ``PYTHONPATH``).

Programs run as ``faust -A examples.<module> worker`` (or a command) with the broker
given by Faust's ``BROKER_URL`` environment setting, which overrides the ``broker=``
an example passes to ``faust.App`` (the worker's ``-b`` is ``--web-bind`` in Faust
0.15, not the broker). Verification reads Redis directly, never through Faust.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis
from transport_workers import FAUST, Worker

from pipeline.transport import streams

#: Where the extracted examples are kept between runs (one folder per Faust version):
#: in the virtual environment that runs the tests, which is where Faust is too, so that
#: the suite creates no folder outside the clone and the data folder.
CACHE_ROOT = Path(
    os.environ.get("LC_FAUST_EXAMPLES_CACHE", Path(sys.prefix) / "cache" / "faust-examples")
)
#: Faust's worker sends what a program prints to its log as WARNING lines.
PRINTED = re.compile(r"^\[[^]]+\] \[\d+\] \[WARNING\] (.*?) ?$", re.MULTILINE)


class ExamplesUnavailable(Exception):
    """The sdist could not be downloaded (PyPI unreachable): the tests skip."""


#: The package index (PEP 691 JSON); ``pip download`` would also build the sdist's
#: metadata, which took over 3 minutes on a loaded machine.
INDEX_URL = os.environ.get("LC_PACKAGE_INDEX", "https://pypi.org/simple")


def _download_sdist(project: str, release: str) -> bytes:
    """The source distribution of ``project==release`` from the index, hash checked."""
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    names = {f"{project.replace('-', '_')}-{release}.tar.gz", f"{project}-{release}.tar.gz"}
    try:
        request = urllib.request.Request(f"{INDEX_URL}/{project}/", headers=accept)
        with urllib.request.urlopen(request, timeout=30) as response:
            files = json.load(response)["files"]
        entry = next(f for f in files if f["filename"] in names)
        with urllib.request.urlopen(entry["url"], timeout=60) as response:
            data: bytes = response.read()
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ExamplesUnavailable(
            f"could not download the {project} {release} sdist from {INDEX_URL}: {exc!r}"
        ) from None
    digest = entry.get("hashes", {}).get("sha256")
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ExamplesUnavailable(f"the {project} {release} sdist failed its sha256 check")
    return data


def examples_root(cache_root: Path = CACHE_ROOT) -> Path:
    """A folder whose ``examples/`` is Faust's, for the installed version."""
    faust_version = version("faust-streaming")
    root = cache_root / faust_version
    if (root / "examples" / "hello_world.py").exists():
        return root
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root) as tmp:
        archive_path = Path(tmp) / "faust-streaming.tar.gz"
        archive_path.write_bytes(_download_sdist("faust-streaming", faust_version))
        staging = Path(tmp) / "root"
        with tarfile.open(archive_path) as archive:
            members = [m for m in archive.getmembers() if m.name.split("/")[1:2] == ["examples"]]
            for member in members:
                member.name = member.name.split("/", 1)[1]
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, members=members, filter="data")
            else:  # Python before 3.11.4 (Debian 12's python3 is 3.11.2): no filters
                for member in members:
                    path = Path(member.name)
                    if (
                        not (member.isfile() or member.isdir())
                        or path.is_absolute()
                        or ".." in path.parts
                    ):
                        raise RuntimeError(f"unexpected member in the sdist: {member.name}")
                archive.extractall(staging, members=members)
        # A rename, so that a concurrent or interrupted run never sees half a folder.
        try:
            staging.rename(root)
        except OSError:
            if not (root / "examples" / "hello_world.py").exists():
                raise
    return root


def _example_env(root: Path, url: str, web_port: int, extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(root),
        "BROKER_URL": url,
        "WEB_PORT": str(web_port),
        "WEB_BIND": "127.0.0.1",
        # What a command prints must reach us even when it is killed in Faust's stop
        # (see test_rpc_ask_from_a_command), whatever the caller's environment says.
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class ExampleProgram(Worker):
    """``faust -A <module> <command>`` (by default ``worker``); restartable in its folder.

    The folder is the program's working directory, so a restarted worker finds the
    example's local state (``rocksdb://`` tables) where the previous process left it,
    and its web port stays the same, as for a worker restarted in place. A module
    named ``pkg.mod:main`` runs as ``python -m pkg.mod`` (an example that builds its
    agents in ``main()``).
    """

    def __init__(self, url: str, root: Path, module: str, *command: str, **env: str) -> None:
        super().__init__(url, **env)
        # A prefix of its own, so that its folder is not taken for a faust_app worker's.
        self.dir.rmdir()
        self.dir = Path(tempfile.mkdtemp(prefix="lc-example-"))
        self.log_path = self.dir / "worker.log"
        self.root = root
        self.module = module
        self.command = command or ("worker", "-l", "info")
        #: Where in the log each start began, to tell one run's output from another's.
        self.run_starts: list[int] = []

    def start(self, *, script: str = "") -> ExampleProgram:
        del script  # the example is the script
        self.run_starts.append(len(self.log()) if self.log_path.exists() else 0)
        module, _, main = self.module.partition(":")
        program = [sys.executable, "-m", module] if main else [FAUST, "-A", module]
        env = _example_env(self.root, self.url, self.web_port, self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*program, *self.command],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def printed(self, run: int | None = None) -> list[str]:
        """Lines the program printed (all runs, or run ``run`` counted from 0)."""
        text = self.log()
        if run is not None:
            end = self.run_starts[run + 1] if run + 1 < len(self.run_starts) else len(text)
            text = text[self.run_starts[run] : end]
        return PRINTED.findall(text)


def run_command(
    url: str,
    root: Path,
    module: str,
    *args: str,
    timeout_s: float,
    cwd: Path | None = None,
    may_hang: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``faust -A <module> <command> ...`` to its end; kill it after ``timeout_s``
    (an error, unless ``may_hang``: then the result has the return code -9)."""
    from pipeline.embedded import free_port

    with tempfile.TemporaryDirectory(prefix="lc-example-cmd-") as tmp:
        process = subprocess.Popen(
            [FAUST, "-A", module, *args],
            cwd=cwd or tmp,
            env=_example_env(root, url, free_port(), {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            out, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
            if may_hang:
                return subprocess.CompletedProcess(process.args, -9, out, "")
            raise AssertionError(
                f"faust -A {module} {' '.join(args)} did not end in {timeout_s} s:\n{out[-3000:]}"
            ) from None
        return subprocess.CompletedProcess(process.args, process.returncode, out, "")


def records(client: redis.Redis, topic: str, partitions: int) -> Iterator[dict[str, Any]]:
    """Every entry of a topic as stored: partition, offset, key, raw value, timestamp (ms)."""
    for p in range(partitions):
        entries = client.xrange(streams.stream_key(topic, p), "-", "+") or []
        for entry_id, fields in entries:
            key, value, _headers, timestamp_ms = streams.decode_entry(fields)
            yield {
                "partition": p,
                "offset": streams.offset_of(entry_id),
                "key": key,
                "value": value,
                "timestamp_ms": timestamp_ms,
            }


def json_values(client: redis.Redis, topic: str, partitions: int) -> list[Any]:
    """The JSON values of a topic, partition by partition."""
    return [json.loads(r["value"]) for r in records(client, topic, partitions)]


def table_state(client: redis.Redis, app_id: str, table: str, partitions: int) -> dict[Any, Any]:
    """A table as its changelog says: the latest value of every (JSON) key, without deletes.

    "Latest" by the records' timestamps: a table key written from events of several
    source partitions (a table not keyed like its stream) has records in several
    changelog partitions. Keys are decoded from JSON and made hashable (a windowed
    table's key ``[key, [start, end]]`` becomes ``(key, (start, end))``).
    """
    state: dict[Any, Any] = {}
    changelog = list(records(client, f"{app_id}-{table}-changelog", partitions))
    for rec in sorted(changelog, key=lambda rec: int(rec["timestamp_ms"])):
        key = _hashable(json.loads(rec["key"]))
        if rec["value"]:
            state[key] = json.loads(rec["value"])
        else:  # a delete (tombstone)
            state.pop(key, None)
    return state


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def ready(program: ExampleProgram) -> bool:
    """Whether the latest start of a worker has reported ready."""
    return program.log()[program.run_starts[-1] :].count("[^Worker]: Ready") > 0

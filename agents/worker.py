"""``livecoach worker``: run the Faust apps of :mod:`agents.app`.

``--app live`` runs the live app, ``--app store`` the persistence app, each as a
normal Faust worker in this process. ``--app all`` (the default) runs both as child
processes and stops both when either ends or when it is told to stop, so an operator
starts one command per machine and still gets two independent consumer groups.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from pipeline.embedded import die_with_parent
from pipeline.gcpolicy import FULL_GC_EVERY_S, defer_full_collections, full_collection
from pipeline.settings import Settings

log = logging.getLogger(__name__)


#: Niceness of the store worker (0 is the live worker's): it writes in batches and can
#: lag by a second, the live path cannot. At 10, a live worker sharing its core gets
#: about nine tenths of it while both are busy.
STORE_NICENESS = 10


def run_app(settings: Settings, *, app: str, redis_url: str, database_url: str) -> int:
    """Run one Faust worker in the foreground until SIGINT/SIGTERM."""
    # Imported here: the ``all`` supervisor only spawns children and need not load Faust.
    import faust
    import mode.loop

    from agents.app import create_live_app, create_store_app

    # uvloop makes the event loop's per-event bookkeeping, a fifth of a busy worker's
    # time on asyncio's own loop, several times cheaper.
    mode.loop.use("uvloop")

    from pipeline import logs, tracing

    # Before the app is built: its agents look the tracer up when they start.
    tracing.configure(f"livecoach-{app}")
    if app == "live":
        faust_app = create_live_app(settings, redis_url=redis_url)
    else:
        faust_app = create_store_app(
            settings, redis_url=redis_url, database_url=database_url, web_enabled=True
        )
        # Storage is batched and may lag by a second; the live app may not. Where both
        # share cores, the scheduler gives the live worker the CPU first.
        os.nice(STORE_NICENESS)
    worker = faust.Worker(
        faust_app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
        # Faust replaces the root logger's handlers: JSON lines if asked for, else its own.
        logging_config=(
            logs.handler_config("json", settings.log_level)
            if settings.log_format == "json"
            else None
        ),
    )
    # Faust's terminal spinner sets the root logger to DEBUG (so that it spins on every
    # record) whenever the level is WARNING or above: every debug call on the hot path
    # is then formatted. No spinner, no DEBUG.
    worker.spinner = None
    _collect_garbage_in_the_background(faust_app)
    try:
        worker.execute_from_commandline()  # exits the process via sys.exit when it stops
    finally:
        tracing.shutdown()  # export the spans still buffered
    return 0


def _collect_garbage_in_the_background(app: Any) -> None:
    """Full collections on a Faust timer, never by allocation count (see pipeline.gcpolicy)."""
    defer_full_collections()

    async def collect() -> None:
        full_collection()

    app.timer(FULL_GC_EVERY_S)(collect)


def run_all(redis_url: str, database_url: str) -> int:
    """Run the live and store workers as children; stop both together."""
    env = {**os.environ, "LIVECOACH_REDIS_URL": redis_url, "LIVECOACH_DATABASE_URL": database_url}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "--app", name],
            env=env,
            stdin=subprocess.DEVNULL,
            # A kill -9 of this supervisor must not leave workers behind.
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        for name in ("live", "store")
    ]
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    status = 0
    for child in children:
        try:
            status = status or child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            status = status or child.wait()
    return 0 if stopping else status or 1


def configured_urls(settings: Settings) -> tuple[str, str]:
    """The configured Redis and PostgreSQL URLs, checked; a lone worker embeds nothing."""
    from pipeline.errors import ConfigError
    from pipeline.runtime import check_postgres, check_redis
    from pipeline.settings import env_name

    for field in ("redis_url", "database_url"):
        if getattr(settings, field) is None:
            raise ConfigError(
                env_name(field),
                "not set; a worker must share its servers with the edges "
                "(`livecoach up` runs everything on one machine with embedded servers)",
            )
    assert settings.redis_url is not None and settings.database_url is not None
    check_redis(settings.redis_url)
    check_postgres(settings.database_url)
    return settings.redis_url, settings.database_url

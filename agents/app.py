"""The Faust apps of livecoach, built by factories (nothing Faust exists at import time).

Two applications, two consumer groups, so that a PostgreSQL outage never stalls the
live path:

- :func:`create_live_app` (group ``livecoach``): the ``process`` agent reads
  ``samples``, keeps each session's state in the changelog-backed ``sessions`` table
  (and decoupling blocks in ``decoupling-blocks``), and publishes ``metrics_update``,
  ``alert`` and ``session_event`` to ``live``. The logic is :mod:`agents.processing`.
- :func:`create_store_app` (group ``livecoach-store``): the ``store_samples`` agent
  writes every sample to ``live_metrics``; ``store_events`` (reading ``store``, where
  the live app copies its alerts and stops) writes alerts to
  ``live_alerts`` and the summary of a stopped session to ``training_sessions``. Both
  retry with backoff while PostgreSQL is away: their offsets are not committed, the
  samples wait in the stream, and the live app is not affected.

All writes are idempotent, so at-least-once delivery stores everything exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, cast

import faust
import orjson
import psycopg
from opentelemetry.trace import SpanKind
from psycopg.types.json import Jsonb

from agents import leaderboard as lb
from agents.board_publisher import BoardPublisher
from agents.group_state import BoardStore
from agents.observability import WorkerMetrics, install
from agents.processing import Processor
from agents.write_behind import DeferredDeletes, Hold, OwnedTable, WriteBehind, WriteOnCommit
from pipeline import tracing
from pipeline.constants import (
    APP_ID,
    GROUPS_TOPIC,
    LIVE_TOPIC,
    SAMPLES_TOPIC,
    STORE_REJECTED_KEY,
    STORE_TOPIC,
)
from pipeline.db import (
    MetricRow,
    closing_idle_sessions,
    finish_session,
    insert_metric_rows,
    metric_rows,
    replace_group_standings,
    utc_time,
)
from pipeline.records import ControlRecord, group_key, session_key
from pipeline.retention import apply_topic_retentions
from pipeline.settings import Settings
from pipeline.transport.clients import connect
from pipeline.transport.consumer import (
    BATCH_OFFSETS_HEADER,
    BATCH_TRACEPARENTS_HEADER,
    batch_offsets,
    batch_traceparents,
)
from pipeline.transport.driver import read_in_batches

log = logging.getLogger(__name__)

STORE_APP_ID = f"{APP_ID}-store"
#: Most events (each a batch read of ``samples``) the store agent gathers, how long it
#: waits for them, and the most rows it writes in one statement.
STORE_BATCH = 200
STORE_BATCH_WITHIN_S = 0.05
STORE_ROWS_PER_INSERT = 20_000
#: The store agent reads ``samples`` at most this often, so that each read is a batch.
STORE_READ_LINGER_S = 0.05
_RETRY_MAX_S = 10.0
#: A session's state is saved (one changelog entry) at most this often, see
#: agents.write_behind: at 1 Hz, once per four samples. A killed worker replays about
#: this much of each session.
STATE_WRITE_S = 3.0
#: How often the leaderboard agent's timer looks for boards due (a group whose members
#: went quiet still gets its last delta out within a second and this).
BOARD_TIMER_S = 0.25


def faust_data_dir(settings: Settings, app_id: str) -> Path:
    """The Faust app's working folder: under the data folder, never the current one."""
    return settings.data_dir / "faust" / app_id


def _base_config(settings: Settings, redis_url: str, app_id: str) -> dict[str, Any]:
    folder = faust_data_dir(settings, app_id)
    folder.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    # Faust formats its datadir with str.format (``{conf.name}``): escape the braces.
    datadir = str(folder).replace("{", "{{").replace("}", "}}")
    return {
        "id": app_id,
        "datadir": datadir,
        "broker": redis_url,
        "store": "memory://",
        "topic_partitions": settings.samples_partitions,
        "key_serializer": "raw",
        "value_serializer": "json",
        "web_host": "127.0.0.1",
        "broker_commit_interval": 1.0,
        # Stop without draining buffered events: they are uncommitted, so the next
        # worker reads them again; draining would hang a store app whose database is
        # down (it retries until PostgreSQL returns).
        "stream_wait_empty": False,
        "producer_linger": 0.0,
    }


class _StrKeyed(MutableMapping[str, list[float]]):
    """A bytes-keyed table seen through str keys (the decoupling block store's)."""

    def __init__(self, table: MutableMapping[bytes, list[float]]) -> None:
        self.table = table

    def __getitem__(self, key: str) -> list[float]:
        value = self.table.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: list[float]) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.table)

    def __len__(self) -> int:
        return len(self.table)


def create_live_app(
    settings: Settings,
    *,
    redis_url: str,
    app_id: str = APP_ID,
    web_port: int | None = None,
    web_enabled: bool = True,
    topic_prefix: str = "",
) -> faust.App:
    """The app that turns samples into live metrics, alerts and session events.

    ``topic_prefix`` isolates a run from the live topics (``livecoach analyze`` uses it
    on a shared Redis).
    """
    app = faust.App(
        **_base_config(settings, redis_url, app_id),
        web_port=web_port if web_port is not None else settings.worker_web_port,
        web_enabled=web_enabled,
    )
    samples = app.topic(topic_prefix + SAMPLES_TOPIC, partitions=settings.samples_partitions)
    read_in_batches(app, samples.get_topic_name())
    live = app.topic(topic_prefix + LIVE_TOPIC, partitions=settings.live_partitions)
    store = app.topic(topic_prefix + STORE_TOPIC, partitions=settings.samples_partitions)
    # ``key_type=bytes``: a table's key serializer follows its key type, JSON when none is
    # given, and a JSON-decoded changelog key b"12" came back from recovery as the int 12:
    # every session restarted from an empty state after a restart.
    # ``use_partitioner``: the write-behind store also writes states when a commit starts,
    # outside any event; the producer's partitioner puts each key where its samples are.
    partitions = settings.samples_partitions
    sessions = app.Table(
        "sessions", default=None, key_type=bytes, partitions=partitions, use_partitioner=True
    )
    blocks = _owned_table(app, "decoupling-blocks", partitions)
    # A block key is "<session id>/<output>/<index>": its owner is the session.
    block_store = DeferredDeletes(_StrKeyed(blocks), lambda key: key.partition("/")[0].encode())
    processor = Processor(block_store=block_store, alerts=settings.alerts_enabled)
    states = WriteBehind(
        sessions,
        lambda key, state: processor.snapshot(
            key.decode() if isinstance(key, bytes) else str(key), state
        ),
        every_s=STATE_WRITE_S,
        written=block_store.flush,
    )
    groups = app.topic(topic_prefix + GROUPS_TOPIC, partitions=partitions)
    # 500 members at 1 Hz are 500 inputs a second for one group's agent: read in batches.
    read_in_batches(app, groups.get_topic_name())
    # One board per group (agents.leaderboard): a small header per group and a row per
    # member, written behind like the sessions' (agents.group_state).
    headers = app.Table(
        "group-boards", default=None, key_type=bytes, partitions=partitions, use_partitioner=True
    )
    member_rows = _owned_table(app, "group-members", partitions)
    boards = BoardStore(headers, member_rows, every_s=STATE_WRITE_S)
    app.sensors.add(WriteOnCommit(states, boards.headers, boards.members))
    metrics = install(app, app_id)
    app.livecoach_metrics = metrics  # type: ignore[attr-defined]  # for tests and benches
    publisher = BoardPublisher(app, redis_url, live, store, groups, topic_prefix, boards.forget)

    @app.agent(groups, name="leaderboard")
    async def leaderboard(stream: faust.StreamT[Any]) -> None:
        await publisher.start()
        async for event in cast(faust.Stream[Any], stream).noack().events():
            started = time.perf_counter()
            hold = Hold(event)
            touched: dict[bytes, lb.Board] = {}
            for record, _ in _records(event):
                if not isinstance(record, dict) or not isinstance(record.get("group_id"), str):
                    log.warning("skipping a malformed groups record at %s", event.message.tp)
                    continue
                key = group_key(record["group_id"])
                board, _ = boards.checkout(key, record["group_id"])
                if publisher.boards.get(key) is not board:
                    lb.request_full(board)  # new here, or recovered: start with a full board
                    publisher.boards[key] = board
                if lb.apply(board, record):
                    await publisher.publish(key, board, final=True)
                    touched.pop(key, None)
                else:
                    touched[key] = board
                boards.checkin(key, board, record, hold)
            # Once per read: a board due holds every input the read brought.
            for key, board in touched.items():
                await publisher.publish_due(key, board)
            hold.release()
            metrics.processed("leaderboard", time.perf_counter() - started)

    async def publish_quiet_boards() -> None:
        # Boards whose members went quiet: only what is already in memory is published
        # (the tables are written by the agent, never from here).
        for key, board in list(publisher.boards.items()):
            await publisher.publish_due(key, board)

    app.timer(BOARD_TIMER_S)(publish_quiet_boards)

    @app.agent(samples, name="process")
    async def process(stream: faust.StreamT[Any]) -> None:
        # Events go to the transport's producer as orjson bytes: Faust's Topic.send
        # (codecs, sensors, a declaration check and a FutureMessage per event) cost
        # more than computing the event. The topics are declared once, here.
        await live.maybe_declare()
        await store.maybe_declare()
        await groups.maybe_declare()
        retention_client = await connect(redis_url)
        try:
            await apply_topic_retentions(retention_client, settings, topic_prefix)
        finally:
            await retention_client.aclose()
        send = app.producer.send
        live_name, store_name = live.get_topic_name(), store.get_topic_name()
        groups_name = groups.get_topic_name()
        tracer = tracing.tracer()  # None: tracing off, no per-record work
        event_out, processed = metrics.event_out, metrics.processed
        # Acked by the write-behind store once the state holding the record is saved.
        async for event in cast(faust.Stream[Any], stream).noack().events():
            started = time.perf_counter()
            hold = Hold(event)
            records = _records(event)
            live_out = stored = group_out = 0  # counted once per read, not per event
            parents = _traceparents(event, len(records)) if tracer is not None else None
            for i, (record, offset) in enumerate(records):
                if not isinstance(record, dict) or not isinstance(record.get("session_id"), str):
                    log.warning("skipping a malformed samples record at %s", event.message.tp)
                    continue
                key = session_key(record["session_id"])
                span = headers = None
                if parents is not None and tracer is not None:
                    span, headers = _process_span(tracer, parents[i], event, offset, record)
                out = processor.process(states.checkout(key), record, snapshot=False, offset=offset)
                # Publish before saving the state: a worker killed in between replays the
                # record and publishes again (same deterministic ids; the store ignores
                # the repeat and the edge drops it) instead of losing what it raised.
                for live_event in out.events:
                    value = orjson.dumps(live_event)
                    await send(live_name, key, value, None, None, headers)
                    if is_stored(live_event):
                        await send(store_name, key, value, None, None, None)
                        stored += 1
                live_out += len(out.events)
                for group_input in out.group_inputs:
                    value = orjson.dumps(group_input)
                    await send(
                        groups_name, group_key(group_input["group_id"]), value, None, None, None
                    )
                group_out += len(out.group_inputs)
                states.checkin(key, out.state, hold)
                if span is not None:
                    span.set_attribute("livecoach.events_out", len(out.events))
                    span.end()
            hold.release()
            event_out(live_name, live_out)
            event_out(store_name, stored)
            event_out(groups_name, group_out)
            processed("process", time.perf_counter() - started)

    return app


def _owned_table(app: faust.App, name: str, partitions: int) -> Any:
    """A table of ``<owner>/...`` keys kept in the owner's partition (OwnedTable)."""
    table = OwnedTable(
        app, name=name, default=None, key_type=bytes, partitions=partitions,
        beacon=app.tables.beacon,
    )  # fmt: skip
    return app.tables.add(table)


def _traceparents(event: faust.EventT[Any], count: int) -> list[bytes | None]:
    """The ``traceparent`` of each record of a ``samples`` event (None: untraced)."""
    headers = dict(event.message.headers or ())
    if not isinstance(event.value, list):
        return [headers.get(tracing.TRACEPARENT)]
    return batch_traceparents(headers.get(BATCH_TRACEPARENTS_HEADER), count)


def _process_span(
    tracer: Any, parent: bytes | None, event: faust.EventT[Any], offset: int | None, record: Any
) -> tuple[Any, dict[str, bytes] | None]:
    """The live agent's span for one traced record, and the headers naming it as the
    parent of the events it publishes; (None, None) for an untraced record."""
    context = tracing.parent_context(parent)
    if context is None:
        return None, None
    tp = event.message.tp
    span = tracer.start_span(
        "live process",
        context=context,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "redis",
            "messaging.destination.name": tp.topic,
            "messaging.destination.partition.id": str(tp.partition),
            "messaging.message.id": str(offset),
            "livecoach.session_id": str(record.get("session_id")),
            "livecoach.record_kind": str(record.get("kind")),
        },
    )
    return span, {tracing.TRACEPARENT: tracing.traceparent(span)}


def _values(value: object) -> list[Any]:
    """The records of a ``samples`` value: a batch read (a list), or a single record."""
    return value if isinstance(value, list) else [value]


def _records(event: faust.EventT[Any]) -> list[tuple[Any, int | None]]:
    """The records of a ``samples`` event with their offsets: a batch read, or one record."""
    message = event.message
    if not isinstance(event.value, list):
        return [(event.value, message.offset)]
    header = dict(message.headers or ()).get(BATCH_OFFSETS_HEADER)
    if header is None:
        return [(record, None) for record in event.value]
    return list(zip(event.value, batch_offsets(header), strict=True))


async def _retrying(what: str, write: Callable[[], Awaitable[None]]) -> None:
    """Run ``write`` until it succeeds, backing off; the stream holds the data meanwhile."""
    delay = 0.2
    while True:
        try:
            await write()
            return
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
            log.warning(
                "PostgreSQL unavailable while %s (%s); retrying in %.1f s", what, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)


class _Database:
    """One lazily (re)opened connection for a store agent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self.conn

    async def reset(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        self.conn = None


def _rows_of(record: dict[str, Any]) -> list[MetricRow]:
    """The rows of a ``samples`` record (ValueError, TypeError or KeyError when one of
    its samples cannot be stored: the record is skipped whole)."""
    if record.get("kind") != "samples":
        return []
    session_id = str(record["session_id"])
    rows: list[MetricRow] = []
    for sample in record.get("samples", []):
        rows.extend(metric_rows(session_id, float(sample["t"]), sample))
    return rows


#: What a record that cannot be stored raises: a malformed or out-of-range value in
#: Python (a year past 9999), or PostgreSQL's refusal of its data. Such a record is
#: skipped, logged and counted (:class:`Rejects`); it is never retried, since it would
#: fail the same way forever and hold up every record behind it.
UNSTORABLE = (
    ValueError, TypeError, KeyError, OverflowError, psycopg.DataError, psycopg.IntegrityError
)  # fmt: skip


class Rejects:
    """Counts the records the store app skipped, by kind, in the Redis hash
    :data:`~pipeline.constants.STORE_REJECTED_KEY` (shared by every store worker), and
    logs each with its reason."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.counts: dict[str, int] = {}

    async def note(self, kind: str, record: object, exc: BaseException) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        text = orjson.dumps(record, default=str)[:300].decode(errors="replace")
        log.error("store: skipping a %s that cannot be stored (%s: %s): %s",
                  kind, type(exc).__name__, exc, text)  # fmt: skip
        try:
            client = await connect(self.redis_url)
            try:
                await client.hincrby(STORE_REJECTED_KEY, kind, 1)
            finally:
                await client.aclose()
        except Exception as count_exc:  # the count is best effort; the log line is not
            log.warning("store: could not count a rejected %s: %s", kind, count_exc)


async def store_alert(conn: psycopg.AsyncConnection[Any], event: dict[str, Any]) -> None:
    alert = event["alert"]
    await conn.execute(
        "INSERT INTO live_alerts (id, live_session_id, user_id, rule, metric, severity, message,"
        " current_value, threshold, triggered_at, payload)"
        " SELECT %s, s.id, %s, %s, %s, %s, %s, %s, %s, %s, %s"
        " FROM live_training_sessions s WHERE s.id = %s"
        " ON CONFLICT (id) DO NOTHING",
        (
            alert["id"],
            event["user_id"],
            alert["rule"],
            alert["metric"],
            alert["severity"],
            alert["message"],
            alert.get("current"),
            alert.get("threshold"),
            utc_time(float(alert.get("fired_at_s") or event["timestamp"])),
            Jsonb(alert),
            event["session_id"],
        ),
    )


def create_store_app(
    settings: Settings,
    *,
    redis_url: str,
    database_url: str,
    app_id: str = STORE_APP_ID,
    web_port: int | None = None,
    web_enabled: bool = False,
) -> faust.App:
    """The app that persists samples, alerts and session summaries to PostgreSQL.

    Its web server (off unless asked: ``livecoach worker --app store`` asks) serves
    only ``/metrics``.
    """
    app = faust.App(
        **_base_config(settings, redis_url, app_id),
        web_enabled=web_enabled,
        web_port=web_port if web_port is not None else settings.store_web_port,
    )
    metrics: WorkerMetrics = install(app, app_id)
    app.livecoach_metrics = metrics  # type: ignore[attr-defined]
    samples = app.topic(SAMPLES_TOPIC, partitions=settings.samples_partitions)
    read_in_batches(app, SAMPLES_TOPIC, linger_s=STORE_READ_LINGER_S)
    store = app.topic(STORE_TOPIC, partitions=settings.samples_partitions)
    samples_db = _Database(database_url)
    live_db = _Database(database_url)

    rejects = Rejects(redis_url)
    sweep_db = _Database(database_url)

    async def close_idle_sessions() -> None:
        # Every store worker sweeps; the UPDATE's row locks let one of them close each
        # session (pipeline.db.closing_idle_sessions). The stop goes to ``samples`` like
        # an edge's, so the live agent publishes its session_event with the summary and
        # the store agent writes the summary.
        try:
            await _close_idle(app, await sweep_db.get(), settings.session_idle_s)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            await sweep_db.reset()
            log.warning("PostgreSQL unavailable while closing idle sessions (%s)", exc)

    app.timer(settings.session_idle_check_s)(close_idle_sessions)

    @app.agent(samples, name="store_samples")
    async def store_samples(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for values in stream.take(STORE_BATCH, within=STORE_BATCH_WITHIN_S):
            started = time.perf_counter()
            records: list[list[MetricRow]] = []
            for value in values:
                for record in _values(value):
                    if not isinstance(record, dict):
                        continue
                    try:
                        records.append(_rows_of(record))
                    except UNSTORABLE as exc:
                        await rejects.note("samples", record, exc)

            async def write(records: list[list[MetricRow]] = records) -> None:
                try:
                    conn = await samples_db.get()
                    await _insert_records(conn, records, rejects)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    await samples_db.reset()
                    raise

            await _retrying("storing samples", write)
            metrics.processed("store_samples", time.perf_counter() - started)
            yield None

    @app.agent(store, name="store_events")
    async def store_events(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream:
            if not is_stored(event) and not _is_standings(event):
                continue
            started = time.perf_counter()

            async def write(event: dict[str, Any] = event) -> None:
                try:
                    await _store_live_event(await live_db.get(), event)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    await live_db.reset()
                    raise
                except UNSTORABLE as exc:
                    kind = {"alert": "alert", "group_standings": "standings"}.get(
                        str(event.get("type")), "summary"
                    )
                    await rejects.note(kind, event, exc)

            await _retrying(f"storing a {event.get('type')}", write)
            metrics.processed("store_events", time.perf_counter() - started)
            yield None

    return app


async def _close_idle(app: faust.App, conn: psycopg.AsyncConnection[Any], idle_s: float) -> None:
    async with closing_idle_sessions(conn, idle_s) as idle:
        now_ms = int(time.time() * 1000)
        for session in idle:
            record = ControlRecord(
                session_id=session.session_id,
                user_id=session.user_id,
                ingest_ms=now_ms,
                action="stop",
                # The summary ends at the last activity, not an idle hour later.
                at_ms=int(session.last_active_s * 1000),
                payload={"reason": "idle", "idle_s": idle_s},
            )
            key = session_key(session.session_id)
            value = record.model_dump_json().encode()
            await app.producer.send(SAMPLES_TOPIC, key, value, None, None, None)
        if idle:
            await app.producer.flush()
            log.info("closed %d idle session(s) (no activity for %g s)", len(idle), idle_s)


async def _insert_records(
    conn: psycopg.AsyncConnection[Any], records: list[list[MetricRow]], rejects: Rejects
) -> None:
    """Insert the rows of ``records`` in as few statements as possible; if PostgreSQL
    refuses a statement's data, insert record by record and skip the ones refused."""
    rows = [row for record in records for row in record]
    try:
        for i in range(0, len(rows), STORE_ROWS_PER_INSERT):
            await insert_metric_rows(conn, rows[i : i + STORE_ROWS_PER_INSERT])
    except (psycopg.DataError, psycopg.IntegrityError):
        for record in records:
            try:
                await insert_metric_rows(conn, record)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                session = record[0].session_id if record else "?"
                await rejects.note("samples", {"session_id": session, "rows": len(record)}, exc)


def _is_standings(event: object) -> bool:
    """A group's final standings (the leaderboard agent's, see docs/groups.md)."""
    return isinstance(event, dict) and event.get("type") == "group_standings"


def is_stored(event: object) -> bool:
    """Alerts and stops are stored; metrics updates are not (samples are, by the other agent)."""
    if not isinstance(event, dict):
        return False
    kind = event.get("type")
    return kind == "alert" or (kind == "session_event" and event.get("event") == "stop")


async def _store_live_event(conn: psycopg.AsyncConnection[Any], event: dict[str, Any]) -> None:
    if event["type"] == "alert":
        await store_alert(conn, event)
    elif event["type"] == "group_standings":
        await replace_group_standings(conn, str(event["group_id"]), event["rows"])
    else:
        await _store_summary(conn, event)


async def _store_summary(conn: psycopg.AsyncConnection[Any], event: dict[str, Any]) -> None:
    summary = event.get("summary") or {}
    started = event.get("started_at") or event["timestamp"]
    await finish_session(
        conn,
        str(event["session_id"]),
        sport=summary.get("sport") if isinstance(summary.get("sport"), str) else None,
        started_at=utc_time(float(started)),
        ended_at=utc_time(float(event["timestamp"])),
        summary=summary,
    )

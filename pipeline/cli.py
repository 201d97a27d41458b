"""The ``livecoach`` command.

Every sub-command builds the settings once, resolves its servers, and turns any
:class:`~pipeline.errors.LivecoachError` into one line on stderr: exit status 2 for a
configuration problem (the line names the variable), 1 for anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from pipeline import logs, redaction
from pipeline.errors import ConfigError, LivecoachError
from pipeline.settings import Settings, load_settings
from pipeline.transport.errors import TransportError, TunableError
from pipeline.transport.tunables import Tunables

if TYPE_CHECKING:
    from uuid import UUID

    from pipeline.users import UserId

log = logging.getLogger("livecoach")

Command = Callable[[argparse.Namespace, Settings], int]


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.migrations import migrate
    from pipeline.runtime import resolved_services

    with resolved_services(settings, redis=False) as urls:
        applied = migrate(urls.database_url)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from web.auth import mint_token

    print(mint_token(settings, user_id=args.user, role=args.role, ttl_s=args.ttl))
    return 0


def _cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """``livecoach users add|link|unlink|list``, straight against PostgreSQL."""
    import asyncio

    import psycopg
    from psycopg.rows import dict_row

    from pipeline import users
    from pipeline.errors import DataRejected
    from pipeline.runtime import resolved_services

    async def run(database_url: str) -> int:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.cursor(row_factory=dict_row) as cur:
            if args.action == "add":
                row, created = await users.add_user(
                    cur, args.id, role=args.role, name=args.name, email=args.email
                )
                print(f"{'added' if created else 'updated'} user {row['id']} ({row['role']})")
            elif args.action == "link":
                _, created = await users.link(cur, args.coach, args.athlete)
                state = "linked" if created else "already linked"
                print(f"coach {args.coach} {state} to athlete {args.athlete}")
            elif args.action == "unlink":
                if not await users.unlink(cur, args.coach, args.athlete):
                    print(f"coach {args.coach} is not linked to athlete {args.athlete}",
                          file=sys.stderr)  # fmt: skip
                    return 1
                print(f"coach {args.coach} unlinked from athlete {args.athlete}")
            else:
                for user in await users.list_users(cur, role=args.role, limit=args.limit):
                    links = await users.list_links(
                        cur,
                        **{"coach_id" if user["role"] == "coach" else "athlete_id": user["id"]},
                    )
                    other = "athlete_id" if user["role"] == "coach" else "coach_id"
                    linked = ",".join(str(link[other]) for link in links) or "-"
                    print(f"{user['id']}\t{user['role']}\t{user['name']}\tlinked: {linked}")
        return 0

    with resolved_services(settings, redis=False) as urls:
        try:
            return asyncio.run(run(urls.database_url))
        except (psycopg.errors.IntegrityError, psycopg.DataError) as exc:
            from web.problems import db_problem

            fields = (
                {"id": args.id, "role": args.role, "name": args.name, "email": args.email}
                if args.action == "add"
                else {"coach_id": args.coach, "athlete_id": args.athlete}
            )
            raise LivecoachError(db_problem(DataRejected(exc, fields)).detail or str(exc)) from None
        except users.LinkRefused as exc:
            raise LivecoachError(f"{exc.field}: {exc}") from None
        except psycopg.Error as exc:
            raise LivecoachError(f"PostgreSQL: {exc}") from None


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.runtime import check_postgres, check_redis

    if settings.redis_url is not None:
        check_redis(settings.redis_url)
    if settings.database_url is not None:
        check_postgres(settings.database_url)
    if args.ready is not None:
        _check_ready(args.ready)
        print(f"configuration ok; {args.ready} is ready")
        return 0
    print("configuration ok")
    return 0


def _check_ready(url: str) -> None:
    """Raise LivecoachError unless ``url`` answers 2xx (a container's health check)."""
    import urllib.error
    import urllib.request

    from pipeline.redaction import redact_url

    if not url.startswith(("http://", "https://")):
        raise ConfigError("--ready", f"expected an http:// URL, got {redact_url(url)!r}")
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LivecoachError(f"{redact_url(url)} is not ready: {reason}") from None
    if not 200 <= status < 300:
        raise LivecoachError(f"{redact_url(url)} is not ready: HTTP {status}")


def _cmd_samples(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from pipeline.sample_recordings import FIGURES, write_samples

    try:
        paths = write_samples(Path(args.folder))
    except OSError as exc:
        raise ConfigError("FOLDER", f"cannot write {args.folder}: {exc.strerror or exc}") from None
    for path in paths:
        print(path)
    figures = ", ".join(f"{k} {v:g}" for k, v in vars(FIGURES).items())
    print(f"a steady ride with heart-rate drift; its figures: {figures}")
    return 0


def _cmd_links(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.up import read_links

    print(read_links(settings), end="")
    return 0


def _wait_for_stop_signal() -> None:
    """Block the main thread until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stop.wait()


def _cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.embedded import services

    with services(settings.data_dir) as urls:
        print(f"LIVECOACH_REDIS_URL={urls.redis_url}", flush=True)
        print(f"LIVECOACH_DATABASE_URL={urls.database_url}", flush=True)
        print("ready; Ctrl-C stops both servers", file=sys.stderr, flush=True)
        _wait_for_stop_signal()
    return 0


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from pipeline.up import run_up

    file = Path(args.file) if args.file else None
    return run_up(
        settings, file=file, speed=args.speed, port=args.port, loop_demo=not args.once,
        demo_count=args.athletes,
    )  # fmt: skip


def _cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from web.watch import channel_for, watch

    if (args.session is None) == (args.user is None):
        raise ConfigError("SESSION", "give either a session id or --user, not both")
    url = args.url or f"http://{settings.web_host}:{settings.web_port}"
    channel = channel_for(args.session, args.user)
    try:
        return asyncio.run(watch(url, args.token, channel, count=args.count))
    except KeyboardInterrupt:
        return 0


def _cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.embedded import check_port_free
    from pipeline.settings import env_name
    from web.server import run_edge

    host = args.host or settings.web_host
    port = settings.web_port if args.port is None else args.port
    variable = env_name("web_port") if args.port is None else "--port"
    if port:
        check_port_free(host, port, variable)  # before any server starts
    try:
        return run_edge(settings, host=args.host, port=args.port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Taken between the check and the edge's start.
        raise ConfigError(variable, f"cannot listen on {host}:{port}: in use") from None


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from agents.worker import configured_urls, run_all, run_app

    try:  # a bad transport tunable: one line here, not a traceback from inside Faust
        Tunables.load(settings.redis_url or "")
    except TunableError as exc:
        raise ConfigError(exc.source, exc.problem) from None
    redis_url, database_url = configured_urls(settings)
    if args.app == "all":
        return run_all(redis_url, database_url)
    return run_app(settings, app=args.app, redis_url=redis_url, database_url=database_url)


def _cmd_alerts_eval(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from agents.alerts.evaluation import main as alerts_eval

    recordings = Path(args.recordings) if args.recordings else None
    return alerts_eval(as_json=args.json, noise_seeds=args.noise_seeds, recordings_dir=recordings)


def _cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from agents.analyze import run
    from pipeline.embedded import EmbeddedRedis
    from pipeline.models import AthleteProfile
    from pipeline.recordings import read_recording
    from pipeline.runtime import check_redis

    for noisy in (
        "faust",
        "mode",
        "pipeline.transport",  # and its modules (consumer, coordination, ...)
    ):
        # The worker's start-up chatter is noise in an analysis report.
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    recording = read_recording(args.file)
    profile = None
    alerts = None
    if args.profile is not None:
        data = _read_json(args.profile, "--profile")
        alerts = data.pop("alerts", None)
        profile = _validated(AthleteProfile, data, "--profile")
    if settings.redis_url is not None:
        check_redis(settings.redis_url)
    with _scratch_data_dir(settings) as scratch, contextlib.ExitStack() as stack:
        # The run's Faust folder (and its Redis, when none is configured) live in a
        # folder of its own under the data folder, removed afterwards.
        redis_url = settings.redis_url or stack.enter_context(EmbeddedRedis(scratch.data_dir))
        summary = run(scratch, redis_url, recording.samples, profile=profile,
                      alerts=alerts, lap_mode=args.laps)  # fmt: skip
    summary["file"] = str(args.file)
    summary["dropped_values"] = dict(recording.dropped)
    if args.plot:
        from pathlib import Path

        from agents.analyze import SESSION_ID, USER_ID, recording_records
        from agents.replay import Recorded

        records = recording_records(recording.samples, profile=profile, alerts=alerts,
                                    lap_mode=args.laps)  # fmt: skip
        session = Recorded(str(SESSION_ID), str(USER_ID), records, source="file")
        _plot(session, Path(args.plot), Path(args.file).name)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        _print_summary(summary)
    return 0


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import json

    from agents.replay import Override
    from agents.replay_report import run_report
    from agents.replay_sources import Selection
    from pipeline.embedded import EmbeddedRedis
    from pipeline.runtime import check_redis

    for noisy in ("faust", "mode", "pipeline.transport"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.group is not None:
        return _replay_group(args, settings)
    if args.session is None and args.user is None and args.since is None:
        raise ConfigError(
            "replay", "name a SESSION, or --user and/or --since (a time range), or --group"
        )
    override = Override()
    if args.what_if is not None:
        data = _read_json(args.what_if, "--what-if")
        override.alerts = data.pop("alerts", None)
        override.profile = data
    for item in args.set or []:
        _set_override(override, item)
    if override.profile:
        from pipeline.models import AthleteProfile

        _validated(AthleteProfile, override.profile, "--what-if/--set profile")
    selection = Selection(session_id=args.session, user_id=args.user,
                          since=args.since, until=args.until)  # fmt: skip
    if settings.redis_url is not None:
        check_redis(settings.redis_url)
    elif args.source == "stream":
        raise ConfigError("LIVECOACH_REDIS_URL", "replaying the samples stream needs its Redis")
    with _scratch_data_dir(settings) as scratch, contextlib.ExitStack() as stack:
        redis_url = settings.redis_url or stack.enter_context(EmbeddedRedis(scratch.data_dir))
        report = asyncio.run(run_report(
            scratch, redis_url, source=args.source, selection=selection,
            database_url=settings.database_url, from_offset=args.from_offset,
            override=override or None, speed=args.speed,
        ))  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        _print_replay(report)
    return 0


def _replay_group(args: argparse.Namespace, settings: Settings) -> int:
    """``livecoach replay --group GROUP``: its final standings replayed and compared."""
    import asyncio
    import json

    from agents.replay_groups import group_from_database, replay_group
    from pipeline.embedded import EmbeddedRedis
    from pipeline.runtime import check_redis

    if settings.database_url is None:
        raise ConfigError("LIVECOACH_DATABASE_URL", "a group replay reads its sessions there")
    if settings.redis_url is not None:
        check_redis(settings.redis_url)
    database_url = settings.database_url

    async def run(redis_url: str) -> dict[str, Any]:
        recorded = await group_from_database(database_url, str(args.group))
        return await replay_group(settings, redis_url, recorded)

    with _scratch_data_dir(settings) as scratch, contextlib.ExitStack() as stack:
        redis_url = settings.redis_url or stack.enter_context(EmbeddedRedis(scratch.data_dir))
        report = asyncio.run(run(redis_url))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        print(f"group {report['group_id']} ({report['kind']}): {len(report['sessions'])}"
              f" session(s) replayed in {report['replay_s']} s")  # fmt: skip
        for row in report["replayed"]:
            print(f"{row['rank'] or '-':>4}  {row['athlete_id']}  {row['status']}")
        print("final standings identical to the stored ones" if not report["differences"]
              else "\n".join(report["differences"]))  # fmt: skip
    return 0 if not report["differences"] else 1


def _set_override(override: Any, item: str) -> None:
    """``profile.FIELD=VALUE`` or ``alerts.PATH.TO.FIELD=VALUE`` (VALUE read as JSON)."""
    import json

    path, sep, text = item.partition("=")
    parts = path.strip().split(".")
    if not sep or len(parts) < 2 or parts[0] not in ("profile", "alerts") or not all(parts):
        raise ConfigError(
            "--set", f"expected profile.FIELD=VALUE or alerts.PATH=VALUE, got {item!r}"
        )
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if parts[0] == "profile":
        if len(parts) != 2:
            raise ConfigError("--set", f"a profile field has no sub-fields: {path!r}")
        override.profile[parts[1]] = value
        return
    if override.alerts is None:
        override.alerts = {}
    node = override.alerts
    for part in parts[1:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError("--set", f"{path!r} goes through a value that is not an object")
    node[parts[-1]] = value


def _print_replay(report: dict[str, Any]) -> None:
    def fmt(value: Any) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    print(f"source {report['source']}: {len(report['sessions'])} session(s), replayed in "
          f"{report['replay_s']} s ({report['times_real_time']} x real time)")  # fmt: skip
    for entry in report["sessions"]:
        print(f"\nsession {entry['session_id']} (athlete {entry['user_id']})")
        recorded = entry["recorded"]["summary"] or {}
        replayed = entry["replayed"]["summary"] or {}
        print(f"{'':>16}  {'recorded':>12}  {'replayed':>12}")
        for key in ("samples", "duration_s", "mean_hr", "max_hr", "mean_power", "np", "tss"):
            print(f"{key:>16}  {fmt(recorded.get(key)):>12}  {fmt(replayed.get(key)):>12}")
        diff = entry.get("alerts_diff")
        if diff is None:
            print(f"{'alerts':>16}  {'?':>12}  {len(entry['replayed']['alerts']):>12}")
            continue
        print(f"{'alerts':>16}  {len(entry['recorded']['alerts']):>12}  "
              f"{len(entry['replayed']['alerts']):>12}")  # fmt: skip
        for alert in diff["gained"]:
            print(f"{'gained':>16}  [{alert['severity']}] {alert['message']}")
        for alert in diff["lost"]:
            print(f"{'lost':>16}  [{alert['severity']}] {alert['message']}")
        for move in diff["moved"]:
            print(f"{'moved':>16}  {move['rule']} {move['direction']} by {move['shift_s']} s")


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from pathlib import Path

    from agents.replay_series import series
    from agents.replay_sources import Selection, from_database
    from pipeline import export

    if settings.database_url is None:
        raise ConfigError("LIVECOACH_DATABASE_URL", "export reads the session from PostgreSQL")
    sessions = asyncio.run(from_database(settings.database_url, Selection(session_id=args.session)))
    if not sessions:
        raise LivecoachError(f"no live session {args.session} in the database")
    table = series(sessions[0])
    if not table.rows:
        raise LivecoachError(f"session {args.session} has no samples to export")
    summary = dict(table.summary or {})
    summary["sport"] = sessions[0].records[0].get("payload", {}).get("metadata", {}).get("sport")
    fmt = args.format or Path(args.output).suffix.lstrip(".").lower()
    if fmt not in ("csv", "parquet", "fit"):
        raise ConfigError("--format", f"expected csv, parquet or fit, got {fmt!r}")
    export.write(cast("export.Format", fmt), Path(args.output), table.rows, summary)
    print(f"{args.output}: {len(table.rows)} samples ({fmt})")
    return 0


def _cmd_plot(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from pathlib import Path

    from agents.replay import Recorded
    from agents.replay_sources import Selection, from_database
    from pipeline.ids import parse_uuid

    try:
        session_id = parse_uuid(args.session, "a live session id")
    except ValueError:
        session_id = None
    if session_id is None:  # a recording file
        from agents.analyze import SESSION_ID, USER_ID, recording_records
        from pipeline.recordings import read_recording

        recording = read_recording(args.session)
        records = recording_records(recording.samples)
        session = Recorded(str(SESSION_ID), str(USER_ID), records, source="file")
        title = Path(args.session).name
    else:
        if settings.database_url is None:
            raise ConfigError("LIVECOACH_DATABASE_URL", "plotting a session reads PostgreSQL")
        found = asyncio.run(from_database(settings.database_url, Selection(session_id=session_id)))
        if not found:
            raise LivecoachError(f"no live session {session_id} in the database")
        session, title = found[0], f"session {session_id}"
    _plot(session, Path(args.output), title)
    return 0


def _plot(session: Any, output: Any, title: str) -> None:
    from agents.replay_series import series
    from pipeline.plot import plot_session

    table = series(session)
    plotted = plot_session(output, table.rows, zone_bounds=table.zone_bounds, laps=table.laps,
                           alerts=table.alerts, title=title)  # fmt: skip
    panels = ", ".join(f"{name} {n}" for name, n in plotted.panels)
    print(f"{output}: {panels} points; {len(table.laps)} laps, {len(table.alerts)} alerts",
          file=sys.stderr)  # fmt: skip


@contextlib.contextmanager
def _scratch_data_dir(settings: Settings) -> Iterator[Settings]:
    """``settings`` with a fresh data folder under the configured one, removed after."""
    import shutil
    import tempfile
    from pathlib import Path

    parent = settings.data_dir / "analyze"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    path.chmod(0o711)  # as root, the embedded Redis's account must enter it
    try:
        yield settings.model_copy(update={"data_dir": path})
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _read_json(path: str, option: str) -> dict[str, Any]:
    import json

    try:
        if path == "-":  # standard input (the edge's replay jobs pass what-ifs so)
            data = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(option, f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(option, f"{path} must hold a JSON object")
    return data


def _validated(model: Any, data: dict[str, Any], option: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ConfigError(option, f"{where}: {first['msg']}") from None


def _print_summary(summary: dict[str, Any]) -> None:
    def fmt(value: Any) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    for key in ("file", "samples", "duration_s", "distance_m", "mean_hr", "max_hr",
                "mean_power", "np", "if", "tss", "decoupling_pct", "trimp"):  # fmt: skip
        print(f"{key:>16}  {fmt(summary.get(key))}")
    for metric, zones in summary.get("time_in_zone", {}).items():
        spent = ", ".join(f"{zone} {seconds / 60:.0f} min" for zone, seconds in zones.items())
        print(f"{'zones ' + metric:>16}  {spent}")
    print(f"{'alerts':>16}  {len(summary.get('alerts', []))}")
    for alert in summary.get("alerts", []):
        print(f"{'':>16}  [{alert['severity']}] {alert['message']}")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _bench(module: str) -> Any:
    """A benchmark module of ``bench/``: it ships with a source checkout, not the wheel.

    From here on a SIGTERM ends the process as Ctrl-C would, through every ``finally``:
    the benchmark's servers stop and their data folders are removed (its children die
    with it either way; the folders, up to hundreds of MB, were left behind)."""
    import importlib

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return importlib.import_module(f"bench.{module}")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "bench",
            f"the benchmarks live in a source checkout's bench/ ({exc}); "
            "run them from a clone with pip install -e '.[bench]'",
        ) from None


def _cmd_bench_analyze(args: argparse.Namespace, settings: Settings) -> int:
    import json
    from pathlib import Path

    bench_analyze = _bench("pipeline").bench_analyze
    for noisy in ("faust", "mode", "pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    files = [Path(f) for f in args.files]
    print(json.dumps(bench_analyze(settings, files, args.runs), indent=2))
    return 0


def _cmd_bench_groups(args: argparse.Namespace, settings: Settings) -> int:
    import json

    bench_groups = _bench("groups").bench_groups
    for noisy in ("faust", "mode", "pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = bench_groups(settings, athletes=args.athletes, duration_s=args.duration,
                          runs=args.runs, background=args.background)  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_replay(args: argparse.Namespace, settings: Settings) -> int:
    import json

    bench_replay = _bench("replay").bench_replay
    for noisy in ("faust", "mode", "pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(json.dumps(bench_replay(settings, args.runs), indent=2))
    return 0


def _cmd_bench_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    import json

    result = _bench("pipeline").bench_pipeline(
        settings, sessions=args.sessions, duration_s=args.duration, runs=args.runs,
        backlog=args.backlog, compare_alerts=args.compare_alerts,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_e2e(args: argparse.Namespace, settings: Settings) -> int:
    import json

    result = _bench("e2e").bench_e2e(
        settings, athletes=args.athletes, coaches=args.coaches, per_coach=args.per_coach,
        duration_s=args.duration, warmup_s=args.warmup, idle=args.idle, storm=args.storm,
        runs=args.runs,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_transport(args: argparse.Namespace, settings: Settings) -> int:
    import json
    from pathlib import Path

    profile = Path(args.profile) if args.profile else None
    result = _bench("transport").bench_transport(
        redis_url=args.redis_url, events=args.events, runs=args.runs, profile_dir=profile,
        compaction_updates=args.compaction_updates,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _when(text: str) -> Any:
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _user_id(text: str) -> UserId:
    from pipeline.users import parse_user_id

    try:
        return parse_user_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _session_id(text: str) -> UUID:
    from pipeline.ids import parse_uuid

    try:
        return parse_uuid(text, "a live session id")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecoach", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="override LIVECOACH_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.set_defaults(handler=_cmd_migrate)

    p = sub.add_parser("token", help="mint a JWT for demos and tests")
    p.add_argument("--user", type=_user_id, required=True, help="user id (the token's sub)")
    p.add_argument("--role", choices=["athlete", "coach"], required=True)
    p.add_argument(
        "--ttl", type=_positive_int, default=3600, help="lifetime in seconds (default 3600)"
    )
    p.set_defaults(handler=_cmd_token)

    p = sub.add_parser("users", help="manage users and coach-athlete links in the database")
    users_sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    u = users_sub.add_parser("add", help="add a user, or change an existing user's role and name")
    u.add_argument("--id", type=_user_id, required=True, help="the host's user id (token sub)")
    u.add_argument("--role", choices=["athlete", "coach", "admin"], required=True)
    u.add_argument("--name", default="", help="display name")
    u.add_argument("--email", default=None)
    u = users_sub.add_parser("link", help="let a coach see an athlete")
    u.add_argument("coach", type=_user_id)
    u.add_argument("athlete", type=_user_id)
    u = users_sub.add_parser("unlink", help="remove a link (open subscriptions end at once)")
    u.add_argument("coach", type=_user_id)
    u.add_argument("athlete", type=_user_id)
    u = users_sub.add_parser("list", help="users with their links")
    u.add_argument("--role", choices=["athlete", "coach", "admin"], default=None)
    u.add_argument("--limit", type=_positive_int, default=1000)
    p.set_defaults(handler=_cmd_users)

    p = sub.add_parser("services", help="run embedded Redis and PostgreSQL in the foreground")
    p.set_defaults(handler=_cmd_services)

    p = sub.add_parser("up", help="run everything on this machine, with a demo athlete")
    p.add_argument("--file", help="play this FIT/GPX/TCX/CSV recording instead of the demo ride")
    p.add_argument("--speed", type=float, default=1.0, help="play N times faster (default 1)")
    p.add_argument("--port", type=int, default=None, help="edge port (default LIVECOACH_WEB_PORT)")
    p.add_argument("--once", action="store_true", help="play the workout once, not in a loop")
    p.add_argument(
        "--athletes",
        type=_positive_int,
        default=2,
        help="demo athletes of the demo coach (default 2: a rider and a runner)",
    )
    p.set_defaults(handler=_cmd_up)

    p = sub.add_parser("links", help="print the addresses and links of the running `up` again")
    p.set_defaults(handler=_cmd_links)

    p = sub.add_parser("web", help="run one web edge (REST + WebSocket) in the foreground")
    p.add_argument("--host", default=None, help="listen address (default LIVECOACH_WEB_HOST)")
    p.add_argument(
        "--port", type=int, default=None, help="listen port (default LIVECOACH_WEB_PORT)"
    )
    p.set_defaults(handler=_cmd_web)

    p = sub.add_parser("worker", help="run the Faust agents (live metrics and persistence)")
    p.add_argument(
        "--app",
        choices=["live", "store", "all"],
        default="all",
        help="which app: live, store, or both as child processes (default)",
    )
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser("analyze", help="run a recording through the live agents; summarise it")
    p.add_argument("file", help="FIT, GPX, TCX or CSV recording")
    p.add_argument("--profile", help="JSON file: athlete profile fields, plus 'alerts' settings")
    p.add_argument(
        "--laps",
        choices=["distance", "time", "manual"],
        default="distance",
        help="automatic laps every km (distance), 5 min (time), or none (manual)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--plot", metavar="PNG", help="also write a PNG of the session")
    p.set_defaults(handler=_cmd_analyze)

    p = sub.add_parser("replay", help="replay recorded sessions through the agents (what-if)")
    p.add_argument("session", type=_session_id, nargs="?", help="live session id (UUID)")
    p.add_argument("--user", type=_user_id, help="every session of this athlete (in the range)")
    p.add_argument("--since", type=_when, help="sessions started at or after (ISO 8601)")
    p.add_argument("--until", type=_when, help="sessions started before (ISO 8601)")
    p.add_argument("--source", choices=["database", "stream"], default="database",
                   help="PostgreSQL live_metrics (default) or the samples stream")  # fmt: skip
    p.add_argument("--from-offset", type=int, default=None,
                   help="stream source: read each partition from this offset")  # fmt: skip
    p.add_argument("--speed", type=_positive_float, default=None,
                   help="N x real time (default: as fast as possible)")  # fmt: skip
    p.add_argument("--what-if", help="JSON file: profile fields, plus 'alerts' settings")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="what-if: profile.ftp_w=280, alerts.rules.heart_rate.high_bpm=150",
    )
    p.add_argument(
        "--group",
        type=_session_id,
        default=None,
        help="a group (UUID): its members' sessions, final standings compared",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_cmd_replay)

    p = sub.add_parser("export", help="a stored session as CSV, Parquet or FIT, second by second")
    p.add_argument("session", type=_session_id, help="live session id (UUID)")
    p.add_argument("-o", "--output", required=True, help="file to write (.csv, .parquet, .fit)")
    p.add_argument("--format", choices=["csv", "parquet", "fit"],
                   help="default: from the output file's extension")  # fmt: skip
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("plot", help="a PNG of a session: HR, power, pace, W' balance, laps, alerts")
    p.add_argument("session", help="live session id (UUID, from PostgreSQL) or a recording file")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.set_defaults(handler=_cmd_plot)

    p = sub.add_parser(
        "samples", help="write a known workout as FIT, GPX, TCX and CSV (to try `analyze`)"
    )
    p.add_argument("folder", help="folder to write the four recordings into")
    p.set_defaults(handler=_cmd_samples)

    p = sub.add_parser("alerts-eval", help="precision and recall of every alert rule")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--noise-seeds",
        type=_positive_int,
        default=1,
        help="replay every scenario with this many noise draws (default 1)",
    )
    p.add_argument("--recordings", help="folder of recordings (default: the shared data)")
    p.set_defaults(handler=_cmd_alerts_eval)

    p = sub.add_parser("watch", help="print a live session (or an athlete) in the terminal")
    p.add_argument("session", type=_session_id, nargs="?", help="live session id (UUID)")
    p.add_argument("--user", type=_user_id, help="watch every session of this athlete instead")
    p.add_argument("--token", required=True, help="JWT of the athlete or a linked coach")
    p.add_argument("--url", help="edge base URL (default from LIVECOACH_WEB_HOST/PORT)")
    p.add_argument("--count", type=int, help="exit after printing this many events")
    p.set_defaults(handler=_cmd_watch)

    bench = sub.add_parser("bench", help="benchmarks (each with a raw redis-py baseline)")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    p = bench_sub.add_parser("analyze", help="recordings through the agents, times real time")
    p.add_argument("files", nargs="+", help="recordings")
    p.add_argument("--runs", type=_positive_int, default=3)
    p.set_defaults(handler=_cmd_bench_analyze)
    p = bench_sub.add_parser("replay", help="a 1 h session replayed from PostgreSQL and stream")
    p.add_argument("--runs", type=_positive_int, default=3)
    p.set_defaults(handler=_cmd_bench_replay)
    p = bench_sub.add_parser("groups", help="a race of N athletes at 1 Hz: leaderboard latency")
    p.add_argument("--athletes", type=_positive_int, default=500)
    p.add_argument("--duration", type=_positive_int, default=60, help="seconds of load")
    p.add_argument("--runs", type=_positive_int, default=1)
    p.add_argument(
        "--background",
        type=int,
        default=0,
        help="sessions outside the group beside it (their metrics_update latency)",
    )
    p.set_defaults(handler=_cmd_bench_groups)
    p = bench_sub.add_parser("pipeline", help="N sessions at 1 Hz: latency, persistence, rate")
    p.add_argument("--sessions", type=_positive_int, default=1000)
    p.add_argument("--duration", type=_positive_int, default=300, help="seconds of load")
    p.add_argument("--runs", type=_positive_int, default=3)
    p.add_argument(
        "--backlog",
        type=_positive_int,
        default=100,
        help="samples per session in the throughput backlog",
    )
    p.add_argument(
        "--compare-alerts",
        action="store_true",
        help="also run each load with the alert rules off (the alert path's cost)",
    )
    p.set_defaults(handler=_cmd_bench_pipeline)
    p = bench_sub.add_parser("e2e", help="the web edge under load vs a raw aiohttp broadcast")
    p.add_argument("--athletes", type=_positive_int, default=1000)
    p.add_argument("--coaches", type=_positive_int, default=100)
    p.add_argument("--per-coach", type=_positive_int, default=10)
    p.add_argument("--duration", type=_positive_int, default=60, help="seconds of load")
    p.add_argument("--warmup", type=float, default=2.0,
                   help="seconds of load before latency counts (reported apart)")  # fmt: skip
    p.add_argument("--idle", type=_positive_int, default=10_000, help="idle sockets")
    p.add_argument("--storm", type=_positive_int, default=5000, help="clients resuming at once")
    p.add_argument("--runs", type=_positive_int, default=3)
    p.set_defaults(handler=_cmd_bench_e2e)
    p = bench_sub.add_parser("transport", help="events/s through one Faust worker vs raw redis-py")
    p.add_argument("--events", type=_positive_int, default=20_000, help="events per run")
    p.add_argument("--runs", type=_positive_int, default=3)
    p.add_argument("--redis-url", default=None, help="default: a private Redis of its own")
    p.add_argument("--profile", default=None, help="folder for a py-spy profile (forward+table)")
    p.add_argument("--compaction-updates", type=int, default=0,
                   help="also time compacting this many table updates (e.g. 1000000)")  # fmt: skip
    p.set_defaults(handler=_cmd_bench_transport)

    p = sub.add_parser("check", help="validate the configuration and reach the servers")
    p.add_argument(
        "--ready",
        metavar="URL",
        help="also ask URL, e.g. http://127.0.0.1:6066/ (a worker), and fail unless it answers "
        "2xx: a container health check",
    )
    p.set_defaults(handler=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        logging.basicConfig(
            level=(args.log_level or settings.log_level).upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if settings.log_format == "json":
            logs.configure("json", (args.log_level or settings.log_level).upper())
        logging.getLogger("yoyo").setLevel(logging.WARNING)
        redaction.install_record_factory()  # tokens and passwords masked on every line
        handler: Command = args.handler
        return handler(args, settings)
    except ConfigError as exc:
        print(f"livecoach: error: {exc}", file=sys.stderr)
        return 2
    except (LivecoachError, TransportError) as exc:
        print(f"livecoach: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""What the live agent does with one record of the ``samples`` topic, without Faust.

:func:`process` takes the stored state of a session (a JSON-able dict, the value of
the agent's changelog-backed table) and one record (a batch of samples or a control
event) and returns the new state plus the events to publish on ``live``. The Faust
agent in :mod:`agents.app` is a thin loop around it, so the logic is tested directly
and the same code serves live sessions, replays and ``livecoach analyze``.

Events carry ``session_id`` and ``user_id`` (the athlete), from which the edge derives
the channels ``live:session:{id}`` and ``live:user:{id}``, and ``ingest_ms``, from which
it measures sample-to-socket latency.

``metrics_update`` is coalesced to at most one per session per second of sample time,
and to at most one per record: the state after the record's last sample, published
when that sample is at least a second after the last one published. A device at 1 Hz
gets one update a second; a batch uploaded after a tunnel gets one update with the
latest state (its history is in ``live_metrics``), not a burst of stale ones. The
rule depends on sample times only, so a replay publishes the same updates. Alerts
and session events are never coalesced.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from agents.alerts.config import AlertConfig
from agents.alerts.plan import PlanError, WorkoutPlan, parse_plan
from agents.alerts.rules import AlertEngine
from agents.group_member import input_record, join, on_alert, on_sample
from agents.lifecycle import LifecycleError
from agents.session_metrics import SessionMetrics
from pipeline.models import AthleteProfile

log = logging.getLogger(__name__)

#: Least sample time between two metrics_update events of one session.
METRICS_INTERVAL_S = 1.0

#: Sessions whose live objects are kept between records.
_LIVE_CACHE_MAX = 20_000

State = dict[str, Any]
Event = dict[str, Any]


@dataclass
class Outcome:
    state: State
    events: list[Event] = field(default_factory=list)
    #: GroupInputRecords (JSON) for the ``groups`` topic: one per record of a session
    #: in a group (two when it left one group for another).
    group_inputs: list[dict[str, Any]] = field(default_factory=list)


def _profile_from(payload: dict[str, Any]) -> AthleteProfile:
    data = payload.get("profile")
    if not isinstance(data, dict):
        return AthleteProfile()
    known = {k: v for k, v in data.items() if k in AthleteProfile.model_fields and v is not None}
    try:
        return AthleteProfile.model_validate(known)
    except ValidationError as exc:
        log.warning("ignoring an invalid athlete profile: %s", exc.errors()[0]["msg"])
        return AthleteProfile()


def _weight_from(payload: dict[str, Any]) -> float | None:
    """The athlete's weight (``profile.weight_kg``), for W/kg; None when not given."""
    profile = payload.get("profile")
    weight = profile.get("weight_kg") if isinstance(profile, dict) else None
    return float(weight) if isinstance(weight, int | float) and 20 <= weight <= 300 else None


def _plan_from(payload: dict[str, Any], profile: AthleteProfile) -> WorkoutPlan | None:
    """The session's structured workout (``metadata.plan``), validated by the edge."""
    metadata = payload.get("metadata")
    document = metadata.get("plan") if isinstance(metadata, dict) else None
    if document is None:
        return None
    try:
        return parse_plan(document, profile.ftp_w)
    except PlanError as exc:
        log.warning("ignoring an invalid plan: %s", exc)
        return None


def _alert_config_from(payload: dict[str, Any], profile: AthleteProfile) -> AlertConfig:
    """Alert settings from ``alerts``, or from a profile row's ``alert_settings``.

    A profile row's ``sound`` and ``vibration`` columns are the athlete's delivery
    preferences; they override the settings' own defaults.
    """
    found = payload.get("profile")
    row: dict[str, Any] = found if isinstance(found, dict) else {}
    data = payload.get("alerts")
    if not isinstance(data, dict):
        data = row.get("alert_settings") if isinstance(row.get("alert_settings"), dict) else None
    config = AlertConfig.defaults_for(profile)
    if data:
        try:
            config = AlertConfig.from_jsonb(data)
        except ValidationError as exc:
            log.warning("ignoring invalid alert settings: %s", exc.errors()[0]["msg"])
    delivery = {k: row[k] for k in ("sound", "vibration") if isinstance(row.get(k), bool)}
    if delivery:
        config = config.model_copy(update={"delivery": config.delivery.model_copy(update=delivery)})
    return config


class _RawSample:
    """A validated sample dict seen as a :class:`SampleLike` and as an
    :class:`~agents.alerts.rules.AlertInput` (cheaper than a model)."""

    __slots__ = (
        "cadence", "cadence_rpm", "distance_m", "heart_rate", "heart_rate_bpm", "power_w",
        "seq", "speed_m_s", "t", "t_s",
    )  # fmt: skip
    t: float
    t_s: float
    heart_rate: float | None
    heart_rate_bpm: float | None
    cadence: float | None
    cadence_rpm: float | None

    def __init__(self, raw: dict[str, Any]) -> None:
        self.t = self.t_s = raw["t"]
        self.seq: int | None = raw.get("seq")
        self.heart_rate = self.heart_rate_bpm = raw.get("heart_rate")
        self.power_w: float | None = raw.get("power_w")
        self.speed_m_s: float | None = raw.get("speed_m_s")
        self.cadence = self.cadence_rpm = raw.get("cadence")
        self.distance_m: float | None = raw.get("distance_m")


def _engine_key(config_json: dict[str, Any], profile: AthleteProfile) -> str:
    canonical = orjson.dumps(
        {"alerts": config_json, "profile": profile.model_dump()}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()


class Processor:
    """Turns records into state and events. Caches alert engines per configuration."""

    def __init__(
        self, block_store: MutableMapping[str, list[float]] | None = None, *, alerts: bool = True
    ) -> None:
        self.alerts = alerts
        # Decoupling blocks outlive one record: a table in the agent, a dict otherwise.
        self.block_store: MutableMapping[str, list[float]] = (
            block_store if block_store is not None else {}
        )
        self._engines: dict[str, AlertEngine] = {}
        # Live objects of recently processed sessions, valid while the table still holds
        # the very state dict they were saved to (after a recovery it holds new ones).
        self._live: dict[str, tuple[State, SessionMetrics]] = {}

    def _engine(self, state: State, profile: AthleteProfile) -> AlertEngine:
        """The engine of the session's configuration and profile, built once per change."""
        key = state.get("engine_key")
        if key is None:
            key = state["engine_key"] = _engine_key(state["alert_config"], profile)
        engine = self._engines.get(key)
        if engine is None:
            if len(self._engines) > 1024:
                self._engines.clear()
            engine = AlertEngine(AlertConfig.from_jsonb(state["alert_config"]), profile)
            self._engines[key] = engine
        return engine

    def new_state(self, session_id: str, user_id: str, payload: dict[str, Any]) -> State:
        profile = _profile_from(payload)
        lap_mode = payload.get("lap_mode", "distance")
        if lap_mode not in ("distance", "time"):
            lap_mode = "distance"
        metrics = SessionMetrics(session_id, profile, lap_mode, self.block_store)
        return {
            "user_id": user_id,
            "metrics": metrics.to_dict(),
            "alerts": AlertEngine.new_state(session_id, _plan_from(payload, profile)),
            "alert_config": _alert_config_from(payload, profile).to_jsonb(),
            "emitted_t": None,
            "weight_kg": _weight_from(payload),
            "group": None,
        }

    def process(
        self,
        state: State | None,
        record: dict[str, Any],
        *,
        snapshot: bool = True,
        offset: int | None = None,
    ) -> Outcome:
        """The state after ``record`` and the events it raised.

        ``offset`` is the record's offset in its stream partition: the state remembers
        the last one applied, so a record read again after a crash (a replay) is told
        from a repeat the device sent; a replay is not counted as ignored input and a
        replayed control that no longer applies raises no "rejected" event.

        With ``snapshot=False`` the state's ``metrics`` stays as it was while the
        session's live objects move on (serialising them is a large part of a record's
        cost); :meth:`snapshot` brings it up to date before the state is stored.
        """
        session_id = str(record["session_id"])
        user_id = str(record["user_id"])
        ingest_ms = int(record.get("ingest_ms", 0))
        if state is None:
            payload = record.get("payload", {}) if record.get("kind") == "control" else {}
            state = self.new_state(session_id, user_id, payload)
        cached = self._live.get(session_id)
        if cached is not None and cached[0] is state:
            # The state we returned last time, unchanged: skip rebuilding it from JSON.
            metrics = cached[1]
        else:
            metrics = SessionMetrics.from_dict(state["metrics"], self.block_store)
        applied = state.get("offset")
        replay = offset is not None and applied is not None and offset <= applied
        if offset is not None and not replay:
            state["offset"] = offset
        out = Outcome(state)
        base = {"session_id": session_id, "user_id": user_id, "ingest_ms": ingest_ms}
        control: Event | None = None
        if record.get("kind") == "control":
            control = self._control(metrics, state, record, base, out, replay=replay)
        else:
            self._samples(metrics, state, record.get("samples", []), base, out, replay=replay)
        # A lap closed by a stop comes before the stop itself.
        for lap in metrics.drain_laps():
            out.events.append({**base, "type": "session_event", "event": "lap", "lap": lap})
        if control is not None:
            out.events.append(control)
        member = state.get("group")
        if member is not None:
            out.group_inputs.append(
                input_record(
                    member,
                    metrics,
                    session_id=session_id,
                    athlete_id=user_id,
                    ingest_ms=ingest_ms,
                    weight_kg=state.get("weight_kg"),
                )
            )
            if metrics.state == "stopped":
                # Its last input (``stopped``) is out: a later ``group`` control (a leave
                # or a removal racing the stop) does not turn it into ``left``.
                state["group"] = None
        if metrics.state == "stopped" or len(self._live) >= _LIVE_CACHE_MAX:
            self._live.pop(session_id, None)
            if len(self._live) >= _LIVE_CACHE_MAX:
                # Abandoned sessions: rebuilt from their (now current) state on demand.
                for cached_state, cached_metrics in self._live.values():
                    cached_state["metrics"] = cached_metrics.to_dict()
                self._live.clear()
            snapshot = True
        else:
            self._live[session_id] = (state, metrics)
        if snapshot:
            state["metrics"] = metrics.to_dict()
        return out

    def snapshot(self, session_id: str, state: State) -> State:
        """``state`` with its ``metrics`` serialised from the session's live objects."""
        cached = self._live.get(session_id)
        if cached is not None and cached[0] is state:
            state["metrics"] = cached[1].to_dict()
        return state

    def _samples(
        self,
        metrics: SessionMetrics,
        state: State,
        samples: list[dict[str, Any]],
        base: Event,
        out: Outcome,
        *,
        replay: bool = False,
    ) -> None:
        profile = metrics.profile
        engine = self._engine(state, profile)
        alert_state = state["alerts"]
        emitted_t = state["emitted_t"]
        last_t: float | None = None
        member = state.get("group")
        for raw in samples:
            # Validated by the edge before it reached the stream: no second validation.
            sample = _RawSample(raw)
            before_t = metrics.last_t
            if metrics.add_sample(sample, replay=replay) != "accepted":
                continue
            last_t = sample.t
            if member is not None:
                on_sample(member, metrics, raw, 1.0 if before_t is None else sample.t - before_t)
            if not self.alerts:
                continue
            alert_state, alerts = engine.update(alert_state, sample)
            for alert in alerts:
                event = {**base, "type": "alert", "timestamp": sample.t, "alert": alert.to_event()}
                if member is not None:
                    event["group_id"] = member["g"]["id"]
                    on_alert(member, sample.t)
                out.events.append(event)
        if last_t is not None and (emitted_t is None or last_t - emitted_t >= METRICS_INTERVAL_S):
            event = self._metrics_event(metrics, base, last_t)
            interval = AlertEngine.current_interval(alert_state)
            if interval is not None:
                event["metrics"]["interval"] = interval  # the plan's, for the dashboard
            out.events.append(event)
            emitted_t = last_t
        state["alerts"] = alert_state
        state["emitted_t"] = emitted_t

    @staticmethod
    def _metrics_event(metrics: SessionMetrics, base: Event, t: float) -> Event:
        return {**base, "type": "metrics_update", "timestamp": t, "metrics": metrics.snapshot()}

    def _control(
        self,
        metrics: SessionMetrics,
        state: State,
        record: dict[str, Any],
        base: Event,
        out: Outcome,
        *,
        replay: bool = False,
    ) -> Event | None:
        action = record["action"]
        t = int(record.get("at_ms", record.get("ingest_ms", 0))) / 1000.0
        payload = record.get("payload") or {}
        event: Event = {**base, "type": "session_event", "event": action, "timestamp": t}
        try:
            if action == "start":
                if metrics.state == "created":
                    metrics.start(t)
                if isinstance(payload.get("group"), dict) and state.get("group") is None:
                    self._join(metrics, state, payload["group"])
            elif action == "group":
                self._group(metrics, state, payload, base, out)
                event["group_id"] = (state.get("group") or {}).get("g", {}).get("id")
            elif action == "pause":
                metrics.pause(t)
            elif action == "resume":
                metrics.resume(t)
            elif action == "stop":
                metrics.stop(t)
                event["summary"] = metrics.summary()
                event["started_at"] = metrics.started_t
                if isinstance(payload.get("reason"), str):
                    event["reason"] = payload["reason"]  # "idle": closed by the store worker
            elif action == "lap":
                metrics.manual_lap(t)
            elif action == "profile":
                self._apply_profile(metrics, state, payload)
                event["event"] = "profile_updated"
        except LifecycleError as exc:
            if replay:
                return None  # applied before the crash: nothing to report
            # A repeated or racing control event: report it, keep the state as it is.
            event = {**base, "type": "session_event", "event": "rejected", "action": action,
                     "reason": str(exc), "timestamp": t}  # fmt: skip
        event["state"] = metrics.state
        return event

    def _join(self, metrics: SessionMetrics, state: State, group: dict[str, Any]) -> None:
        if not isinstance(group.get("id"), str):
            log.warning("ignoring a group without an id: %r", group)
            return
        state["group"] = join(group, metrics, (state.get("alerts") or {}).get("plan"))

    def _group(
        self,
        metrics: SessionMetrics,
        state: State,
        payload: dict[str, Any],
        base: Event,
        out: Outcome,
    ) -> None:
        """``action: "group"``: join ``payload.group``, or leave (``payload.group`` null).
        Leaving, or joining another group, sends the old group a last ``left`` input."""
        member = state.get("group")
        group = payload.get("group")
        if member is not None and (
            not isinstance(group, dict) or group.get("id") != member["g"]["id"]
        ):
            out.group_inputs.append(
                input_record(
                    member,
                    metrics,
                    session_id=base["session_id"],
                    athlete_id=base["user_id"],
                    ingest_ms=base["ingest_ms"],
                    weight_kg=state.get("weight_kg"),
                    status="left",
                )
            )
            state["group"] = None
        if isinstance(group, dict) and state.get("group") is None:
            self._join(metrics, state, group)

    def _apply_profile(
        self, metrics: SessionMetrics, state: State, payload: dict[str, Any]
    ) -> None:
        if isinstance(payload.get("profile"), dict):
            metrics.set_profile(_profile_from(payload))
        if isinstance(payload.get("profile"), dict) and "weight_kg" in payload["profile"]:
            state["weight_kg"] = _weight_from(payload)
        if isinstance(payload.get("alerts"), dict) or isinstance(payload.get("profile"), dict):
            state["alert_config"] = _alert_config_from(payload, metrics.profile).to_jsonb()
        state["engine_key"] = None  # rebuilt from the new profile or configuration

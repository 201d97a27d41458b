"""The alert engine: per-session rule state machines over the alert signals.

Pure and broker-independent. The Faust alert agent keeps one JSON-able state dict per
session in a changelog-backed table and calls, for every sample::

    engine = AlertEngine(config, athlete)        # rebuilt when the config changes
    state = table.get(session_id) or AlertEngine.new_state(session_id, plan)
    state, alerts = engine.update(state, AlertSample(t_s, hr, power, speed, cadence))
    table[session_id] = state
    for alert in alerts: publish alert.to_event(); store it in live_alerts by alert.id

Every rule direction (``heart_rate:high``, ``heart_rate:low``, ``pace:slow`` ...) is one
state machine over a scalar "excess" (how far the signal is beyond its threshold,
positive when outside). What the rules owe, in a coach's words, is in docs/alerts.md.

- Zone rules (heart rate, pace, power) judge sustained deviation: the value that more
  than half of the samples of the last ``window_s`` are beyond
  (:func:`~agents.alerts.signals.zone_median`), samples that do not count (coasting,
  stopped, missing) counting as inside, beyond the bound by a "large enough" margin.
  A plan's current interval gives the bounds, judged from its start plus a grace
  period; otherwise the athlete's configured bounds apply.
- Fatigue rules hold for ``dwell_s`` of sample time on signals refreshed every 10 s; a
  missing value pauses the hold for up to :data:`~agents.alerts.signals.MAX_PAUSE_S`.
- A gap between samples (over :data:`~agents.alerts.signals.GAP_S`) restarts every
  hold; a pause over :data:`~agents.alerts.signals.LONG_GAP_S` re-arms every rule.
- After firing, a direction re-arms only once the value came back inside by the rule's
  ``hysteresis``, so a value hovering on the boundary fires once; two alerts of one
  rule (or of the decoupling pair, EF and drift) are at least ``cooldown_s`` apart.
- Heart-rate rules are suspended for ``lag_s`` after a step in effort, in the direction
  the lag would trip; a floor applies once the athlete has reached it, and not while
  stopped or coasting.

Alert ids are a UUID 5 of session id, rule direction and onset time: a worker that
restarts from an older state and replays the same samples raises the same ids, which
the store and the edge de-duplicate; the state itself (armed flags, cooldowns) is in
the changelog, so a restart neither repeats nor forgets an alert.

The configuration is read on every sample from the engine, not from the state, so a
new :class:`AlertEngine` built from a changed configuration applies from the next
sample to the existing state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from agents.alerts.config import (
    AlertConfig,
    Severity,
    resolve_hr_bounds,
    resolve_power_bounds,
)
from agents.alerts.plan import WorkoutPlan, advance, current_interval, plan_rows
from agents.alerts.signals import (
    GAP_S,
    LONG_GAP_S,
    MAX_PAUSE_S,
    SignalParams,
    new_signal_state,
    update_signals,
    zone_median,
)
from pipeline.models import AthleteProfile

__all__ = ["Alert", "AlertEngine", "AlertInput", "AlertSample", "alert_id"]

State = dict[str, Any]
#: (low, high, judged from t) per zone rule: heart rate, power, pace (fast, slow).
_Bound = tuple[float | None, float | None, float]
_Targets = tuple[_Bound, _Bound, _Bound]
_ID_NAMESPACE = uuid.UUID("6f1d2c4e-5a0b-4c39-9a57-1e0b9b2a7c31")
_STATE_VERSION = 2
#: Rules that say the same thing share a cooldown: EF falling and HR rising at the
#: same output are both cardiac decoupling, one alert is enough.
_COOLDOWN_GROUP = {"ef_drop": "decoupling", "hr_drift": "decoupling"}
#: "Large enough": a zone metric must be beyond its bound by this fraction of the bound
#: (1 %: 2 W at 200 W, 3 s/km at 5:00 /km); heart rate by this many bpm.
_MIN_EXCESS = 0.01
_MIN_EXCESS_BPM = 1.0
#: Pace wanders more (GPS): 2 % of the bound, 6 s/km at 5:00 /km.
_MIN_EXCESS_PACE = 0.02
#: Seconds of the latest samples that must still be off for a pace alert to be told.
_CONFIRM_S = 15.0
_SLOW = -1.0  # lead_s of the fatigue rules: onset = start of the hold that fired
_ALWAYS = float("-inf")  # "since" of a bound that is not a plan's: judged from any time


class AlertInput(Protocol):
    """What :meth:`AlertEngine.update` reads of a sample: :class:`AlertSample`, or any
    object with these attributes (the live agent's own sample view, which spares a
    frozen dataclass's 0.6 us construction a sample)."""

    @property
    def t_s(self) -> float: ...
    @property
    def heart_rate_bpm(self) -> float | None: ...
    @property
    def power_w(self) -> float | None: ...
    @property
    def speed_m_s(self) -> float | None: ...
    @property
    def cadence_rpm(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class AlertSample:
    """What the engine needs of one sample; any channel may be missing."""

    #: Sample time in seconds (epoch or session time), non-decreasing per session.
    t_s: float
    heart_rate_bpm: float | None = None
    power_w: float | None = None
    speed_m_s: float | None = None
    #: 0 means not pedalling (coasting), whatever the power meter says.
    cadence_rpm: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One raised alert; :meth:`to_event` gives the ``alert`` payload of the protocol."""

    id: str
    session_id: str
    rule: str
    direction: str
    metric: str
    severity: Severity
    message: str
    current: float
    threshold: float
    #: When the condition began (the onset the dwell was counted from).
    started_at_s: float
    fired_at_s: float
    sound: bool
    vibration: bool
    #: Where the threshold came from: "plan" (the current interval's target) or
    #: "settings" (the athlete's bounds); None for the fatigue rules.
    bound: str | None = None

    def to_event(self) -> dict[str, Any]:
        """The ``alert`` object of the wire protocol (plus timing, for history)."""
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "metric": self.metric,
            "current": round(self.current, 3),
            "threshold": round(self.threshold, 3),
            "sound": self.sound,
            "vibration": self.vibration,
            "direction": self.direction,
            "started_at_s": self.started_at_s,
            "fired_at_s": self.fired_at_s,
            "bound": self.bound,
        }


def alert_id(session_id: str, key: str, onset_s: float) -> str:
    """Deterministic id: the same session, rule direction and onset give the same id."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{session_id}/{key}/{round(onset_s * 1000)}"))


def _fmt_pace(s_per_km: float) -> str:
    minutes, seconds = divmod(round(s_per_km), 60)
    return f"{minutes}:{seconds:02d} /km"


class AlertEngine:
    """Evaluates one athlete's rules; cheap to build, holds no per-session data."""

    def __init__(self, config: AlertConfig, athlete: AthleteProfile | None = None) -> None:
        self.config = config
        self.athlete = athlete = athlete or AthleteProfile()
        r = config.rules
        self._hr_low, self._hr_high = resolve_hr_bounds(r.heart_rate, athlete)
        self._p_low, self._p_high = resolve_power_bounds(r.power, athlete)
        self._hr_judged = self._hr_low is not None or self._hr_high is not None
        self._power_judged = self._p_low is not None or self._p_high is not None
        self._params = SignalParams(
            hr_window_s=max(r.heart_rate.window_s, 2 * r.heart_rate.dwell_s),
            coast_w=r.power.coast_below_w,
            power_window_s=max(r.power.window_s, 2 * r.power.dwell_s),
            pace_window_s=max(r.pace.window_s, 2 * r.pace.dwell_s),
            ef_window_s=r.ef_drop.window_s,
            baseline_after_s=r.ef_drop.baseline_after_s,
            steady_cv_ef=r.ef_drop.steady_cv,
            comparable_fraction=r.ef_drop.comparable_fraction,
            drift_window_s=r.hr_drift.window_s,
            steady_cv_drift=r.hr_drift.steady_cv,
            fade_window_s=r.power_fade.window_s,
            min_best_w=r.power_fade.min_best_fraction_of_ftp * athlete.ftp_w,
            ftp_w=athlete.ftp_w,
            cp_w=athlete.critical_power_w,
            w_prime_j=athlete.w_prime_j,
        )
        pace = r.pace
        pace_bounds: tuple[float | None, float | None] = (None, None)
        if pace.target_s_per_km is not None:
            tol = pace.tolerance_s_per_km
            pace_bounds = (pace.target_s_per_km - tol, pace.target_s_per_km + tol)
        #: The bounds outside a plan's interval: the settings' and the athlete's.
        self._bounds: _Targets = (
            (self._hr_low, self._hr_high, _ALWAYS),
            (self._p_low, self._p_high, _ALWAYS),
            (*pace_bounds, _ALWAYS),
        )
        # Read once: a settings model's attributes cost more than the rules they switch.
        self._on = (
            r.heart_rate.enabled, r.pace.enabled, r.power.enabled, r.ef_drop.enabled,
            r.hr_drift.enabled, r.power_fade.enabled, r.w_prime.enabled,
        )  # fmt: skip
        #: The channels judged outside a plan: heart rate, power, pace.
        self._channels = (
            r.heart_rate.enabled and self._hr_judged,
            r.power.enabled and self._power_judged,
            r.pace.enabled and pace.target_s_per_km is not None,
        )

    def with_config(self, config: AlertConfig) -> AlertEngine:
        """An engine for a changed configuration; existing states carry over."""
        return AlertEngine(config, self.athlete)

    @staticmethod
    def new_state(session_id: str | int, plan: WorkoutPlan | None = None) -> State:
        """The state of a session before its first sample (JSON-able).

        ``plan``: the session's structured workout; it starts with the first sample.
        """
        return {
            "v": _STATE_VERSION,
            "sid": str(session_id),
            "sig": new_signal_state(),
            "m": {},  # rule direction -> [held_s (-1: not holding), onset_s, armed, last_defined_s]
            "cool": {},  # rule -> time of its last alert
            # rows: plan_rows(); cur: [interval index, its start t, its start distance]
            "plan": None
            if plan is None
            else {
                "rows": plan_rows(plan),
                # Whether any interval has a power, pace, heart-rate target.
                "k": [
                    any(iv.power_w is not None for iv in plan.intervals),
                    any(iv.pace_s_per_km is not None for iv in plan.intervals),
                    any(iv.heart_rate_bpm is not None for iv in plan.intervals),
                ],
                "cur": [0, None, 0.0],
                "g": plan.grace_s,
                "hg": plan.hr_grace_s,
            },
        }

    @staticmethod
    def current_interval(state: State) -> dict[str, Any] | None:
        """The plan's current interval for the dashboard: name, target, time left."""
        plan = state.get("plan")
        sig = state["sig"]
        if plan is None or plan["cur"][1] is None or sig["t"] is None:
            return None
        return current_interval(plan["rows"], plan["cur"], sig["t"], sig["d"])

    def run(self, session_id: str | int, samples: Iterable[AlertSample]) -> list[Alert]:
        """Replay a whole session from a fresh state (analysis, evaluation)."""
        state = self.new_state(session_id)
        alerts: list[Alert] = []
        for sample in samples:
            state, raised = self.update(state, sample)
            alerts.extend(raised)
        return alerts

    def update(self, state: State, sample: AlertInput) -> tuple[State, list[Alert]]:
        """Feed one sample; returns the state (updated in place) and any new alerts."""
        sig = state["sig"]
        t = sample.t_s
        if sig["t"] is not None and t <= sig["t"]:
            # A replayed, duplicated or out-of-order sample: already accounted for.
            return state, []
        plan = state.get("plan")
        hr_on, pace_on, power_on, ef_on, drift_on, fade_on, w_prime_on = self._on
        judged = self._channels
        if plan is not None:
            kinds = plan["k"]  # a plan's targets add channels
            judged = (
                judged[0] or (hr_on and kinds[2]),
                judged[1] or (power_on and kinds[0]),
                judged[2] or (pace_on and kinds[1]),
            )
        dt, gap = update_signals(
            sig, self._params, t, sample.heart_rate_bpm, sample.power_w, sample.speed_m_s,
            sample.cadence_rpm, judged,
        )  # fmt: skip
        targets = self._targets(state, plan, t)
        if gap:
            sig["obs"] = t
            rearm = dt > LONG_GAP_S
            for key, machine in state["m"].items():
                machine[0] = -1.0
                machine[1] = None
                if rearm:
                    # After a stop the heart-rate floor waits for the athlete again.
                    machine[2] = key != "heart_rate:low"
        dt = min(dt, GAP_S)
        alerts: list[Alert] = []
        if hr_on:
            self._heart_rate(state, t, dt, alerts, targets)
        if pace_on:
            self._pace(state, t, dt, alerts, targets)
        if power_on:
            self._power(state, t, dt, alerts, targets)
        if ef_on:
            self._ef_drop(state, t, dt, alerts)
        if drift_on:
            self._hr_drift(state, t, dt, alerts)
        # With a power target the power rule says "under target"; fade is for the
        # stretches without one.
        if fade_on and not (power_on and targets[1][0] is not None):
            self._power_fade(state, t, dt, alerts)
        if w_prime_on:
            self._w_prime(state, t, dt, alerts)
        return state, alerts

    # -- targets: the plan's current interval, else the athlete's bounds --------------

    def _targets(self, state: State, plan: dict[str, Any] | None, t: float) -> _Targets:
        """(hr lo, hr hi, hr since), (power ...), (pace fast, pace slow, since)."""
        hr, power, speed = bounds = self._bounds
        if plan is None:
            return bounds
        sig = state["sig"]
        cur = plan["cur"]
        rows = plan["rows"]
        if cur[1] is None:
            cur[1] = t
            cur[2] = sig["d"]
            changed = True
        else:
            changed = advance(cur, rows, t, sig["d"])
        if cur[0] >= len(rows):
            if changed:
                sig["pref"] = None
            return bounds
        row = rows[cur[0]]
        if changed:
            self._interval_changed(state, row, cur[1])
        since = cur[1] + plan["g"]
        if row[2] is not None:
            power = (row[2], row[3], since)
        if row[4] is not None:
            speed = (row[4], row[5], since)
        if row[6] is not None:
            hr = (row[6], row[7], cur[1] + plan["hg"])
        return hr, power, speed

    def _interval_changed(self, state: State, row: list[Any], start_t: float) -> None:
        # A new target is a new question: directions re-arm, holds restart.
        for key, m in state["m"].items():
            if key.startswith(("heart_rate:", "power:", "pace:")):
                m[0] = -1.0
                m[1] = None
                m[2] = True
        sig = state["sig"]
        if row[2] is not None:
            sig["pref"] = [0.5 * (row[2] + row[3]), start_t - sig["t0"]]
        else:
            sig["pref"] = None

    # -- the generic state machine -------------------------------------------------

    def _machine(
        self,
        state: State,
        rule: str,
        direction: str,
        t: float,
        dt: float,
        excess: float | None,
        margin: float,
        dwell_s: float,
        cooldown_s: float,
        lead_s: float = 0.0,
        ready: bool = True,
    ) -> float | None:
        """Advance one rule direction; returns the onset time when it fires now.

        ``ready``: whether the alert may be told now; when not, a held dwell waits
        (without resetting) until it is.

        ``lead_s``: a trailing window's mean describes the middle of the window, so a
        windowed metric's onset is dated half a window before the crossing. Negative
        (:data:`_SLOW`) for the slow fatigue metrics, whose onset is not sticky.
        """
        key = f"{rule}:{direction}"
        machines = state["m"]
        m = machines.get(key)
        if m is None:
            # A heart-rate floor applies once the athlete has reached it: a warm-up is
            # not "too low". The low direction starts disarmed (re-armed from inside).
            m = machines[key] = [-1.0, None, key != "heart_rate:low", t]
        if excess is None:
            # Dropout or not defined now: the dwell clock pauses, for a while.
            if t - m[3] > MAX_PAUSE_S:
                m[0] = -1.0
                m[1] = None
            return None
        m[3] = t
        if excess <= 0:
            # The dwell must be continuous. For a zone metric the onset is the first
            # crossing since the value was last inside by the margin: a brief dip back
            # does not make the excursion "start" later. A fatigue metric moves slowly
            # and its noise lingers, so its first dip across is not its start: its onset
            # is the start of the hold that fired.
            m[0] = -1.0
            if excess <= -margin:
                m[1] = None
                m[2] = True
            elif lead_s < 0:
                m[1] = None
            return None
        if m[1] is None:
            m[1] = t - max(lead_s, 0.0)
        if m[0] < 0:
            m[0] = 0.0
        else:
            m[0] += dt
        if not m[2] or m[0] < dwell_s or not ready:
            return None
        group = _COOLDOWN_GROUP.get(rule, rule)
        last = state["cool"].get(group)
        if last is not None and t - last < cooldown_s:
            return None
        m[2] = False
        state["cool"][group] = t
        onset: float = m[1]
        return onset

    def _suspend(self, state: State, rule: str, direction: str) -> None:
        m = state["m"].get(f"{rule}:{direction}")
        if m is not None:
            m[0] = -1.0
            m[1] = None

    def _emit(
        self,
        state: State,
        alerts: list[Alert],
        *,
        rule: str,
        direction: str,
        metric: str,
        onset: float,
        t: float,
        current: float,
        threshold: float,
        message: str,
        since: float | None = None,
    ) -> None:
        """Raise an alert; ``since`` is given by the zone rules: where their bound came
        from (a plan's interval starts at a time, the athlete's bounds at -inf)."""
        settings = getattr(self.config.rules, rule)
        sound, vibration = self.config.delivery_for(settings)
        sid: str = state["sid"]
        alerts.append(
            Alert(
                id=alert_id(sid, f"{rule}:{direction}", onset),
                session_id=sid,
                rule=rule,
                direction=direction,
                metric=metric,
                severity=settings.severity,
                message=message,
                current=current,
                threshold=threshold,
                started_at_s=onset,
                fired_at_s=t,
                sound=sound,
                vibration=vibration,
                bound=None if since is None else "settings" if since == _ALWAYS else "plan",
            )
        )

    # -- rules ---------------------------------------------------------------------

    def _heart_rate(
        self, state: State, t: float, dt: float, alerts: list[Alert], targets: _Targets
    ) -> None:
        cfg = self.config.rules.heart_rate
        sig = state["sig"]
        low, high, since = targets[0]
        if low is None and high is None:
            return
        judged = self._judged(sig, sig["hr"], self._params.hr_window_s, since, t, cfg.dwell_s)
        step_up, step_down = sig["lag"]
        for direction, bound in (("high", high), ("low", low)):
            if bound is None:
                continue
            hr = None if judged is None else judged[1 if direction == "high" else 0]
            # HR still catching up with the effort: a step up leaves it low for a
            # while, a step down leaves it high; neither is worth an alert.
            step = step_down if direction == "high" else step_up
            if (step is not None and t - step < cfg.lag_s) or (
                direction == "low" and self._resting(sig)
            ):
                self._suspend(state, "heart_rate", direction)
                continue
            excess = None if hr is None else (
                (hr - bound if direction == "high" else bound - hr) - _MIN_EXCESS_BPM
            )  # fmt: skip
            onset = self._machine(
                state, "heart_rate", direction, t, dt, excess,
                cfg.hysteresis, 0.0, cfg.cooldown_s, cfg.dwell_s,
            )  # fmt: skip
            if onset is not None and hr is not None:
                word = "above" if direction == "high" else "below"
                self._emit(
                    state, alerts, rule="heart_rate", direction=direction,
                    metric="heart_rate", onset=onset, t=t, current=hr, threshold=bound,
                    message=f"Heart rate {hr:.0f} bpm {word} {bound:.0f} bpm", since=since,
                )  # fmt: skip

    def _resting(self, sig: State) -> bool:
        """Stopped or coasting now (10 s output near zero): a low heart rate is owed."""
        win = sig["o10"]
        n = len(win["v"])
        if n == 0:
            return True
        floor = 0.2 * self._params.ftp_w if sig["has_p"] else 1.0
        return bool(win["s"] / n < floor)

    @staticmethod
    def _judged(sig: State, win: State, span_s: float, since: float, t: float,
                dwell_s: float, floor: float | None = None,
                ) -> tuple[float, float] | None:  # fmt: skip
        """The window's (low, high) medians, once the athlete was watched long enough.

        After a plan's interval change (``since``: its start plus the grace period) the
        dwell is enough: the window then holds only the new interval. At the session
        start and after a gap in the samples, half the window (at least the dwell):
        a median of the first seconds of riding is too noisy to judge.
        """
        t0 = sig["t0"]
        obs = sig["obs"]
        start = t0 if obs is None else max(t0, obs)
        if since > start:
            if t - since < dwell_s:
                return None
        elif t - start < max(dwell_s, 0.5 * span_s):
            return None
        return zone_median(win, since - t0, floor)

    def _pace(
        self, state: State, t: float, dt: float, alerts: list[Alert], targets: _Targets
    ) -> None:
        cfg = self.config.rules.pace
        fast, slow, since = targets[2]
        if fast is None or slow is None:
            return
        sig = state["sig"]
        # Stopped and walking samples do not count (pace is undefined, not infinite): a
        # light, a junction or a drink is neither slow nor a reason to stop judging the
        # rest. Walking: slower than walk_factor times the slow bound.
        walking = 1000.0 / (cfg.walk_factor * slow)
        speeds = self._judged(
            sig, sig["sw"], self._params.pace_window_s, since, t, cfg.dwell_s, walking
        )
        # A GPS pace lags: the window can still say "fast" after the runner is back on
        # target. An alert is told only while the last seconds are off that way too.
        recent = zone_median(sig["sw"], t - sig["t0"] - _CONFIRM_S, walking)
        for direction, bound in (("slow", slow), ("fast", fast)):
            # Slow is speed too low; the (low, high) medians of speed.
            side = 0 if direction == "slow" else 1
            pace = None if speeds is None else 1000.0 / speeds[side]
            excess = None if pace is None else (
                (pace - bound if direction == "slow" else bound - pace) - _MIN_EXCESS_PACE * bound
            )  # fmt: skip
            now = None if recent is None else 1000.0 / recent[side]
            still = now is not None and (now > bound if direction == "slow" else now < bound)
            onset = self._machine(
                state, "pace", direction, t, dt, excess,
                cfg.hysteresis, 0.0, cfg.cooldown_s, cfg.dwell_s, ready=still,
            )  # fmt: skip
            if onset is not None and pace is not None:
                word = "slower" if direction == "slow" else "faster"
                target = 0.5 * (fast + slow)
                self._emit(
                    state, alerts, rule="pace", direction=direction, metric="pace",
                    onset=onset, t=t, current=pace, threshold=bound, since=since,
                    message=f"Pace {_fmt_pace(pace)} {word} than target {_fmt_pace(target)}"
                    f" ± {0.5 * (slow - fast):.0f} s",
                )  # fmt: skip

    def _power(
        self, state: State, t: float, dt: float, alerts: list[Alert], targets: _Targets
    ) -> None:
        cfg = self.config.rules.power
        low, high, since = targets[1]
        if low is None and high is None:
            return
        sig = state["sig"]
        # Coasting samples do not count: freewheeling down a hill is not riding short.
        judged = self._judged(sig, sig["pw"], self._params.power_window_s, since, t, cfg.dwell_s)
        for direction, bound in (("high", high), ("low", low)):
            if bound is None:
                continue
            power = None if judged is None else judged[1 if direction == "high" else 0]
            excess = None if power is None else (
                (power - bound if direction == "high" else bound - power) - _MIN_EXCESS * bound
            )  # fmt: skip
            onset = self._machine(
                state, "power", direction, t, dt, excess,
                cfg.hysteresis, 0.0, cfg.cooldown_s, cfg.dwell_s,
            )  # fmt: skip
            if onset is not None and power is not None:
                word = "above" if direction == "high" else "below"
                self._emit(
                    state, alerts, rule="power", direction=direction, metric="power",
                    onset=onset, t=t, current=power, threshold=bound, since=since,
                    message=f"Power {power:.0f} W {word} {bound:.0f} W",
                )  # fmt: skip

    def _ef_drop(self, state: State, t: float, dt: float, alerts: list[Alert]) -> None:
        cfg = self.config.rules.ef_drop
        ratio = state["sig"]["efr"]
        limit = 1.0 - cfg.drop_fraction
        excess = None if ratio is None else limit - ratio
        onset = self._machine(
            state,
            "ef_drop",
            "low",
            t,
            dt,
            excess,
            cfg.hysteresis,
            cfg.dwell_s,
            cfg.cooldown_s,
            _SLOW,
        )
        if onset is not None and ratio is not None:
            self._emit(
                state, alerts, rule="ef_drop", direction="low", metric="efficiency_factor",
                onset=onset, t=t, current=ratio, threshold=limit,
                message=f"Efficiency {100 * (1 - ratio):.1f} % below the early steady baseline",
            )  # fmt: skip

    def _hr_drift(self, state: State, t: float, dt: float, alerts: list[Alert]) -> None:
        cfg = self.config.rules.hr_drift
        slope = state["sig"]["drift"]  # the rise over the baseline, a fraction
        excess = None if slope is None else slope - cfg.rise_fraction
        onset = self._machine(
            state,
            "hr_drift",
            "high",
            t,
            dt,
            excess,
            cfg.hysteresis,
            cfg.dwell_s,
            cfg.cooldown_s,
            _SLOW,
        )
        if onset is not None and slope is not None:
            self._emit(
                state, alerts, rule="hr_drift", direction="high", metric="hr_drift",
                onset=onset, t=t, current=slope, threshold=cfg.rise_fraction,
                message=f"Heart rate {100 * slope:.1f} % above the early steady level "
                "at the same output (cardiac drift)",
            )  # fmt: skip

    def _power_fade(self, state: State, t: float, dt: float, alerts: list[Alert]) -> None:
        cfg = self.config.rules.power_fade
        sig = state["sig"]
        fade = sig["fade"]
        excess: float | None
        if fade is None:
            excess = None
        elif fade[1] < cfg.floor_fraction or fade[1] * sig["best5"] < self._params.min_best_w:
            # Resting, or riding easy (under the work floor, 75 % of FTP): not fading;
            # counts as back inside (re-arms).
            excess = -1.0
        else:
            excess = cfg.fade_fraction - fade[0]
        onset = self._machine(
            state,
            "power_fade",
            "low",
            t,
            dt,
            excess,
            cfg.hysteresis,
            cfg.dwell_s,
            cfg.cooldown_s,
            _SLOW,
        )
        if onset is not None and fade is not None:
            best = sig["best5"]
            self._emit(
                state, alerts, rule="power_fade", direction="low", metric="power_5min",
                onset=onset, t=t, current=fade[0] * best, threshold=cfg.fade_fraction * best,
                message=f"Power fading: {fade[0] * best:.0f} W, "
                f"{100 * fade[0]:.0f} % of the expected {best:.0f} W",
            )  # fmt: skip

    def _w_prime(self, state: State, t: float, dt: float, alerts: list[Alert]) -> None:
        cfg = self.config.rules.w_prime
        balance = state["sig"]["wb"]
        w_prime = self.athlete.w_prime_j
        ratio = None if balance is None else balance / w_prime
        excess = None if ratio is None else cfg.fraction - ratio
        onset = self._machine(
            state, "w_prime", "low", t, dt, excess, cfg.hysteresis, cfg.dwell_s, cfg.cooldown_s
        )
        if onset is not None and balance is not None:
            self._emit(
                state, alerts, rule="w_prime", direction="low", metric="w_prime_balance",
                onset=onset, t=t, current=balance, threshold=cfg.fraction * w_prime,
                message=f"W' balance {balance / 1000:.1f} kJ, under "
                f"{100 * cfg.fraction:.0f} % of W'",
            )  # fmt: skip

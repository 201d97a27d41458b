"""Per-session live metrics: feed samples one at a time, read a snapshot.

:class:`SessionMetrics` is THE per-sample update: the metrics agent calls
:meth:`SessionMetrics.add_sample` for every sample of a session and keeps
:meth:`SessionMetrics.to_dict` in its changelog-backed table; ``livecoach analyze`` and
:func:`agents.summary.summarise` run recordings through the same method. The state is
running sums and bounded windows, never the list of samples, so it stays a few KB
however long the session.

Input handling (see ``docs/metrics.md``):

- samples are validated by :class:`pipeline.models.Sample` before they get here;
- a sample at or before the last accepted time, or repeating the last sequence number,
  is ignored and counted as ``duplicate`` or ``out_of_order`` (a sequence number lower
  than the last is a restarted device and accepted when its time is newer);
- samples while paused or after stop are ignored and counted; a sample before start
  starts the session at its time;
- a sample the state already holds, fed again because the worker replays its stream
  after a crash (``replay=True``), is ignored and *not* counted: it is not bad input;
- a missing metric (sensor dropout) is left out of that metric's means and zones; the
  rolling windows age it out by time; Normalized Power and W' balance count a missing
  power as 0 W, GoldenCheetah's convention, once the session has seen power;
- each sample stands for the time since the previous one, capped at
  :data:`MAX_SAMPLE_DT_S` (a longer gap is a dropout or an auto-pause, not effort);
  the first sample after a start or resume stands for :data:`NOMINAL_DT_S`;
- W' balance recovers through the whole time between samples, stops and pauses
  included (at 0 W, in closed form), and TSS counts GoldenCheetah's hours: samples
  times the recording interval (the most common spacing), not moving time.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from agents.decoupling import BlockStore, HalfSplitSums
from agents.laps import LAP_DISTANCE_M, LAP_TIME_S, MOVING_SPEED_MIN_M_S, LapMode, Totals
from agents.lifecycle import State, transition
from agents.rolling import CountWindow, TimeWindow
from agents.trimp import hrtss, trimp_increment
from agents.wprime import w_prime_recover, w_prime_step
from agents.zones import AthleteZones
from pipeline.models import AthleteProfile

STATE_VERSION = 1

#: Longest time one sample may stand for.
MAX_SAMPLE_DT_S = 10.0
#: What the first sample of a stretch stands for: one interval at 1 Hz.
NOMINAL_DT_S = 1.0
#: Distinct sample spacings counted for the recording interval (see ``tss_hours``).
MAX_SPACINGS = 32
#: Spacing (s) -> its key in ``spacings``, shared by every session: formatting the key
#: cost more than the rest of the counting. Bounded (jittery clocks make many).
_SPACING_KEYS: dict[float, str] = {}
MAX_SPACING_KEYS = 4096
#: A "current" value older than this is a dropout and shown as None.
STALE_S = 5.0
#: Window spans of the live figures.
PACE_WINDOW_S = 10.0
HR_SHORT_WINDOW_S = 30.0
HR_LONG_WINDOW_S = 180.0
POWER_WINDOW_S = 3.0
#: Normalized Power's rolling mean, in samples (30 s at 1 Hz).
NP_WINDOW_SAMPLES = 30

Outcome = Literal["accepted", "duplicate", "out_of_order", "paused", "stopped", "replayed"]


class SampleLike(Protocol):
    """What the metrics read from a sample (:class:`pipeline.models.Sample` fits)."""

    @property
    def t(self) -> float: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def heart_rate(self) -> float | None: ...
    @property
    def power_w(self) -> float | None: ...
    @property
    def speed_m_s(self) -> float | None: ...
    @property
    def cadence(self) -> float | None: ...
    @property
    def distance_m(self) -> float | None: ...


def _zone_seconds(names: tuple[str, ...]) -> list[float]:
    return [0.0] * len(names)


class SessionMetrics:
    """The live state of one session. Not thread-safe; one owner (its agent)."""

    def __init__(
        self,
        session_id: str,
        profile: AthleteProfile | None = None,
        lap_mode: LapMode = "distance",
        block_store: BlockStore | None = None,
    ) -> None:
        self.session_id = session_id
        self.profile = profile or AthleteProfile()
        self.zones = AthleteZones.from_profile(self.profile)
        self.lap_mode: LapMode = lap_mode
        self.state: State = "created"
        self.started_t: float | None = None
        self.stopped_t: float | None = None
        self.paused_since: float | None = None
        # The last pause, [from, to): a sample taken then is ignored even if it arrives late.
        self.last_pause: list[float] | None = None
        self.paused_s = 0.0
        self.last_t: float | None = None
        self.last_seq: int | None = None
        # Where the next sample's dt is measured from (start, resume, or last sample).
        self._dt_origin: float | None = None
        self.ignored: dict[str, int] = {
            "duplicate": 0,
            "out_of_order": 0,
            "paused": 0,
            "stopped": 0,
        }
        self.totals = Totals(0.0)
        # Latest reading of each metric and when it came, for the "current" figures.
        self.current: dict[str, list[float]] = {}
        self.hr_short = TimeWindow(HR_SHORT_WINDOW_S)
        self.hr_long = TimeWindow(HR_LONG_WINDOW_S)
        self.power_window = TimeWindow(POWER_WINDOW_S)
        self.speed_window = TimeWindow(PACE_WINDOW_S)
        self.np_window = CountWindow(NP_WINDOW_SAMPLES)
        self.np_sum4 = 0.0
        self.np_n = 0
        self.power_seen = False
        self.w_bal_j = self.profile.w_prime_j
        self.w_bal_min_j = self.profile.w_prime_j
        #: How often each spacing between samples occurred ("1": 3600), for TSS hours.
        self.spacings: dict[str, int] = {}
        #: The most common of them as (key, seconds); None: to be found again.
        self._mode: tuple[str, float] | None = None
        self.trimp = 0.0
        # Blocks of (HR, output) pairs for the exact decoupling split; see
        # agents.decoupling. The agent passes a changelog-backed table here.
        self.decoupling_power = HalfSplitSums(f"{session_id}/power", block_store)
        self.decoupling_speed = HalfSplitSums(f"{session_id}/speed", block_store)
        self._device_distance_m: float | None = None
        self.time_in_zone: dict[str, list[float]] = {
            "heart_rate": _zone_seconds(self.zones.heart_rate.names),
            "power": _zone_seconds(self.zones.power.names),
            "pace": _zone_seconds(self.zones.pace.names),
        }
        self.lap = Totals(0.0)
        self.lap_count = 0
        self.last_lap: dict[str, Any] | None = None
        self._pending_laps: list[dict[str, Any]] = []

    # --- lifecycle -----------------------------------------------------------------

    def start(self, t: float) -> None:
        self.state = transition(self.state, "start")
        self.started_t = t
        self._dt_origin = None
        self.totals = Totals(t)
        self.lap = Totals(t)

    def pause(self, t: float) -> None:
        self.state = transition(self.state, "pause")
        self.paused_since = t

    def resume(self, t: float) -> None:
        self.state = transition(self.state, "resume")
        if self.paused_since is not None:
            self.paused_s += max(0.0, t - self.paused_since)
            self.last_pause = [self.paused_since, t]
        self.paused_since = None
        self._dt_origin = None
        # The device kept counting distance while paused; re-base on the next reading.
        self._device_distance_m = None

    def stop(self, t: float) -> None:
        if self.state == "paused" and self.paused_since is not None:
            self.paused_s += max(0.0, t - self.paused_since)
            self.paused_since = None
        self.state = transition(self.state, "stop")
        self.stopped_t = t
        if self.lap.samples:
            self._close_lap("stop")

    def manual_lap(self, t: float) -> dict[str, Any] | None:
        """Close the current lap now; None when it has no samples yet."""
        if self.state != "running" or not self.lap.samples:
            return None
        return self._close_lap("manual")

    def drain_laps(self) -> list[dict[str, Any]]:
        """Lap summaries closed since the last call (the agent publishes them)."""
        laps, self._pending_laps = self._pending_laps, []
        return laps

    # --- the per-sample update -----------------------------------------------------

    def _is_new(self, sample: SampleLike) -> bool:
        """Whether ``sample`` would be accepted (neither repeated, late, paused nor after stop)."""
        if self.state == "stopped":
            return False
        if self.last_t is not None and sample.t <= self.last_t:
            return False
        if sample.seq is not None and sample.seq == self.last_seq:
            return False
        return not self._in_pause(sample.t)

    def add_sample(self, sample: SampleLike, *, replay: bool = False) -> Outcome:
        """Fold one validated sample into the state; say what became of it.

        ``replay``: the sample's stream record was already applied to this state (the
        worker reads its stream again after a crash). Such a sample is still accepted
        if it is new to the state (Redis lost the state's last writes), but when it
        would be ignored it is ``"replayed"`` and not counted as ignored input.
        """
        t = sample.t
        if replay and not self._is_new(sample):
            return "replayed"
        if self.state == "stopped":
            self.ignored["stopped"] += 1
            return "stopped"
        if self.state == "created":
            self.start(t)
        if self.last_t is not None and t <= self.last_t:
            kind: Outcome = "duplicate" if t == self.last_t else "out_of_order"
            self.ignored[kind] += 1
            return kind
        # Only an exact repeat: a device that restarts numbers from 0 again must not be
        # locked out, and a retry with the same time is caught above anyway.
        if sample.seq is not None and sample.seq == self.last_seq:
            self.ignored["duplicate"] += 1
            return "duplicate"
        if self._in_pause(t):
            self.ignored["paused"] += 1
            return "paused"

        origin = self._dt_origin
        dt = NOMINAL_DT_S if origin is None else min(t - origin, MAX_SAMPLE_DT_S)
        # Time that passed with no sample (a stop, a pause, a radio gap): the sample
        # after it stands for one nominal second of its power, and W' balance recovers
        # through the rest at 0 W.
        w_dt, rest_s = dt, 0.0
        last_t = self.last_t
        if last_t is not None:
            spacing = t - last_t
            if spacing > MAX_SAMPLE_DT_S:
                w_dt = NOMINAL_DT_S
                rest_s = spacing - NOMINAL_DT_S
            elif origin is None:
                rest_s = max(0.0, spacing - dt)  # after a resume
            mode = self._mode
            if mode is not None and _SPACING_KEYS.get(spacing) == mode[0]:
                self.spacings[mode[0]] += 1  # the usual spacing again: the mode holds
            else:
                self._count_interval(spacing)
        self.last_t = t
        self._dt_origin = t
        if sample.seq is not None:
            self.last_seq = sample.seq

        hr = sample.heart_rate
        power = sample.power_w
        speed = sample.speed_m_s
        cadence = sample.cadence
        profile = self.profile
        current = self.current

        distance_step = self._distance_step(sample.distance_m, speed, dt)

        for window in (self.hr_short, self.hr_long, self.power_window, self.speed_window):
            window.expire(t)
        if hr is not None:
            current["heart_rate"] = [t, hr]
            self.hr_short.push(t, hr)
            self.hr_long.push(t, hr)
            self.trimp += trimp_increment(hr, dt, profile.hr_rest, profile.hr_max, profile.sex)
            self.time_in_zone["heart_rate"][self.zones.heart_rate.index(hr)] += dt
        if power is not None:
            self.power_seen = True
            current["power"] = [t, power]
            self.power_window.push(t, power)
            self.time_in_zone["power"][self.zones.power.index(power)] += dt
        if speed is not None:
            current["speed"] = [t, speed]
            self.speed_window.push(t, speed)
            if speed >= MOVING_SPEED_MIN_M_S:
                self.time_in_zone["pace"][self.zones.pace.index(speed)] += dt
        if cadence is not None:
            current["cadence"] = [t, cadence]

        # Normalized Power and W' balance: a missing power reading counts as 0 W.
        p = power if power is not None else 0.0
        self.np_window.push(p)
        rolling = self.np_window.mean() or 0.0
        self.np_sum4 += rolling**4
        self.np_n += 1
        if self.power_seen:
            if rest_s > 0:
                self.w_bal_j = w_prime_recover(
                    self.w_bal_j, 0.0, rest_s, profile.critical_power_w, profile.w_prime_j
                )
            self.w_bal_j = w_prime_step(
                self.w_bal_j, p, w_dt, profile.critical_power_w, profile.w_prime_j
            )
            self.w_bal_min_j = min(self.w_bal_min_j, self.w_bal_j)

        if hr is not None:
            if power is not None:
                self.decoupling_power.add(hr, power)
            if speed is not None:
                self.decoupling_speed.add(hr, speed)

        self.totals.add(t, dt, distance_step, hr, power, speed, cadence)
        self.lap.add(t, dt, distance_step, hr, power, speed, cadence)
        self._auto_lap()
        return "accepted"

    def _count_interval(self, spacing_s: float) -> None:
        # Spacings to the millisecond; a handful of distinct values in practice (1 s, or
        # a smart-recording device's few), bounded so a jittery clock cannot grow it.
        key = _SPACING_KEYS.get(spacing_s)
        if key is None:
            key = f"{round(spacing_s, 3):g}"
            if len(_SPACING_KEYS) < MAX_SPACING_KEYS:
                _SPACING_KEYS[spacing_s] = key
        counts = self.spacings
        if key in counts or len(counts) < MAX_SPACINGS:
            count = counts[key] = counts.get(key, 0) + 1
            # Counts only grow: only the spacing just counted can overtake the mode.
            mode = self._mode
            if mode is not None and key != mode[0] and count >= counts[mode[0]]:
                self._mode = None

    @property
    def recording_interval_s(self) -> float:
        """The most common spacing of samples (GoldenCheetah's recording interval)."""
        if not self.spacings:
            return NOMINAL_DT_S
        if self._mode is None:
            counts = self.spacings
            key = max(counts, key=lambda k: (counts[k], -float(k)))
            self._mode = (key, float(key))
        return self._mode[1]

    @property
    def tss_hours(self) -> float:
        """GoldenCheetah's hours for TSS: samples x recording interval (not moving time)."""
        return self.np_n * self.recording_interval_s / 3600.0

    def _in_pause(self, t: float) -> bool:
        """Was ``t`` paused time? A sample taken before a pause may still arrive during it."""
        if self.state == "paused" and self.paused_since is not None and t >= self.paused_since:
            return True
        pause = self.last_pause
        return pause is not None and pause[0] <= t < pause[1]

    def set_profile(self, profile: AthleteProfile) -> None:
        """Apply an edited profile from now on; what is already counted stays counted.

        Zones and time in zone keep their zone numbers; W' balance keeps its deficit
        (``W' - balance``) against the new W'.
        """
        deficit_j = self.profile.w_prime_j - self.w_bal_j
        min_deficit_j = self.profile.w_prime_j - self.w_bal_min_j
        self.profile = profile
        self.zones = AthleteZones.from_profile(profile)
        self.w_bal_j = profile.w_prime_j - deficit_j
        self.w_bal_min_j = profile.w_prime_j - min_deficit_j
        for metric, seconds in self.time_in_zone.items():
            size = len(getattr(self.zones, metric).names)
            if len(seconds) != size:
                self.time_in_zone[metric] = (seconds + [0.0] * size)[:size]

    def _distance_step(self, device_m: float | None, speed: float | None, dt: float) -> float:
        """Distance covered by this sample: the device's odometer, else speed * dt."""
        last = self._device_distance_m
        if device_m is not None:
            self._device_distance_m = device_m
            # A lower reading is a device reset: re-base, do not count it backwards.
            return device_m - last if last is not None and device_m > last else 0.0
        if speed is not None:
            step = speed * dt
            if last is not None:
                self._device_distance_m = last + step
            return step
        return 0.0

    def _auto_lap(self) -> None:
        if self.lap_mode == "distance":
            boundary = (self.lap_count + 1) * LAP_DISTANCE_M
            if self.totals.distance_m >= boundary:
                self._close_lap("distance")
        elif self.lap_mode == "time" and self.lap.moving_s >= LAP_TIME_S:
            self._close_lap("time")

    def _close_lap(self, trigger: str) -> dict[str, Any]:
        self.lap_count += 1
        summary = {"index": self.lap_count, "trigger": trigger, **self.lap.summary()}
        self.last_lap = summary
        self._pending_laps.append(summary)
        self.lap = Totals(self.lap.end_t)
        if trigger == "distance":
            # After a jump over several boundaries, the next lap ends at the next one.
            self.lap_count = max(self.lap_count, int(self.totals.distance_m // LAP_DISTANCE_M))
        return summary

    # --- reading -------------------------------------------------------------------

    def _current(self, name: str) -> float | None:
        entry = self.current.get(name)
        if entry is None or self.last_t is None or self.last_t - entry[0] > STALE_S:
            return None
        return entry[1]

    @property
    def normalized_power(self) -> float | None:
        if not self.power_seen or self.np_n == 0:
            return None
        return float((self.np_sum4 / self.np_n) ** 0.25)

    @property
    def intensity_factor(self) -> float | None:
        np_w = self.normalized_power
        return np_w / self.profile.ftp_w if np_w is not None else None

    @property
    def tss(self) -> float | None:
        intensity = self.intensity_factor
        if intensity is None:
            return None
        return 100.0 * self.tss_hours * intensity**2

    @property
    def decoupling_pct(self) -> float | None:
        """Power-based when the session has HR and power together, else speed-based."""
        if self.decoupling_power.n:
            return self.decoupling_power.decoupling_pct()
        return self.decoupling_speed.decoupling_pct()

    def _efficiency_factor(self) -> float | None:
        """NP / mean HR on a ride; mean speed (m/s) / mean HR without power."""
        mean_hr = self.totals.mean_hr
        if not mean_hr:
            return None
        np_w = self.normalized_power
        if np_w is not None:
            return np_w / mean_hr
        speed = self.totals.mean_speed_m_s
        return speed / mean_hr if speed is not None else None

    @property
    def duration_s(self) -> float:
        """Elapsed time from start to the last sample (or stop), paused time excluded."""
        if self.started_t is None:
            return 0.0
        end = self.last_t if self.last_t is not None else self.started_t
        if self.paused_since is not None:
            end = self.paused_since
        return max(0.0, end - self.started_t - self.paused_s)

    def pace_s_per_km(self) -> float | None:
        """Pace from the rolling speed; None when stopped or no speed: never infinite."""
        speed = self.speed_window.mean()
        if speed is None or speed < MOVING_SPEED_MIN_M_S:
            return None
        return 1000.0 / speed

    def snapshot(self) -> dict[str, Any]:
        """The ``metrics`` of a ``metrics_update``: the spec's fields, then derived ones."""
        hr = self._current("heart_rate")
        power_3s = self.power_window.mean()
        speed = self.speed_window.mean()
        w_prime = self.profile.w_prime_j
        zones = self.zones
        return {
            "heart_rate": hr,
            "pace": self.pace_s_per_km(),
            "distance": self.totals.distance_m,
            "cadence": self._current("cadence"),
            "power": self._current("power"),
            "speed_m_s": speed,
            "hr_avg_30s": self.hr_short.mean(),
            "hr_avg_3min": self.hr_long.mean(),
            "hr_avg_session": self.totals.mean_hr,
            "hr_max": self.totals.max_hr,
            "power_3s": power_3s,
            "power_avg": self.totals.mean_power,
            "np": self.normalized_power,
            "if": self.intensity_factor,
            "tss": self.tss,
            "w_prime_bal_j": self.w_bal_j if self.power_seen else None,
            "w_prime_bal_pct": 100.0 * self.w_bal_j / w_prime if self.power_seen else None,
            "trimp": self.trimp,
            "decoupling_pct": self.decoupling_pct,
            "hr_zone": zones.heart_rate.name(hr) if hr is not None else None,
            "power_zone": zones.power.name(power_3s) if power_3s is not None else None,
            "pace_zone": (
                zones.pace.name(speed)
                if speed is not None and speed >= MOVING_SPEED_MIN_M_S
                else None
            ),
            "elapsed_s": self.duration_s,
            "moving_s": self.totals.moving_s,
            "lap": self.lap_count + 1,
            "state": self.state,
            "samples": self.totals.samples,
        }

    def summary(self) -> dict[str, Any]:
        """The session summary (``livecoach analyze`` and the training_sessions row)."""
        totals = self.totals
        profile = self.profile
        np_w = self.normalized_power
        mean_power = totals.mean_power
        return {
            "session_id": self.session_id,
            "state": self.state,
            "samples": totals.samples,
            "duration_s": self.duration_s,
            "moving_time_s": totals.moving_s,
            "paused_s": self.paused_s,
            "mean_hr": totals.mean_hr,
            "max_hr": totals.max_hr,
            "mean_power": mean_power,
            "max_power": totals.max_power,
            # Extra: means weighted by each sample's dt, for irregular sampling.
            "mean_hr_time_weighted": totals.mean_hr_time_weighted,
            "mean_power_time_weighted": totals.mean_power_time_weighted,
            "np": np_w,
            "if": self.intensity_factor,
            "tss": self.tss,
            "vi": np_w / mean_power if np_w is not None and mean_power else None,
            "ef": self._efficiency_factor(),
            "w_prime_bal_min_j": self.w_bal_min_j if self.power_seen else None,
            "trimp": self.trimp,
            "hrtss": hrtss(self.trimp, profile.lthr, profile.hr_rest, profile.hr_max, profile.sex),
            "decoupling_pct": self.decoupling_pct,
            "decoupling_output": (
                "power" if self.decoupling_power.n else "speed" if self.decoupling_speed.n else None
            ),
            "distance_m": totals.distance_m,
            "mean_speed_m_s": totals.mean_speed_m_s,
            "mean_cadence": totals.mean_cadence,
            "time_in_zone": {
                metric: dict(zip(getattr(self.zones, metric).names, seconds, strict=True))
                for metric, seconds in self.time_in_zone.items()
            },
            "zone_bounds": {
                "heart_rate_bpm": list(self.zones.heart_rate.lower),
                "power_w": list(self.zones.power.lower),
                "pace_speed_m_s": list(self.zones.pace.lower),
            },
            "laps": self.lap_count,
            "ignored": dict(self.ignored),
        }

    # --- persistence ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able form of the whole state (the Faust table value)."""
        return {
            "v": STATE_VERSION,
            "session_id": self.session_id,
            "profile": self.profile.model_dump(),
            "lap_mode": self.lap_mode,
            "state": self.state,
            "started_t": self.started_t,
            "stopped_t": self.stopped_t,
            "paused_since": self.paused_since,
            "last_pause": self.last_pause,
            "paused_s": self.paused_s,
            "last_t": self.last_t,
            "last_seq": self.last_seq,
            "dt_origin": self._dt_origin,
            "ignored": self.ignored,
            "totals": self.totals.to_list(),
            "current": self.current,
            "hr_short": self.hr_short.to_dict(),
            "hr_long": self.hr_long.to_dict(),
            "power_window": self.power_window.to_dict(),
            "speed_window": self.speed_window.to_dict(),
            "np_window": self.np_window.to_dict(),
            "np_sum4": self.np_sum4,
            "np_n": self.np_n,
            "power_seen": self.power_seen,
            "w_bal_j": self.w_bal_j,
            "w_bal_min_j": self.w_bal_min_j,
            "trimp": self.trimp,
            "spacings": self.spacings,
            "decoupling_power": self.decoupling_power.to_dict(),
            "decoupling_speed": self.decoupling_speed.to_dict(),
            "device_distance_m": self._device_distance_m,
            "time_in_zone": self.time_in_zone,
            "lap": self.lap.to_list(),
            "lap_count": self.lap_count,
            "last_lap": self.last_lap,
            "pending_laps": self._pending_laps,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], block_store: BlockStore | None = None
    ) -> SessionMetrics:
        """The state saved by :meth:`to_dict`; ``block_store`` as given to the constructor."""
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"session state version {data.get('v')!r}, expected {STATE_VERSION}")
        metrics = cls(
            str(data["session_id"]),
            AthleteProfile.model_validate(data["profile"]),
            data["lap_mode"],
        )
        metrics.state = data["state"]
        metrics.started_t = data["started_t"]
        metrics.stopped_t = data["stopped_t"]
        metrics.paused_since = data["paused_since"]
        metrics.last_pause = data["last_pause"]
        metrics.paused_s = float(data["paused_s"])
        metrics.last_t = data["last_t"]
        metrics.last_seq = data["last_seq"]
        metrics._dt_origin = data["dt_origin"]
        metrics.ignored = {k: int(v) for k, v in data["ignored"].items()}
        metrics.totals = Totals.from_list(data["totals"])
        metrics.current = {k: [float(x) for x in v] for k, v in data["current"].items()}
        metrics.hr_short = TimeWindow.from_dict(data["hr_short"])
        metrics.hr_long = TimeWindow.from_dict(data["hr_long"])
        metrics.power_window = TimeWindow.from_dict(data["power_window"])
        metrics.speed_window = TimeWindow.from_dict(data["speed_window"])
        metrics.np_window = CountWindow.from_dict(data["np_window"])
        metrics.np_sum4 = float(data["np_sum4"])
        metrics.np_n = int(data["np_n"])
        metrics.power_seen = bool(data["power_seen"])
        metrics.w_bal_j = float(data["w_bal_j"])
        metrics.w_bal_min_j = float(data["w_bal_min_j"])
        metrics.trimp = float(data["trimp"])
        metrics.spacings = {str(k): int(v) for k, v in data.get("spacings", {}).items()}
        metrics.decoupling_power = HalfSplitSums.from_dict(data["decoupling_power"], block_store)
        metrics.decoupling_speed = HalfSplitSums.from_dict(data["decoupling_speed"], block_store)
        metrics._device_distance_m = data["device_distance_m"]
        metrics.time_in_zone = {k: [float(x) for x in v] for k, v in data["time_in_zone"].items()}
        metrics.lap = Totals.from_list(data["lap"])
        metrics.lap_count = int(data["lap_count"])
        metrics.last_lap = data["last_lap"]
        metrics._pending_laps = list(data["pending_laps"])
        return metrics


def is_finite_or_none(value: float | None) -> bool:
    """Every number a snapshot carries passes this: no NaN, no infinity."""
    return value is None or math.isfinite(value)

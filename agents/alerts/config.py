"""Per-athlete alert configuration: which rules are on, their bounds and their timing.

This is the model the REST ``PUT`` of alert thresholds validates with and the shape of
``athlete_profiles.alert_settings`` (JSONB). It imports neither Faust nor the web
edge, so both the agents and the edge can use it. A configuration is frozen: an update
builds a new object (:func:`apply_update`), and a refused update leaves the caller
holding the previous one, which stays in force.

Bounds are either explicit (``high_bpm``, ``low_w``) or a training zone resolved
against the athlete's profile (:class:`pipeline.models.AthleteProfile`) when
the engine is built (:func:`resolve_hr_bounds`, :func:`resolve_power_bounds`).
Explicit bounds win over a zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from agents.zones import AthleteZones, power_zones
from pipeline.models import AthleteProfile

__all__ = [
    "RULE_NAMES",
    "AlertConfig",
    "ConfigUpdate",
    "Delivery",
    "EfDropRule",
    "HeartRateRule",
    "HrDriftRule",
    "PaceRule",
    "PowerFadeRule",
    "PowerRule",
    "Rules",
    "Severity",
    "WPrimeRule",
    "apply_update",
    "resolve_hr_bounds",
    "resolve_power_bounds",
    "try_update",
]

Severity = Literal["info", "warning", "critical"]

#: Every rule the engine knows, in the order alerts are evaluated.
RULE_NAMES: tuple[str, ...] = (
    "heart_rate",
    "pace",
    "power",
    "ef_drop",
    "hr_drift",
    "power_fade",
    "w_prime",
)

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


def _check_order(low: float | None, high: float | None, low_name: str) -> None:
    if low is not None and high is not None and low >= high:
        raise ValueError(f"must be above {low_name} ({low:g}), got {high:g}")


class _Model(BaseModel):
    # Unknown keys are refused (an unknown rule name is a typo, not a new rule), and a
    # configuration is immutable so an engine never sees one change under it.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Model):
    enabled: bool = True
    #: How long the condition must hold before the alert fires.
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 15.0
    #: How far back inside (in the metric's unit) the value must come to re-arm.
    hysteresis: NonNegative = 0.0
    #: Minimum time between two alerts of the rule (both directions share it).
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = 120.0
    severity: Severity = "warning"
    #: Per-rule delivery override; ``None`` uses :class:`Delivery`.
    sound: bool | None = None
    vibration: bool | None = None


class HeartRateRule(_RuleBase):
    """Heart rate above or below bounds (bpm) or one of the athlete's HR zones (1-5)."""

    low_bpm: Annotated[float, Field(gt=0, lt=260)] | None = None
    high_bpm: Annotated[float, Field(gt=0, lt=260)] | None = None
    zone: Annotated[int, Field(ge=1, le=5)] | None = None
    #: How long heart rate must stay out: the rule judges the median of the last
    #: ``2 * dwell_s``, so an excursion shorter than the dwell never alerts.
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: The median window (s); at least twice the dwell is used.
    window_s: Annotated[float, Field(ge=10, le=600)] = 90.0
    hysteresis: NonNegative = 3.0
    #: After a step in effort HR takes 1-3 min to follow; the rule that the lag would
    #: trip (low after a step up, high after a step down) is suspended this long.
    lag_s: Annotated[float, Field(ge=0, le=600)] = 120.0

    # A field validator (not a model one) so the error's loc names high_bpm.
    @field_validator("high_bpm")
    @classmethod
    def _bounds_ordered(cls, high: float | None, info: ValidationInfo) -> float | None:
        _check_order(info.data.get("low_bpm"), high, "low_bpm")
        return high


class PaceRule(_RuleBase):
    """Pace (from a rolling window of speed) off target by more than a tolerance."""

    target_s_per_km: Annotated[float, Field(gt=60, lt=1800)] | None = None
    tolerance_s_per_km: Annotated[float, Field(gt=0, le=300)] = 15.0
    #: The median window (s); at least twice the dwell is used.
    window_s: Annotated[float, Field(ge=10, le=600)] = 90.0
    #: How long the pace must stay off: an excursion shorter than this (a turn, a
    #: junction, GPS wander) never alerts.
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Slower than this many times the slow bound is walking or stopping (a light, a
    #: drink, a walk break), not running slowly: such samples are not judged.
    walk_factor: Annotated[float, Field(ge=1.1, le=5)] = 1.5
    hysteresis: NonNegative = 5.0
    severity: Severity = "info"


class PowerRule(_RuleBase):
    """Power (short rolling mean) outside bounds (W) or a Coggan zone of FTP (1-7)."""

    low_w: Annotated[float, Field(ge=0, le=3000)] | None = None
    high_w: Annotated[float, Field(gt=0, le=3000)] | None = None
    zone: Annotated[int, Field(ge=1, le=7)] | None = None
    #: The median window (s); at least twice the dwell is used.
    window_s: Annotated[float, Field(ge=3, le=600)] = 90.0
    #: How long power must stay out: a coast, a surge or a sprint shorter than this
    #: never alerts.
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Below this the rider is coasting (as is any sample with cadence 0): not judged.
    coast_below_w: Annotated[float, Field(ge=0, le=200)] = 10.0
    hysteresis: NonNegative = 10.0
    severity: Severity = "info"

    @field_validator("high_w")
    @classmethod
    def _bounds_ordered(cls, high: float | None, info: ValidationInfo) -> float | None:
        _check_order(info.data.get("low_w"), high, "low_w")
        return high


class EfDropRule(_RuleBase):
    """Rolling efficiency factor (output / HR) below the early steady baseline."""

    drop_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    #: 10 min: over 5 min, heart-rate wander alone moves EF by 1-2 %.
    window_s: Annotated[float, Field(ge=60, le=1800)] = 600.0
    #: The baseline is the first steady window that starts after this (skips warm-up).
    baseline_after_s: Annotated[float, Field(ge=0, le=7200)] = 600.0
    #: Steady = coefficient of variation of 10 s output means under this (also the
    #: baseline's). Stricter than the drift rule's 10 %: a window straddling a 10 %
    #: change of pace passes 10 %, and HR lagging that change moves EF by more than
    #: the 5 % this rule looks for.
    steady_cv: Annotated[float, Field(gt=0, lt=1)] = 0.08
    #: EF is compared only at an output within this fraction of the baseline's.
    comparable_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.10
    # Fatigue builds over tens of minutes: waiting 5 min costs nothing and keeps a
    # metric that wobbles around its threshold from raising a false alarm.
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 300.0
    hysteresis: NonNegative = 0.01  # fraction of baseline EF
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = 900.0
    severity: Severity = "info"


class HrDriftRule(_RuleBase):
    """Heart rate risen over the early steady baseline at the same output (cardiac drift).

    Friel counts under 5 % as coupled; a normal long ride drifts 2-3 % over 40 min.
    """

    rise_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    #: Kept for stored settings of earlier versions; the rule no longer uses a slope
    #: (ordinary wander swings a 10 min slope by 0.15 bpm/min).
    slope_bpm_per_min: Annotated[float, Field(gt=0, le=10)] | None = None
    window_s: Annotated[float, Field(ge=120, le=3600)] = 600.0
    #: Steady enough to compare with the baseline: 10 s output means within this
    #: (a constant-power run over hills varies 8-9 %; the output must also be within
    #: 5 % of the baseline's, which keeps harder or easier riding out).
    steady_cv: Annotated[float, Field(gt=0, lt=1)] = 0.10
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 300.0
    hysteresis: NonNegative = 0.01  # fraction of the baseline HR
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = 900.0
    severity: Severity = "info"


class PowerFadeRule(_RuleBase):
    """5 min power below a fraction of the plan's target or the steady reference.

    The reference is the current interval's power target (its middle) when the plan
    gives one, else the median of the session's steady 5 min powers, never the best
    5 min: a deliberate hard block is not the level the rider is expected to hold.
    """

    fade_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.92
    #: Below this fraction of the best the athlete is resting, not fading.
    floor_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.70
    window_s: Annotated[float, Field(ge=60, le=1800)] = 300.0
    #: Steady 5 min powers count for the reference only from this fraction of FTP.
    min_best_fraction_of_ftp: Annotated[float, Field(gt=0, le=2)] = 0.75
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 120.0
    hysteresis: NonNegative = 0.02  # fraction of the best
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = 600.0

    @field_validator("floor_fraction")
    @classmethod
    def _fractions_ordered(cls, floor: float, info: ValidationInfo) -> float:
        fade = info.data.get("fade_fraction")
        if fade is not None and floor >= fade:
            raise ValueError(f"must be below fade_fraction ({fade:g}), got {floor:g}")
        return floor


class WPrimeRule(_RuleBase):
    """W' balance below a fraction of W'."""

    fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 5.0
    hysteresis: NonNegative = 0.05  # fraction of W'
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0


class Rules(_Model):
    heart_rate: HeartRateRule = HeartRateRule()
    pace: PaceRule = PaceRule()
    power: PowerRule = PowerRule()
    ef_drop: EfDropRule = EfDropRule()
    hr_drift: HrDriftRule = HrDriftRule()
    power_fade: PowerFadeRule = PowerFadeRule()
    w_prime: WPrimeRule = WPrimeRule()


class Delivery(_Model):
    """How the athlete's device should announce an alert, unless a rule overrides it."""

    sound: bool = True
    vibration: bool = True


class AlertConfig(_Model):
    """The whole alert configuration of one athlete (``alert_settings`` JSONB)."""

    version: Literal[1] = 1
    rules: Rules = Rules()
    delivery: Delivery = Delivery()

    def to_jsonb(self) -> dict[str, Any]:
        """The JSON-able dict stored in ``athlete_profiles.alert_settings``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_jsonb(cls, data: Mapping[str, Any] | None) -> AlertConfig:
        """Parse stored settings; ``None`` (column never set) gives the defaults."""
        return cls() if data is None else cls.model_validate(dict(data))

    @classmethod
    def defaults_for(cls, athlete: AthleteProfile) -> AlertConfig:
        """Sensible defaults for an athlete who has configured nothing.

        Only the rules that need no target are given bounds: an HR ceiling at the top
        of zone 5b (106 % of LTHR, capped below HRmax) and the fatigue rules. Pace and
        power stay silent until the athlete or coach sets a target.
        """
        high = round(min(athlete.lthr * 1.06, athlete.hr_max * 0.97))
        return cls(rules=Rules(heart_rate=HeartRateRule(high_bpm=high)))

    def delivery_for(self, rule: _RuleBase) -> tuple[bool, bool]:
        """(sound, vibration) for an alert of ``rule``."""
        sound = self.delivery.sound if rule.sound is None else rule.sound
        vibration = self.delivery.vibration if rule.vibration is None else rule.vibration
        return sound, vibration


def _zone_bounds(lower: tuple[float, ...], zone: int) -> tuple[float | None, float | None]:
    low = lower[zone - 1]
    high = lower[zone] if zone < len(lower) else None
    return (low if low > 0 else None), high


def resolve_hr_bounds(
    rule: HeartRateRule, athlete: AthleteProfile
) -> tuple[float | None, float | None]:
    """(low, high) bpm: explicit bounds, else the zone's, else none.

    Zones are the athlete's own (``agents.zones``: % of HRmax or % of LTHR, as the
    profile says), so "zone 2" means what the dashboard's time-in-zone shows.
    """
    low, high = rule.low_bpm, rule.high_bpm
    if rule.zone is not None:
        z_low, z_high = _zone_bounds(AthleteZones.from_profile(athlete).heart_rate.lower, rule.zone)
        low = z_low if low is None else low
        high = z_high if high is None else high
    return low, high


def resolve_power_bounds(
    rule: PowerRule, athlete: AthleteProfile
) -> tuple[float | None, float | None]:
    """(low, high) W: explicit bounds, else the Coggan zone's (% of FTP), else none."""
    low, high = rule.low_w, rule.high_w
    if rule.zone is not None:
        z_low, z_high = _zone_bounds(power_zones(athlete.ftp_w).lower, rule.zone)
        low = z_low if low is None else low
        high = z_high if high is None else high
    return low, high


def _deep_merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def apply_update(current: AlertConfig, patch: Mapping[str, Any]) -> AlertConfig:
    """``current`` with ``patch`` merged in (a partial document, nested by rule).

    Raises :class:`pydantic.ValidationError` (whose ``loc`` names the field) when the
    result is invalid; ``current`` is never modified.
    """
    return AlertConfig.model_validate(_deep_merge(current.to_jsonb(), patch))


class ConfigUpdate(_Model):
    """Outcome of :func:`try_update`: the configuration in force and any errors."""

    config: AlertConfig
    accepted: bool
    #: ``[{"field": "rules.heart_rate.low_bpm", "message": ...}]`` when refused.
    errors: list[dict[str, str]] = Field(default_factory=list)


def try_update(current: AlertConfig, patch: Mapping[str, Any]) -> ConfigUpdate:
    """Like :func:`apply_update`, but a refusal returns the old configuration in force."""
    try:
        return ConfigUpdate(config=apply_update(current, patch), accepted=True)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        return ConfigUpdate(config=current, accepted=False, errors=errors)

"""The per-athlete alert configuration: validation names the field, updates are atomic."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agents.alerts.config import (
    AlertConfig,
    HeartRateRule,
    PowerRule,
    Rules,
    apply_update,
    resolve_hr_bounds,
    resolve_power_bounds,
    try_update,
)
from pipeline.models import AthleteProfile


def _locs(exc: ValidationError) -> list[str]:
    return [".".join(str(part) for part in err["loc"]) for err in exc.errors()]


def test_defaults_round_trip_through_jsonb() -> None:
    config = AlertConfig.defaults_for(AthleteProfile(lthr=170, hr_max=190))
    stored = json.loads(json.dumps(config.to_jsonb()))
    assert AlertConfig.from_jsonb(stored) == config
    assert AlertConfig.from_jsonb(None) == AlertConfig()


def test_defaults_come_from_the_profile() -> None:
    config = AlertConfig.defaults_for(AthleteProfile(lthr=160, hr_max=185))
    assert config.rules.heart_rate.high_bpm == round(160 * 1.06)
    # No target, no pace or power alerts until someone sets one.
    assert config.rules.pace.target_s_per_km is None
    assert resolve_power_bounds(config.rules.power, AthleteProfile()) == (None, None)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"rules": {"heart_rate": {"low_bpm": 170, "high_bpm": 150}}}, "rules.heart_rate.high_bpm"),
        ({"rules": {"power": {"low_w": 300, "high_w": 200}}}, "rules.power.high_w"),
        ({"rules": {"pace": {"cooldown_s": -5}}}, "rules.pace.cooldown_s"),
        ({"rules": {"hr_zone_typo": {"enabled": True}}}, "rules.hr_zone_typo"),
        ({"rules": {"w_prime": {"fraction": 1.5}}}, "rules.w_prime.fraction"),
        ({"rules": {"heart_rate": {"severity": "loud"}}}, "rules.heart_rate.severity"),
        ({"rules": {"power_fade": {"floor_fraction": 0.95}}}, "rules.power_fade.floor_fraction"),
        ({"delivery": {"sound": "maybe"}}, "delivery.sound"),
    ],
)
def test_invalid_configuration_names_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        apply_update(AlertConfig(), patch)
    assert field in _locs(info.value)


def test_refused_update_keeps_the_previous_configuration() -> None:
    current = AlertConfig(rules=Rules(heart_rate=HeartRateRule(high_bpm=170)))
    result = try_update(current, {"rules": {"heart_rate": {"low_bpm": 180}}})
    assert not result.accepted
    assert result.config is current
    assert result.errors[0]["field"] == "rules.heart_rate.high_bpm"
    assert "low_bpm" in result.errors[0]["message"]


def test_accepted_update_merges_into_the_current_configuration() -> None:
    current = AlertConfig(rules=Rules(heart_rate=HeartRateRule(high_bpm=170, cooldown_s=60)))
    result = try_update(current, {"rules": {"heart_rate": {"low_bpm": 110}}})
    assert result.accepted and not result.errors
    hr = result.config.rules.heart_rate
    assert (hr.low_bpm, hr.high_bpm, hr.cooldown_s) == (110, 170, 60)
    assert current.rules.heart_rate.low_bpm is None  # the old object is untouched


def test_zones_resolve_against_the_profile_and_explicit_bounds_win() -> None:
    athlete = AthleteProfile(hr_max=190, lthr=170, ftp_w=300)
    low, high = resolve_hr_bounds(HeartRateRule(zone=2), athlete)
    assert low == pytest.approx(0.60 * 190) and high == pytest.approx(0.70 * 190)
    by_lthr = athlete.model_copy(update={"hr_zone_model": "lthr"})
    low, high = resolve_hr_bounds(HeartRateRule(zone=2), by_lthr)
    assert low == pytest.approx(0.68 * 170) and high == pytest.approx(0.83 * 170)
    assert resolve_power_bounds(PowerRule(zone=4, high_w=320), athlete) == (
        pytest.approx(270),
        320,
    )
    # Zone 5 of HR has no ceiling.
    assert resolve_hr_bounds(HeartRateRule(zone=5), athlete)[1] is None


def test_delivery_preferences_per_rule_override_the_athletes() -> None:
    config = AlertConfig.model_validate(
        {"delivery": {"sound": False}, "rules": {"w_prime": {"vibration": False}}}
    )
    assert config.delivery_for(config.rules.w_prime) == (False, False)
    assert config.delivery_for(config.rules.heart_rate) == (False, True)

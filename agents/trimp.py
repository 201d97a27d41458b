"""Banister TRIMP and the hrTSS-like score derived from it.

TRIMP = minutes * x * 0.64 * e^(k * x), x the heart-rate-reserve fraction and
k = 1.92 for men, 1.67 for women (GoldenCheetah's TRIMPPoints.cpp). Live, it is a sum
over samples, each worth ``dt/60`` minutes. hrTSS scales TRIMP so that an hour at LTHR
scores 100.
"""

from __future__ import annotations

import math
from typing import Literal

Sex = Literal["male", "female"]

K_MALE = 1.92
K_FEMALE = 1.67


def _k(sex: Sex) -> float:
    return K_FEMALE if sex == "female" else K_MALE


def hr_reserve_fraction(hr: float, hr_rest: float, hr_max: float) -> float:
    """(HR - rest) / (max - rest), clamped to 0..1 so a glitch cannot explode e^(kx)."""
    x = (hr - hr_rest) / (hr_max - hr_rest)
    return min(1.0, max(0.0, x))


def trimp_increment(hr: float, dt_s: float, hr_rest: float, hr_max: float, sex: Sex) -> float:
    """The TRIMP of ``dt_s`` seconds at heart rate ``hr``."""
    x = hr_reserve_fraction(hr, hr_rest, hr_max)
    return dt_s / 60.0 * x * 0.64 * math.exp(_k(sex) * x)


def hrtss(trimp: float, lthr: float, hr_rest: float, hr_max: float, sex: Sex) -> float:
    """100 * TRIMP / (TRIMP of one hour at LTHR)."""
    hour_at_lthr = trimp_increment(lthr, 3600.0, hr_rest, hr_max, sex)
    return 100.0 * trimp / hour_at_lthr if hour_at_lthr > 0 else 0.0

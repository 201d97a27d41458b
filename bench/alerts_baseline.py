"""The pre-issue-14 engine on the new scenario set, for the baseline figures.

``python -m bench.alerts_baseline OLD_CHECKOUT [NOISE_SEEDS]`` loads
``agents/alert_config.py``, ``alert_signals.py`` and ``alert_rules.py`` of an older
checkout (``git worktree add /tmp/old 05664e7``) under their old module names and
replays the scenarios without a plan (that engine cannot follow one).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from agents.alerts.evaluation import scenario_samples
from agents.alerts.scenarios import ATHLETE, SCENARIOS
from agents.alerts.scoring import Scoreboard


def _load(root: Path, name: str, rel: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, root / rel)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    root = Path(sys.argv[1])
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    oc: Any = _load(root, "agents.alert_config", "agents/alert_config.py")
    _load(root, "agents.alert_signals", "agents/alert_signals.py")
    old: Any = _load(root, "agents.alert_rules", "agents/alert_rules.py")
    board = Scoreboard()
    skipped = 0
    for seed in range(seeds):
        for sc in SCENARIOS:
            if sc.plan is not None:
                skipped += 1
                continue
            r = sc.config.rules
            rules = oc.Rules(
                heart_rate=oc.HeartRateRule(
                    low_bpm=r.heart_rate.low_bpm, high_bpm=r.heart_rate.high_bpm
                ),
                power=oc.PowerRule(low_w=r.power.low_w, high_w=r.power.high_w),
                pace=oc.PaceRule(
                    target_s_per_km=r.pace.target_s_per_km,
                    tolerance_s_per_km=r.pace.tolerance_s_per_km,
                ),
                power_fade=oc.PowerFadeRule(enabled=r.power_fade.enabled),
                w_prime=oc.WPrimeRule(enabled=r.w_prime.enabled),
            )
            engine = old.AlertEngine(oc.AlertConfig(rules=rules), ATHLETE)
            samples = [
                old.AlertSample(s.t_s, s.heart_rate_bpm, s.power_w, s.speed_m_s)
                for s in scenario_samples(sc, seed)
            ]
            board.add_session(sc.id, sc.kind, engine.run(sc.id, samples), sc.expect)
    print(board.format(f"old engine, scenarios without a plan ({skipped} plan replays skipped)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Live alerts: the rules a coach trusts, their configuration, and how they are measured.

One concept per module, lower layers first (each imports only those above it):

- :mod:`agents.alerts.config`: ``AlertConfig``, the per-athlete settings (JSONB, REST);
- :mod:`agents.alerts.plan`: a structured workout (intervals with targets) and its import
  from JSON, ZWO and ERG/MRC;
- :mod:`agents.alerts.signals`: the signals the rules watch, computed per sample;
- :mod:`agents.alerts.rules`: ``AlertEngine``, the per-session rule state machines;
- :mod:`agents.alerts.labels`: offline labels from a session's definitions (regression);
- :mod:`agents.alerts.scenarios`: plain-language scenarios with a coach's expectations;
- :mod:`agents.alerts.simulate`: scenario scripts turned into device samples;
- :mod:`agents.alerts.evaluation`: ``livecoach alerts-eval``.
"""

"""The session lifecycle: created -> running <-> paused -> stopped.

A pure state machine; :class:`agents.session_metrics.SessionMetrics` drives it and
keeps paused time out of its averages. An event that makes no sense in the current
state (resume a running session, pause a stopped one) raises
:class:`LifecycleError` saying what the state was, so the agent can reject the
control event with that reason instead of corrupting the session.
"""

from __future__ import annotations

from typing import Literal

from pipeline.errors import LivecoachError

State = Literal["created", "running", "paused", "stopped"]
Action = Literal["start", "pause", "resume", "stop"]

#: Allowed transitions: (state, action) -> new state.
TRANSITIONS: dict[tuple[State, Action], State] = {
    ("created", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "stop"): "stopped",
    ("paused", "stop"): "stopped",
    # Stopping a session that never started is allowed: it ends with no samples.
    ("created", "stop"): "stopped",
}


class LifecycleError(LivecoachError):
    """A lifecycle event that is not allowed in the session's current state."""

    def __init__(self, state: State, action: str) -> None:
        self.state = state
        self.action = action
        allowed = sorted(a for (s, a) in TRANSITIONS if s == state)
        super().__init__(
            f"cannot {action} a {state} session"
            + (f" (allowed: {', '.join(allowed)})" if allowed else " (it is final)")
        )


def transition(state: State, action: str) -> State:
    """The state after ``action``, or LifecycleError."""
    new = TRANSITIONS.get((state, action))  # type: ignore[arg-type]
    if new is None:
        raise LifecycleError(state, action)
    return new

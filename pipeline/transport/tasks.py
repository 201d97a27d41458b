"""Stopping background tasks for sure."""

from __future__ import annotations

import asyncio
from typing import Any

#: How long to wait for a cancelled task before cancelling it again.
RECANCEL_AFTER_S = 1.0


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling again as needed.

    One ``cancel()`` is not always enough: code that swallows a CancelledError (Python
    3.11's ``asyncio.wait_for`` does when what it waits for completes in the same
    turn) leaves the task running, and a stop that awaits it once hangs for good.
    What the tasks raised is not the stopper's concern and is dropped.
    """
    pending = {task for task in tasks if task is not None and not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
    for ended in tasks:
        if ended is not None and not ended.cancelled():
            ended.exception()  # retrieved, so asyncio does not log it as never retrieved

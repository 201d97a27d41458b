"""Readable UUIDs for tests: ``uid(7)`` is ``00000000-0000-4000-8000-000000000007``.

Ids are UUIDs everywhere (the host's users, sessions, messages, alerts); tests that
need a few fixed ones number them, and say which by the number.
"""

from __future__ import annotations

import uuid


def uid(n: int) -> uuid.UUID:
    """The test id number ``n`` (a version-4-shaped UUID)."""
    return uuid.UUID(f"00000000-0000-4000-8000-{n:012x}")


def sid(n: int) -> str:
    """``uid(n)`` as text, as JSON and the samples topic carry it."""
    return str(uid(n))

"""The base of the web edge's own errors (the tree is drawn in ``pipeline.errors``).

Every error a handler raises on purpose derives from :class:`EdgeError`; each is
defined beside the code that raises it (``web.auth.AuthError``, ``web.access.Forbidden``
...) and translated to an HTTP problem and a WebSocket answer by one table,
``web.problems.RULES``, matched with ``isinstance``.
"""

from __future__ import annotations

from pipeline.errors import LivecoachError


class EdgeError(LivecoachError):
    """Base of the errors the web edge raises on purpose (a client's, answered 4xx)."""


__all__ = ["EdgeError"]

"""The ids livecoach shares with the host product: UUIDs for users, sessions, messages
and alerts, read from text in one place.

:func:`parse_uuid` is what every edge of the system (a token's ``sub``, a path segment,
a query parameter, a CLI argument, a channel name) uses, so that junk gets the same
message everywhere, naming what was expected and what came instead.
"""

from __future__ import annotations

import uuid

#: Longest text a UUID can be written as (``urn:uuid:`` + 36); longer is refused unread.
_MAX_UUID_TEXT = 45


def parse_uuid(text: object, what: str = "an id") -> uuid.UUID:
    """A UUID from text (any form :class:`uuid.UUID` reads); ValueError naming ``what``."""
    if isinstance(text, uuid.UUID):
        return text
    if isinstance(text, str) and len(text) <= _MAX_UUID_TEXT:
        try:
            return uuid.UUID(text.strip())
        except ValueError:
            pass
    raise ValueError(f"expected {what} (a UUID), got {str(text)[:60]!r}")

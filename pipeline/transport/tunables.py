"""The transport's tunables: read once, when Faust creates the transport.

Each has a default, may be set in the environment (``LIVECOACH_`` + its name in capitals,
for example ``LIVECOACH_COMPACTION_INTERVAL_S=10``) and, above that, in the broker URL's
query (``redis://h:6379/0?compaction_interval_s=10``), where Faust apps that are not
livecoach's configure their transport. Both are read when the transport is created, not
when a module is imported, and a bad value is a :class:`TunableError` naming it.

The transport is a library of its own (it imports nothing else of livecoach), so these
are not fields of :class:`pipeline.settings.Settings`; ``docs/transport.md`` lists them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline.transport.errors import TunableError

ENV_PREFIX = "LIVECOACH_"


@dataclass(frozen=True)
class Tunables:
    #: Seconds between changelog compaction passes (see :mod:`.compaction`).
    compaction_interval_s: float = 5.0
    #: Seconds between passes applying age retention (on the group leader).
    retention_interval_s: float = 30.0
    #: Seconds a tombstone stays in a compacted changelog (see :mod:`.compaction`).
    delete_retention_s: float = 24 * 3600.0
    #: Seconds an idempotent producer's state outlives its last append (see
    #: :mod:`.idempotence`).
    producer_state_ttl_s: float = 3600.0
    #: Event-loop turns the producer's sender yields before writing a batch.
    producer_linger_turns: int = 4
    #: Seconds after which a consumer group that was not seen no longer holds back
    #: retention (see :mod:`.topics`).
    group_expiry_s: float = 7 * 24 * 3600.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def load(cls, url: str, environ: Mapping[str, str] | None = None) -> tuple[Tunables, str]:
        """The tunables from ``environ`` (the process's by default) and ``url``'s query,
        and the URL without them (for the Redis client, which refuses unknown options)."""
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        for name in cls.names():
            variable = ENV_PREFIX + name.upper()
            if variable in environ:
                values[name], sources[name] = environ[variable], variable
        parts = urlsplit(url)
        kept = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in cls.names():
                values[key], sources[key] = value, f"the broker URL's {key}"
            else:
                kept.append((key, value))
        parsed: dict[str, Any] = {
            name: _parse(cls, name, text, sources[name]) for name, text in values.items()
        }
        return cls(**parsed), urlunsplit(parts._replace(query=urlencode(kept)))


def _parse(cls: type[Tunables], name: str, text: str, source: str) -> float | int:
    integral = next(f for f in dataclasses.fields(cls) if f.name == name).type == "int"
    try:
        value: float | int = int(text) if integral else float(text)
    except ValueError:
        kind = "a whole number" if integral else "a number"
        raise TunableError(source, f"must be {kind}, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise TunableError(source, f"must be positive and finite, not {text!r}")
    return value


def without_tunables(url: str) -> str:
    """``url`` without the tunables in its query, for a Redis client (which refuses them).

    Every client made from the broker URL goes through this: the edge's and the CLI's as
    well as the transport's.
    """
    parts = urlsplit(url)
    if not parts.query:
        return url
    names = Tunables.names()
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    return urlunsplit(parts._replace(query=urlencode(kept)))

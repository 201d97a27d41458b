"""The exception tree of livecoach.

    LivecoachError
    ├── ConfigError        a setting is missing or wrong; names the environment variable
    ├── ServiceError       Redis or PostgreSQL could not be reached or failed
    │   └── EmbeddedServerError   an embedded redis-server / postgres failed to start
    ├── DataRejected       PostgreSQL refused a request's data (constraint, type, length)
    └── MigrationError     a schema migration failed

Errors from redis-py and psycopg are translated into these once, where they are caught,
so that the CLI can print one actionable line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class LivecoachError(Exception):
    """Base of every error livecoach raises on purpose."""


class ConfigError(LivecoachError):
    """A configuration value is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class ServiceError(LivecoachError):
    """A backing service (Redis, PostgreSQL) is unreachable or failing."""


class DataRejected(LivecoachError):
    """PostgreSQL refused the data of a request: a constraint (unique, foreign key,
    check, not null) or a value (type, range, length, encoding). The caller's fault,
    not the server's: a 4xx (``web.problems`` has the table), never a 503.

    ``cause`` is psycopg's error (its ``sqlstate`` and ``diag`` say what and where);
    ``fields`` are the request fields the statement wrote, with their values, for the
    errors in which PostgreSQL names no column.
    """

    def __init__(self, cause: Exception, fields: Mapping[str, Any] | None = None) -> None:
        self.cause = cause
        self.fields: Mapping[str, Any] = fields or {}
        super().__init__(str(cause).strip())


class EmbeddedServerError(ServiceError):
    """An embedded server could not be started."""


class MigrationError(LivecoachError):
    """A schema migration could not be applied."""

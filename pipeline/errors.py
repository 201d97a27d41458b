"""The exception tree of livecoach.

    LivecoachError
    ├── ConfigError        a setting is missing or wrong; names the environment variable
    ├── ServiceError       Redis or PostgreSQL could not be reached or refused a request
    │   └── EmbeddedServerError   an embedded redis-server / postgres failed to start
    └── MigrationError     a schema migration failed

Errors from redis-py and psycopg are translated into these once, where they are caught,
so that the CLI can print one actionable line instead of a traceback.
"""

from __future__ import annotations


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


class EmbeddedServerError(ServiceError):
    """An embedded server could not be started."""


class MigrationError(LivecoachError):
    """A schema migration could not be applied."""

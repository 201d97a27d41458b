"""The exception tree of livecoach (as httpx's ``_exceptions.py`` draws its own).

    Exception
    ├── LivecoachError                  pipeline.errors: every error raised on purpose
    │   ├── ConfigError                 a setting is missing or wrong; names the variable
    │   ├── ServiceError                Redis, PostgreSQL or the issuer failed  -> 503
    │   │   │                           (``backend``: the /metrics label)
    │   │   ├── EmbeddedServerError     an embedded redis-server / postgres failed to start
    │   │   ├── web.store.StoreError    PostgreSQL failed a query of the edge
    │   │   ├── web.jwks.JwksUnavailable  the issuer's JWKS could not be fetched
    │   │   └── web.producer.ProduceError Redis did not take the records
    │   ├── DataRejected                PostgreSQL refused a request's data       -> 409/422
    │   ├── MigrationError              a schema migration failed
    │   ├── RecordingError              pipeline.recordings: a recording cannot be read
    │   ├── agents.analyze.AnalysisError, agents.lifecycle.LifecycleError
    │   └── web.errors.EdgeError        the web edge's own (a client's fault)
    │       ├── web.auth.AuthError      bad or expired token        -> 401 / close 4401
    │       ├── web.directory.UnknownUser  not known, no provisioning -> 403 / close 4403
    │       ├── web.access.Forbidden    not yours                   -> 403 / close 4403
    │       ├── web.access.NotFound     no such resource            -> 404 / error not_found
    │       ├── web.actions.Conflict    wrong session state         -> 409 / error conflict
    │       ├── web.problems.BodyTimeout  body too slow              -> 408, connection closed
    │       └── web.problems.Problem    a handler's explicit HTTP problem
    ├── ValueError
    │   ├── pipeline.users.LinkRefused  a coach link that cannot be  -> 422 / error invalid
    │   └── agents.alerts.plan.PlanError  a session plan that cannot be followed
    └── pipeline.transport.errors.TransportError   the Faust transport (a library of its
        ├── BrokerUnavailable                       own: it imports nothing of livecoach)
        ├── TopicError
        ├── CommitRefused
        └── WriteFenced

Errors from redis-py and psycopg are translated into these once, where they are caught,
so that the CLI can print one actionable line instead of a traceback. The web edge
answers them from one table, ``web.problems.RULES`` (exception -> HTTP status and
title, WebSocket ``error`` code and close code), matched with ``isinstance``; a
redis-py ``RedisError`` reaching it is a 503 as a ``ServiceError`` is.
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

    #: Which service (the ``backend`` label of ``livecoach_backend_errors``).
    backend: str = "service"


class NotDurable(ServiceError):
    """Redis took records, but no replica confirmed them within the durable-ack time
    (``LIVECOACH_DURABLE_ACK_MS``): they are not acknowledged (a 503; the client
    retries). The message says how many replicas confirmed within how long."""

    backend = "redis"


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

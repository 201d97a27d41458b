"""The exception tree of the transport.

    TransportError
    ├── BrokerUnavailable   Redis could not be reached within the start-up deadline
    ├── TopicError          a topic is missing or was declared with another partition count
    ├── CommitRefused       a commit was fenced off (lease lapsed, newer generation)
    ├── NotReplicated       an append no replica confirmed in time (``WAIT``)
    ├── WriteFenced         a write was fenced off (lease lapsed, newer generation)
    └── TunableError        a tunable (environment or broker URL) has a bad value

:data:`TRANSIENT_ERRORS` are the errors after which the transport retries: the server
is unreachable or restarting, or a Redis Cluster is failing over or moving a slot (the
cluster client retried and redirected as far as its own retries went).
"""

from __future__ import annotations

from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class TransportError(Exception):
    """Base of every error the transport raises on purpose."""


class BrokerUnavailable(TransportError):
    """Redis could not be reached."""


class TopicError(TransportError):
    """A topic is missing or was declared with another partition count."""


class TunableError(TransportError, ValueError):
    """A tunable's value is not a positive number; ``source`` names where it was set."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class NotReplicated(TransportError):
    """Appended on the primary, but fewer replicas than asked confirmed it in time.

    The records may still be lost in a failover, so the caller must not acknowledge
    them; they may also survive, so a retry may store them twice (at least once).
    """


class CommitRefused(TransportError):
    """A commit was fenced off: our lease lapsed or a newer generation was published."""


#: Errors after which we retry: the server is unreachable or restarting; on a cluster,
#: a slot has no primary yet (failover), is being moved (``TRYAGAIN``) or moved on
#: (``MOVED``/``ASK``, an ``AskError``) beyond the client's own redirections, or the
#: client's redirections ran out while a slot was migrating (``ClusterError``: "TTL
#: exhausted", seen from a cluster pipeline's XREAD during a resharding).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    ClusterDownError,
    TryAgainError,
    AskError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
    ClusterError,
)


class WriteFenced(TransportError):
    """A write was refused: its worker's lease lapsed, or its generation ended.

    The events that made it belong to a generation whose commits are refused too, so
    they are processed again by the partition's owner: nothing is lost.
    """

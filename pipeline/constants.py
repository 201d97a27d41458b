"""Every stream name, Redis key prefix, topic and consumer group livecoach uses.

Keeping them in one place means a glance here tells an operator what lives in Redis,
and no module invents a key of its own.
"""

from __future__ import annotations

from uuid import UUID

#: Prefix of every key livecoach writes to Redis (the transport's, see pipeline.transport.keys).
from pipeline.transport.keys import KEY_PREFIX as KEY_PREFIX

#: Faust application id (also the consumer group of the worker).
APP_ID = "livecoach"

#: Topic of raw samples from devices, keyed by session id.
SAMPLES_TOPIC = "samples"
#: Topic of everything dashboards see (metrics_update, alert, message, session_event).
LIVE_TOPIC = "live"
#: Topic of what the store app persists besides samples: alerts and session summaries.
#: (A topic of its own, so that the store app does not read every metrics update.)
STORE_TOPIC = "store"
#: Hash of how many records the store app could not store and skipped, by kind
#: (``samples``, ``alert``, ``summary``); each is also logged with its reason.
STORE_REJECTED_KEY = f"{KEY_PREFIX}:store:rejected"

#: Pub/sub channel of typing and presence (no offsets, never replayed), shared by edges.
EPHEMERAL_CHANNEL = f"{KEY_PREFIX}:ephemeral"
#: Sorted set of who watches an athlete (``user:role`` -> expiry), per athlete.
PRESENCE_KEY = KEY_PREFIX + ":presence:{athlete_id}"
#: The stored answer of a request with an ``Idempotency-Key``, per user and scope (a
#: session id for sample uploads, ``start`` for session starts).
IDEMPOTENCY_KEY = KEY_PREFIX + ":idem:{user_id}:{scope}:{key}"
#: A replay job started over REST (JSON: request, status, result), kept for a while.
REPLAY_JOB_KEY = KEY_PREFIX + ":replay:job:{job_id}"
#: Set of a user's queued and running replay jobs (the per-user bound).
REPLAY_ACTIVE_KEY = KEY_PREFIX + ":replay:active:{user_id}"

#: Topic of what the leaderboard agent reads, keyed by group id: each group member's
#: standing inputs (from the live agent) and the group's lifecycle (from the edge).
GROUPS_TOPIC = "groups"
#: The newest full leaderboard of a group (JSON of a ``leaderboard`` event with
#: ``full: true``), written by the leaderboard agent with each emission; what an edge
#: sends a socket that subscribes or resumes. Hash-tagged by group for Redis Cluster.
GROUP_BOARD_KEY = KEY_PREFIX + ":group:{{{group_id}}}:board"

#: Pub/sub channel names of the original spec, and the group channel (issue 20).
USER_CHANNEL = "live:user:{user_id}"
SESSION_CHANNEL = "live:session:{session_id}"
GROUP_CHANNEL = "live:group:{group_id}"


def user_channel(user_id: UUID | str) -> str:
    return USER_CHANNEL.format(user_id=user_id)


def session_channel(session_id: UUID | str) -> str:
    return SESSION_CHANNEL.format(session_id=session_id)


def group_channel(group_id: UUID | str) -> str:
    return GROUP_CHANNEL.format(group_id=group_id)


def group_board_key(group_id: UUID | str) -> str:
    return GROUP_BOARD_KEY.format(group_id=group_id)

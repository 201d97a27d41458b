"""Every Redis key the transport writes, in one place.

All keys start with :data:`KEY_PREFIX`. Keys of one topic partition share the hash
tag ``{<topic>:<partition>}`` and keys of one consumer group share ``{<group>}``, so
a script only ever touches keys of one Redis Cluster slot.
"""

from __future__ import annotations

#: Prefix of every key the transport writes.
KEY_PREFIX = "livecoach"

#: Hash of topic name -> partition count.
TOPICS_KEY = f"{KEY_PREFIX}:topics"
#: Hash of topic name -> JSON retention settings.
RETENTION_KEY = f"{KEY_PREFIX}:retention"
#: Set of topics declared as compacted (Faust's changelogs).
COMPACTED_KEY = f"{KEY_PREFIX}:compacted"
#: Hash of topic name -> random id of the topic's current life (new when re-created).
INCARNATIONS_KEY = f"{KEY_PREFIX}:incarnations"
#: Sorted set of consumer group -> when last seen (ms): whose commits bound retention.
GROUPS_KEY = f"{KEY_PREFIX}:groups"


def stream_key(topic: str, partition: int) -> str:
    """The stream of one topic partition, e.g. ``livecoach:topic:{samples:3}``."""
    return f"{KEY_PREFIX}:topic:{{{topic}:{partition}}}"


def index_key(topic: str, partition: int) -> str:
    """The compaction index of a partition: key -> latest entry id, and the cursor."""
    return f"{KEY_PREFIX}:compact:{{{topic}:{partition}}}"


def tombstones_key(topic: str, partition: int) -> str:
    """Keys of a changelog partition whose latest entry is a tombstone -> when seen (ms)."""
    return f"{KEY_PREFIX}:tombstones:{{{topic}:{partition}}}"


def group_key(group: str, name: str) -> str:
    """One of the keys of a consumer group, e.g. ``livecoach:group:{app}:offsets``."""
    return f"{KEY_PREFIX}:group:{{{group}}}:{name}"


def tp_field(topic: str, partition: int) -> str:
    """The field of a topic partition in a group's ``offsets`` hash."""
    return f"{topic}:{partition}"


def producer_key(topic: str, partition: int, producer_id: str) -> str:
    """One producer's batch sequences on a partition (idempotent appends; expires)."""
    return f"{KEY_PREFIX}:producer:{{{topic}:{partition}}}:{producer_id}"


def epochs_key(topic: str, partition: int) -> str:
    """List of ``<run_id>:<first offset>``, newest first: the offset each server run
    (one start of the Redis process) began appending at, to detect reused offsets."""
    return f"{KEY_PREFIX}:epochs:{{{topic}:{partition}}}"


def fence_key(topic: str, partition: int) -> str:
    """The generation allowed to append to a changelog partition (fenced writes)."""
    return f"{KEY_PREFIX}:fence:{{{topic}:{partition}}}"

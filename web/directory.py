"""From a verified token to a :class:`~web.auth.Principal`: the user's role comes from
``users.role``, and a user seen for the first time is provisioned.

Provisioning (``LIVECOACH_PROVISION_USERS``, on by default) creates the user with the
role of the token's role claim when that is ``athlete`` or ``coach`` (a list of roles
counts as ``coach`` if it holds ``coach``), ``athlete`` otherwise, and the name claim as
name; a token can never make an admin, and never changes an existing user. With
provisioning off an unknown user gets :class:`UnknownUser` (403).

Roles are cached per edge: a role changed in PostgreSQL reaches every edge through the
access notifications (:mod:`web.revocation` calls :meth:`forget`), and ``ttl_s`` (300 s)
bounds how long a change missed while an edge's listener was reconnecting could last
(it re-checks open sockets when it reconnects). Without the cache every request would
cost a query: 1,000 devices posting at 1 Hz are 1,000 users.
"""

from __future__ import annotations

from typing import Any

from pipeline.users import Role, UserId
from web.access import MISSING, TTLCache
from web.auth import Principal, TokenIdentity
from web.errors import EdgeError
from web.store import Store

#: Longest name taken from a token (``users.name`` is VARCHAR(255)).
_NAME_MAX = 255


class UnknownUser(EdgeError):
    """A valid token for a user livecoach does not know, with provisioning off (403)."""


def provisioned_role(hint: Any) -> Role:
    """The role a new user gets from the token's role claim (never ``admin``)."""
    if hint == "coach" or (isinstance(hint, list | tuple) and "coach" in hint):
        return "coach"
    return "athlete"


def provisioned_name(hint: Any) -> str:
    return hint.replace("\x00", "")[:_NAME_MAX] if isinstance(hint, str) else ""


class Directory:
    def __init__(self, store: Store, *, provision: bool, ttl_s: float = 300.0) -> None:
        self.store = store
        self.provision = provision
        self._roles = TTLCache(ttl_s)
        self.provisioned = 0

    def known(self, identity: TokenIdentity) -> Principal | None:
        """The principal of a user whose role is cached, without a coroutine (every
        request asks); None: :meth:`principal` loads it."""
        role: Role = self._roles.get(identity.user_id)
        if role is MISSING:
            return None
        return Principal(user_id=identity.user_id, role=role, expires_at=identity.expires_at)

    async def principal(self, identity: TokenIdentity) -> Principal:
        role: Role = await self._roles.get_or_load(
            identity.user_id, lambda: self._load_role(identity)
        )
        return Principal(user_id=identity.user_id, role=role, expires_at=identity.expires_at)

    async def _load_role(self, identity: TokenIdentity) -> Role:
        user = await self.store.get_user(identity.user_id)
        if user is None:
            if not self.provision:
                raise UnknownUser(
                    f"user {identity.user_id} is not known to livecoach"
                    " (provisioning is off; an administrator must add the user)"
                )
            user = await self.store.provision_user(
                identity.user_id,
                role=provisioned_role(identity.role_hint),
                name=provisioned_name(identity.name_hint),
            )
            self.provisioned += 1
        role: Role = user["role"]
        return role

    def forget(self, user_id: UserId | None = None) -> None:
        """Drop the cached role of one user (None: of everyone)."""
        if user_id is None:
            self._roles.clear()
        else:
            self._roles.drop(user_id)

"""Every REST endpoint, with junk in every id and in the body: never a 5xx while the
database is healthy, and every refusal a problem document (a real edge over a loopback
socket, real Redis and PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.web.conftest import ATHLETE, COACH
from web.admin import ADMIN_ENDPOINTS
from web.rest import ENDPOINTS, PREFIX

pytestmark = pytest.mark.integration

#: Path ids: integers (the old keys), junk, too long, a NUL, upper case, and a UUID
#: that names nothing.
JUNK_IDS = ["1", "0", "-1", "abc", "x" * 300, "%00", str(uuid.uuid4()).upper(),
            str(uuid.uuid4())]  # fmt: skip
#: Bodies: none, not JSON, the wrong JSON types, integer ids, junk values, a NUL.
JUNK_BODIES: list[bytes | None] = [
    None, b"", b"{", b"[]", b'"x"', b"null", b"{}", b'{"session_id": 1}',
    b'{"session_id": "nope", "text": "hi"}', b'{"athlete_id": 7, "training_session_id": 3}',
    b'{"t": "noon", "heart_rate": 1e308}', b'{"metrics": {"pace": -1}, "timestamp": "x"}',
    b'{"up_to_id": 5}', b'{"name": "a\\u0000b", "id": "' + str(uuid.uuid4()).encode() + b'"}',
    b'{"coach_id": "' + str(COACH).encode() + b'", "athlete_id": 12}',
]  # fmt: skip


def _paths(template: str) -> list[str]:
    names = re.findall(r"{(\w+)}", template)
    if not names:
        return [template]
    return [re.sub(r"{\w+}", junk, template) for junk in JUNK_IDS]


async def test_no_junk_request_gets_a_5xx(edge: Any, database_url: str) -> None:
    await edge.start_session()
    seen: dict[int, int] = {}
    for ep in (*ENDPOINTS, *ADMIN_ENDPOINTS):
        for path in _paths(ep.path):
            for body in JUNK_BODIES if ep.method in ("POST", "PUT") else [None]:
                for user, role in ((ATHLETE, "athlete"), (COACH, "coach")):
                    headers = {**edge.headers(user, role), "Content-Type": "application/json"}
                    async with edge.session.request(
                        ep.method, edge.url(PREFIX + path), data=body, headers=headers
                    ) as resp:
                        text = await resp.text()
                        seen[resp.status] = seen.get(resp.status, 0) + 1
                        where = f"{ep.method} {path} {body!r} as {role}"
                        assert resp.status < 500, f"{where}: {resp.status} {text[:300]}"
                        if resp.status >= 400:
                            assert resp.content_type == "application/problem+json", where
    # The sweep reached the handlers: refusals of several kinds, not one blanket answer.
    assert {400, 403, 404, 422} <= set(seen), seen

"""The user directory's SQL (pipeline.users) against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from pipeline import users
from tests.ids import uid

pytestmark = pytest.mark.integration


async def _waiting_on_a_lock(database_url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watch:
        for _ in range(500):
            cur = await watch.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            )
            if (await cur.fetchone()) == ("Lock",):
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the second provisioning never waited for the first")


async def test_two_first_contacts_at_once_make_one_user(database_url: str) -> None:
    first = await psycopg.AsyncConnection.connect(database_url)
    second = await psycopg.AsyncConnection.connect(database_url)
    async with first, second:
        one = first.cursor(row_factory=dict_row)
        two = second.cursor(row_factory=dict_row)
        mine = await users.provision_user(one, uid(900), role="coach", name="First")  # uncommitted
        racing = asyncio.create_task(
            users.provision_user(two, uid(900), role="athlete", name="Second")
        )
        await _waiting_on_a_lock(database_url, second.info.backend_pid)
        await first.commit()
        theirs = await racing  # no unique violation: the winner's row
        await second.commit()
    assert theirs == mine
    assert (mine["role"], mine["name"]) == ("coach", "First")


def test_parse_user_id_accepts_uuids_and_refuses_the_rest() -> None:
    text = "7b0c6a0e-36f4-4d3e-9a55-0c1f3c5e2d11"
    expected = uuid.UUID(text)
    for form in (text, text.upper(), text.replace("-", ""), f" {text} ", f"urn:uuid:{text}"):
        assert users.parse_user_id(form) == expected
    assert users.parse_user_id(expected) is expected
    for bad in ("42", "0", "abc", "", text[:-1], text + "0", None, True, 7, 1.5, "x" * 10_000):
        with pytest.raises(ValueError, match="expected a user id \\(a UUID\\), got"):
            users.parse_user_id(bad)

"""``livecoach users add|link|unlink|list`` against a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from tests.test_cli import _run

pytestmark = pytest.mark.integration


def test_users_add_link_list_unlink(database_url: str) -> None:
    db = {"LIVECOACH_DATABASE_URL": database_url}
    for user_id, role, name in (("11", "coach", "Cora"), ("12", "athlete", "Abe")):
        done = _run("users", "add", "--id", user_id, "--role", role, "--name", name, **db)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"added user {user_id} ({role})"
    done = _run("users", "link", "11", "12", **db)
    assert (done.returncode, done.stdout.strip()) == (0, "coach 11 linked to athlete 12")
    done = _run("users", "link", "11", "12", **db)
    assert done.stdout.strip() == "coach 11 already linked to athlete 12"
    done = _run("users", "list", **db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "11\tcoach\tCora\tlinked: 12",
        "12\tathlete\tAbe\tlinked: 11",
    ]
    done = _run("users", "unlink", "11", "12", **db)
    assert (done.returncode, done.stdout.strip()) == (0, "coach 11 unlinked from athlete 12")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM coach_athletes").fetchone() == (0,)
    done = _run("users", "unlink", "11", "12", **db)
    assert done.returncode == 1
    assert done.stderr.strip() == "coach 11 is not linked to athlete 12"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("link", "404", "12"), 1,
         "livecoach: error: coach_id: refers to something that does not exist"),
        (("link", "12", "11"), 1,
         "livecoach: error: coach_id: user 12 has role 'athlete', not 'coach'"),
        (("add", "--id", "13", "--role", "coach", "--name", "x" * 300), 1,
         "livecoach: error: name: is too long"),
        (("add", "--id", "abc", "--role", "coach"), 2, "expected a user id"),
    ],
)  # fmt: skip
def test_users_errors_are_one_line_naming_the_field(
    database_url: str, args: tuple[str, ...], status: int, message: str
) -> None:
    db = {"LIVECOACH_DATABASE_URL": database_url}
    for user_id, role in (("11", "coach"), ("12", "athlete")):
        assert _run("users", "add", "--id", user_id, "--role", role, **db).returncode == 0
    done = _run("users", *args, **db)
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr

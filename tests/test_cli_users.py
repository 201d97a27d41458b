"""``livecoach users add|link|unlink|list`` against a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from tests.ids import sid
from tests.test_cli import _run

C, A = sid(11), sid(12)  # a coach and an athlete

pytestmark = pytest.mark.integration


def test_users_add_link_list_unlink(database_url: str) -> None:
    db = {"LIVECOACH_DATABASE_URL": database_url}
    for user_id, role, name in ((C, "coach", "Cora"), (A, "athlete", "Abe")):
        done = _run("users", "add", "--id", user_id, "--role", role, "--name", name, **db)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"added user {user_id} ({role})"
    done = _run("users", "link", C, A, **db)
    assert (done.returncode, done.stdout.strip()) == (0, f"coach {C} linked to athlete {A}")
    done = _run("users", "link", C, A, **db)
    assert done.stdout.strip() == f"coach {C} already linked to athlete {A}"
    done = _run("users", "list", **db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{C}\tcoach\tCora\tlinked: {A}",
        f"{A}\tathlete\tAbe\tlinked: {C}",
    ]
    done = _run("users", "unlink", C, A, **db)
    assert (done.returncode, done.stdout.strip()) == (0, f"coach {C} unlinked from athlete {A}")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM coach_athletes").fetchone() == (0,)
    done = _run("users", "unlink", C, A, **db)
    assert done.returncode == 1
    assert done.stderr.strip() == f"coach {C} is not linked to athlete {A}"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("link", sid(404), A), 1,
         "livecoach: error: coach_id: refers to something that does not exist"),
        (("link", A, C), 1,
         f"livecoach: error: coach_id: user {A} has role 'athlete', not 'coach'"),
        (("add", "--id", sid(13), "--role", "coach", "--name", "x" * 300), 1,
         "livecoach: error: name: is too long"),
        (("add", "--id", "abc", "--role", "coach"), 2, "expected a user id"),
    ],
)  # fmt: skip
def test_users_errors_are_one_line_naming_the_field(
    database_url: str, args: tuple[str, ...], status: int, message: str
) -> None:
    db = {"LIVECOACH_DATABASE_URL": database_url}
    for user_id, role in ((C, "coach"), (A, "athlete")):
        assert _run("users", "add", "--id", user_id, "--role", role, **db).returncode == 0
    done = _run("users", *args, **db)
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr

"""Migration 0005 against a real PostgreSQL: a populated database of an older schema
(0001+0002, the bb43412 state; and 0004) is upgraded to UUID keys and the spec's DDL,
and every row and relation survives."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import psycopg
import pytest

from pipeline.migrations import migrate

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 1, 10, 0, 0)  # naive: the old TIMESTAMP columns held UTC


def _populate(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Two athletes, two coaches, links, sessions with metrics, messages and alerts."""
    ids = {}
    for name, role in (("ann", "athlete"), ("bob", "athlete"), ("cat", "coach"), ("dan", "coach")):
        row = conn.execute(
            "INSERT INTO users (email, name, role, created_at) VALUES (%s, %s, %s, %s)"
            " RETURNING id",
            (f"{name}@example.com", name, role, T0),
        ).fetchone()
        assert row is not None
        ids[name] = row[0]
    conn.execute(
        "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s), (%s, %s)",
        (ids["cat"], ids["ann"], ids["dan"], ids["bob"]),
    )
    conn.execute("INSERT INTO athlete_profiles (user_id, hr_max) VALUES (%s, 181)", (ids["ann"],))
    for athlete, coach, sport in (("ann", "cat", "run"), ("bob", "dan", "ride")):
        training = conn.execute(
            "INSERT INTO training_sessions (user_id, sport, started_at) VALUES (%s, %s, %s)"
            " RETURNING id",
            (ids[athlete], sport, T0),
        ).fetchone()
        assert training is not None
        live = conn.execute(
            "INSERT INTO live_training_sessions (user_id, coach_id, training_session_id,"
            " status, started_at, last_update_at, metadata)"
            " VALUES (%s, %s, %s, 'completed', %s, %s, %s) RETURNING id",
            (
                ids[athlete],
                ids[coach],
                training[0],
                T0,
                T0 + dt.timedelta(minutes=30),
                psycopg.types.json.Jsonb({"sport": sport, "who": athlete}),
            ),
        ).fetchone()
        assert live is not None
        for i in range(5):
            conn.execute(
                "INSERT INTO live_metrics (live_session_id, timestamp, metric_type, value)"
                " VALUES (%s, %s, 'heart_rate', %s)",
                (live[0], T0 + dt.timedelta(seconds=i), 140.0 + i + (athlete == "bob") * 10),
            )
        for sender, text in ((athlete, f"hi from {athlete}"), (coach, f"hi from {coach}")):
            conn.execute(
                "INSERT INTO live_messages (live_session_id, sender_id, message_type, content,"
                " created_at) VALUES (%s, %s, 'text', %s, %s)",
                (live[0], ids[sender], text, T0),
            )
        conn.execute(
            "INSERT INTO live_alerts (id, live_session_id, user_id, rule, metric, severity,"
            " message, current_value, threshold, triggered_at, acknowledged_at,"
            " acknowledged_by) VALUES (%s, %s, %s, 'hr_zone', 'heart_rate', 'warning',"
            " %s, 175, 170, %s, %s, %s)",
            (
                f"alert-{athlete}",
                live[0],
                ids[athlete],
                f"hr high for {athlete}",
                T0,
                T0 + dt.timedelta(minutes=1),
                ids[coach],
            ),
        )


def _check_upgraded(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    users = dict(conn.execute("SELECT name, id FROM users").fetchall())
    assert set(users) == {"ann", "bob", "cat", "dan"}
    assert all(isinstance(v, uuid.UUID) for v in users.values())
    assert len(set(users.values())) == 4
    names = {v: k for k, v in users.items()}
    created = conn.execute("SELECT DISTINCT created_at FROM users").fetchall()
    assert created == [(T0.replace(tzinfo=dt.UTC),)]

    links = conn.execute("SELECT coach_id, athlete_id FROM coach_athletes").fetchall()
    assert {(names[c], names[a]) for c, a in links} == {("cat", "ann"), ("dan", "bob")}
    assert conn.execute("SELECT user_id, hr_max FROM athlete_profiles").fetchall() == [
        (users["ann"], 181)
    ]

    sessions = conn.execute(
        "SELECT s.id, s.user_id, s.coach_id, t.user_id, t.sport, s.metadata, s.started_at,"
        " s.last_update_at FROM live_training_sessions s"
        " JOIN training_sessions t ON t.id = s.training_session_id"
    ).fetchall()
    assert len(sessions) == 2
    by_athlete = {}
    for sid, user, coach, training_user, sport, metadata, started, last in sessions:
        assert isinstance(sid, uuid.UUID)
        athlete = names[user]
        by_athlete[athlete] = sid
        assert training_user == user
        assert metadata == {"sport": sport, "who": athlete}
        assert names[coach] == {"ann": "cat", "bob": "dan"}[athlete]
        assert started == T0.replace(tzinfo=dt.UTC)
        assert last - started == dt.timedelta(minutes=30)

    for athlete, sid in by_athlete.items():
        values = [
            v
            for (v,) in conn.execute(
                "SELECT value FROM live_metrics WHERE live_session_id = %s ORDER BY timestamp",
                (sid,),
            )
        ]
        base = 140.0 + (athlete == "bob") * 10
        assert values == [base + i for i in range(5)]
        messages = conn.execute(
            "SELECT sender_id, recipient_id, message, message_type, created_at, seq"
            " FROM live_messages WHERE live_session_id = %s ORDER BY seq",
            (sid,),
        ).fetchall()
        coach = {"ann": "cat", "bob": "dan"}[athlete]
        assert [(names[s], names[r], m, k) for s, r, m, k, _, _ in messages] == [
            (athlete, coach, f"hi from {athlete}", "text"),
            (coach, athlete, f"hi from {coach}", "text"),
        ]
        alerts = conn.execute(
            "SELECT id, user_id, acknowledged_by, message, triggered_at FROM live_alerts"
            " WHERE live_session_id = %s",
            (sid,),
        ).fetchall()
        assert len(alerts) == 1
        alert_id, user, acked_by, message, triggered = alerts[0]
        assert isinstance(alert_id, uuid.UUID)
        assert (names[user], names[acked_by], message) == (athlete, coach, f"hr high for {athlete}")
        assert triggered == T0.replace(tzinfo=dt.UTC)
    assert conn.execute("SELECT count(*) FROM live_metrics").fetchone() == (10,)
    assert conn.execute("SELECT count(*) FROM live_messages").fetchone() == (4,)
    # New rows get keys and times from the defaults, and the keys are enforced.
    conn.execute(
        "INSERT INTO live_metrics (live_session_id, metric_type, value) VALUES (%s, 'power', 1)",
        (by_athlete["ann"],),
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "INSERT INTO live_metrics (live_session_id, metric_type, value) VALUES (%s, 'x', 1)",
            (uuid.uuid4(),),
        )


@pytest.mark.parametrize("start", ["0002_features", "0004_identity"])
def test_a_populated_database_upgrades_without_loss(empty_database_url: str, start: str) -> None:
    migrate(empty_database_url, upto=start)
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("SET TIME ZONE 'America/New_York'")  # the client's zone must not matter
        _populate(conn)
    applied = migrate(empty_database_url)
    assert applied[-1] == "0009_profile_weight"
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("SET TIME ZONE 'Asia/Tokyo'")
        _check_upgraded(conn)


def test_access_notifications_carry_uuids(database_url: str) -> None:
    """0004's triggers, on 0005's keys: an unlink is announced with both UUIDs."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        coach, athlete = uuid.uuid4(), uuid.uuid4()
        conn.execute(
            "INSERT INTO users (id, role) VALUES (%s, 'coach'), (%s, 'athlete')", (coach, athlete)
        )
        conn.execute("LISTEN livecoach_access")
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)", (coach, athlete)
        )
        conn.execute(
            "DELETE FROM coach_athletes WHERE coach_id = %s AND athlete_id = %s", (coach, athlete)
        )
        payloads = [n.payload for n in conn.notifies(timeout=2, stop_after=2)]
    assert [json.loads(p) for p in payloads] == [
        {"op": "link", "coach_id": str(coach), "athlete_id": str(athlete)},
        {"op": "unlink", "coach_id": str(coach), "athlete_id": str(athlete)},
    ]

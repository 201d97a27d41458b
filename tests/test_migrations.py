"""Schema migrations against a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from pipeline.migrations import applied_versions, migrate

pytestmark = pytest.mark.integration

SPEC_COLUMNS = {
    "live_training_sessions": {
        "id",
        "user_id",
        "training_session_id",
        "status",
        "started_at",
        "last_update_at",
        "coach_id",
        "metadata",
    },
    "live_metrics": {"id", "live_session_id", "timestamp", "metric_type", "value", "metadata"},
    "live_messages": {
        "id",
        "live_session_id",
        "sender_id",
        "message_type",
        "content",
        "created_at",
        "read_at",
    },
    "users": {"id"},
    "training_sessions": {"id", "user_id"},
    "coach_athletes": {"coach_id", "athlete_id"},
    "athlete_profiles": {
        "user_id",
        "hr_max",
        "hr_rest",
        "lthr",
        "ftp_w",
        "w_prime_j",
        "threshold_pace_s_per_km",
        "alert_settings",
        "sound",
        "vibration",
    },
    "live_alerts": {
        "id",
        "live_session_id",
        "rule",
        "metric",
        "severity",
        "message",
        "current_value",
        "threshold",
        "acknowledged_at",
        "acknowledged_by",
    },
}

SPEC_INDEXES = {
    "idx_live_metrics_session_time": ("live_metrics", '(live_session_id, "timestamp")'),
    "idx_live_sessions_user": ("live_training_sessions", "(user_id, status)"),
    "idx_live_messages_session": ("live_messages", "(live_session_id, created_at)"),
}

SPEC_FOREIGN_KEYS = {
    ("live_training_sessions", "user_id", "users"),
    ("live_training_sessions", "training_session_id", "training_sessions"),
    ("live_training_sessions", "coach_id", "users"),
    ("live_metrics", "live_session_id", "live_training_sessions"),
    ("live_messages", "live_session_id", "live_training_sessions"),
    ("live_messages", "sender_id", "users"),
    ("coach_athletes", "coach_id", "users"),
    ("coach_athletes", "athlete_id", "users"),
    ("live_alerts", "live_session_id", "live_training_sessions"),
}


def _schema_snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()


def test_migrate_twice_changes_nothing(empty_database_url: str) -> None:
    first = migrate(empty_database_url)
    assert first == ["0001_spec_tables", "0002_features", "0004_identity"]
    snapshot = _schema_snapshot(empty_database_url)
    assert migrate(empty_database_url) == []
    assert _schema_snapshot(empty_database_url) == snapshot
    assert applied_versions(empty_database_url) == first


def test_spec_tables_columns_indexes_and_foreign_keys(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        columns: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ):
            columns.setdefault(table, set()).add(column)
        for table, expected in SPEC_COLUMNS.items():
            assert expected <= columns.get(table, set()), (table, expected - columns[table])

        indexes = {
            name: (table, definition)
            for name, table, definition in conn.execute(
                "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
        for name, (table, cols) in SPEC_INDEXES.items():
            assert name in indexes, name
            assert indexes[name][0] == table
            assert indexes[name][1].endswith(cols), indexes[name][1]

        fks = set(
            conn.execute(
                """
            SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.contype = 'f'
            """
            ).fetchall()
        )
        assert fks >= SPEC_FOREIGN_KEYS, SPEC_FOREIGN_KEYS - fks


def test_a_retried_sample_never_makes_a_second_row(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        user_id = conn.execute("INSERT INTO users (name) VALUES ('a') RETURNING id").fetchone()
        session = conn.execute(
            "INSERT INTO live_training_sessions (user_id) VALUES (%s) RETURNING id", user_id
        ).fetchone()
        assert session is not None
        insert = (
            "INSERT INTO live_metrics (live_session_id, timestamp, metric_type, value) "
            "VALUES (%s, '2026-01-01 10:00:00', 'heart_rate', 150) ON CONFLICT DO NOTHING"
        )
        conn.execute(insert, session)
        conn.execute(insert, session)
        count = conn.execute("SELECT count(*) FROM live_metrics").fetchone()
        assert count == (1,)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert.removesuffix(" ON CONFLICT DO NOTHING"), session)

"""Schema migrations against a real PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pipeline.migrations import applied_versions, migrate

pytestmark = pytest.mark.integration

#: The spec's DDL: per column (type, NOT NULL, default); None = no default.
UUID_DEFAULT = "gen_random_uuid()"
SPEC_DDL: dict[str, dict[str, tuple[str, bool, str | None]]] = {
    "live_training_sessions": {
        "id": ("uuid", True, UUID_DEFAULT),
        "user_id": ("uuid", True, None),
        "training_session_id": ("uuid", False, None),
        "status": ("character varying(20)", True, "'active'::character varying"),
        "started_at": ("timestamp with time zone", True, "now()"),
        "last_update_at": ("timestamp with time zone", True, "now()"),
        "coach_id": ("uuid", False, None),
        "metadata": ("jsonb", False, "'{}'::jsonb"),
    },
    "live_metrics": {
        "id": ("bigint", True, "nextval('live_metrics_id_seq'::regclass)"),
        "live_session_id": ("uuid", True, None),
        "timestamp": ("timestamp with time zone", True, "now()"),
        "metric_type": ("character varying(50)", True, None),
        "value": ("double precision", True, None),
        "metadata": ("jsonb", False, None),
    },
    "live_messages": {
        "id": ("uuid", True, UUID_DEFAULT),
        "live_session_id": ("uuid", True, None),
        "sender_id": ("uuid", True, None),
        "recipient_id": ("uuid", False, None),
        "message": ("text", True, None),
        "message_type": ("character varying(20)", False, "'text'::character varying"),
        "read_at": ("timestamp with time zone", False, None),
        "created_at": ("timestamp with time zone", True, "now()"),
    },
}
#: Columns livecoach adds to the spec's tables (kept working beside them).
EXTRA_COLUMNS = {"live_messages": {"seq", "client_message_id"}}

#: (table, column) -> (referenced table, ON DELETE action: a = no action, c = cascade).
SPEC_FOREIGN_KEYS = {
    ("live_training_sessions", "user_id"): ("users", "a"),
    ("live_training_sessions", "training_session_id"): ("training_sessions", "a"),
    ("live_training_sessions", "coach_id"): ("users", "a"),
    ("live_metrics", "live_session_id"): ("live_training_sessions", "c"),
    ("live_messages", "live_session_id"): ("live_training_sessions", "c"),
    ("live_messages", "sender_id"): ("users", "a"),
    ("live_messages", "recipient_id"): ("users", "a"),
    ("coach_athletes", "coach_id"): ("users", "c"),
    ("coach_athletes", "athlete_id"): ("users", "c"),
    ("live_alerts", "live_session_id"): ("live_training_sessions", "c"),
    ("live_alerts", "user_id"): ("users", "a"),
}

SPEC_INDEXES = {
    "idx_live_metrics_session_time": ("live_metrics", '(live_session_id, "timestamp" DESC)'),
    "idx_live_sessions_user": ("live_training_sessions", "(user_id, status)"),
    "idx_live_messages_session": ("live_messages", "(live_session_id, created_at DESC)"),
}

#: Every key that names a user, a session or a message is a UUID.
UUID_KEYS = {
    ("users", "id"),
    ("training_sessions", "id"),
    ("training_sessions", "user_id"),
    ("coach_athletes", "coach_id"),
    ("coach_athletes", "athlete_id"),
    ("athlete_profiles", "user_id"),
    ("live_alerts", "id"),
    ("live_alerts", "live_session_id"),
    ("live_alerts", "user_id"),
    ("live_alerts", "acknowledged_by"),
}


def _schema_snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()


def test_migrate_twice_changes_nothing(empty_database_url: str) -> None:
    first = migrate(empty_database_url)
    assert first == [
        "0001_spec_tables", "0002_features", "0004_identity", "0005_uuid_spec_schema",
        "0006_message_reads", "0007_groups", "0008_group_member_notify",
        "0009_profile_weight",
    ]  # fmt: skip
    snapshot = _schema_snapshot(empty_database_url)
    assert migrate(empty_database_url) == []
    assert _schema_snapshot(empty_database_url) == snapshot
    assert applied_versions(empty_database_url) == first


def test_spec_tables_match_the_spec_ddl(database_url: str) -> None:
    """What ``\\d`` shows of the three tables: types, NOT NULLs, defaults, FKs, indexes."""
    with psycopg.connect(database_url) as conn:
        found: dict[str, dict[str, tuple[str, bool, str | None]]] = {}
        for table, column, type_, not_null, default in conn.execute(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
            """
        ):
            found.setdefault(table, {})[column] = (type_, not_null, default)
        for table, columns in SPEC_DDL.items():
            extra = set(found[table]) - set(columns) - EXTRA_COLUMNS.get(table, set())
            assert not extra, (table, extra)
            for column, expected in columns.items():
                assert found[table].get(column) == expected, (table, column, found[table])
        for table, column in UUID_KEYS:
            assert found[table][column][0] == "uuid", (table, column)
        timestamps = {
            (t, c)
            for t, cols in found.items()
            for c, v in cols.items()
            if v[0].startswith("timestamp") and "yoyo" not in t
        }
        assert timestamps and all(
            found[t][c][0] == "timestamp with time zone" for t, c in timestamps
        ), timestamps

        indexes = {
            name: (table, definition)
            for name, table, definition in conn.execute(
                "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
        for name, (table, cols) in SPEC_INDEXES.items():
            assert name in indexes, name
            assert indexes[name][0] == table
            assert indexes[name][1].endswith(f"USING btree {cols}"), indexes[name][1]

        fks = {
            (table, column): (target, action)
            for table, column, target, action in conn.execute(
                """
            SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text,
                   c.confdeltype
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.contype = 'f'
            """
            )
        }
        for key, expected in SPEC_FOREIGN_KEYS.items():
            assert fks.get(key) == expected, (key, fks.get(key))


def test_a_retried_sample_never_makes_a_second_row(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        user_id = conn.execute("INSERT INTO users (name) VALUES ('a') RETURNING id").fetchone()
        assert user_id is not None and isinstance(user_id[0], uuid.UUID)
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

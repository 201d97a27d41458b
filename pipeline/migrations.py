"""Apply the SQL migrations in ``schema/migrations`` with yoyo.

yoyo applies each migration in its own transaction, in dependency order, records the
applied versions in ``_yoyo_migration`` and holds a lock while it works, so two
processes migrating at once do not race. A second run applies nothing.
"""

from __future__ import annotations

import logging

from pipeline.errors import MigrationError
from schema import MIGRATIONS_DIR

log = logging.getLogger(__name__)


def _yoyo_url(database_url: str) -> str:
    # yoyo picks its driver from the scheme; "+psycopg" selects psycopg 3.
    _, _, rest = database_url.partition("://")
    return f"postgresql+psycopg://{rest}"


def migrate(database_url: str, *, upto: str | None = None) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date).

    ``upto`` stops after that migration id (an older schema, e.g. to test an upgrade).
    """
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(database_url))
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        if upto is not None:
            ids = [m.id for m in migrations]
            if upto not in ids:
                raise MigrationError(f"no migration {upto!r}; expected one of {ids}")
            migrations = migrations[: ids.index(upto) + 1]
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    except Exception as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    finally:
        backend.connection.close()
    applied = [m.id for m in pending]
    for migration_id in applied:
        log.info("applied migration %s", migration_id)
    return applied


def applied_versions(database_url: str) -> list[str]:
    """The ids of the migrations recorded as applied."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(database_url))
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        return [m.id for m in migrations if backend.is_applied(m)]
    finally:
        backend.connection.close()

"""Data shipped with livecoach: SQL migrations and the JSON Schema of the wire protocol.

``MIGRATIONS_DIR`` holds yoyo migrations (plain SQL, applied in dependency order,
each in its own transaction). ``PROTOCOL_SCHEMA`` is generated from the pydantic
models in :mod:`pipeline.models`; a test fails when it is out of date.
"""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = SCHEMA_DIR / "migrations"
PROTOCOL_SCHEMA = SCHEMA_DIR / "protocol.schema.json"

"""Alembic migrations of the meeting store, run programmatically when the store opens.

A new schema change is one new file in `versions/` (`alembic revision` with
`script_location = services/migrations` writes one from `script.py.mako`); the tables the code
uses are in `services/sql_meeting_store.py`, and a test checks the two agree.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).parent
# Any fixed 64-bit number: PostgreSQL advisory lock that serialises start-up migrations.
_PG_MIGRATION_LOCK = 0x6D65657469_6E67


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Bring the schema on `connection` to the newest revision (no-op when it is there).

    Several processes may share one PostgreSQL database and start together: the advisory lock
    makes the second wait for the first's migration, then find nothing left to do.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")

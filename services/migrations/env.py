"""Alembic environment: migrations run on the connection the store hands over (see __init__.py)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "The meeting-store migrations run when the app opens its store (services/migrations.upgrade_to_head); "
        "they have no database URL of their own."
    )
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()

"""The meetings table: one row per meeting, live or uploaded.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "meetings",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("speakers", JSON, nullable=False),
        sa.Column("segments", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
    )
    op.create_index("ix_meetings_created_at_id", "meetings", ["created_at", "id"])
    op.create_index("ix_meetings_status", "meetings", ["status"])


def downgrade() -> None:
    op.drop_index("ix_meetings_status", table_name="meetings")
    op.drop_index("ix_meetings_created_at_id", table_name="meetings")
    op.drop_table("meetings")

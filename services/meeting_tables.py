"""The meeting store's schema (the SQLAlchemy tables) and the mapping between rows and dataclasses.

The schema is created and changed only by the Alembic migrations in `services/migrations/`;
a test checks that they and these tables agree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from services.stored_meeting import MeetingSource, MeetingStatus, MeetingSummaryRow, StoredMeeting

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()
meetings = sa.Table(
    "meetings",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(500), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("duration", sa.Double(), nullable=True),
    sa.Column("language", sa.String(16), nullable=True),
    sa.Column("speakers", JSON, nullable=False),  # [{"label": "SPEAKER_1", "name": "Alice" or null}, ...]
    sa.Column("segments", JSON, nullable=False),
    sa.Column("summary", JSON, nullable=True),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("errors", JSON, nullable=False),
    sa.Column("metrics", JSON, nullable=False),
    sa.Index("ix_meetings_created_at_id", "created_at", "id"),
    sa.Index("ix_meetings_status", "status"),
)
LIST_COLUMNS = [meetings.c[name] for name in ("id", "title", "status", "source", "created_at", "duration", "speakers")]


def empty_row(
    meeting_id: str, title: str | None, created_at: float, source: MeetingSource, status: MeetingStatus
) -> dict[str, Any]:
    return {
        "id": meeting_id,
        "title": title,
        "status": MeetingStatus(status).value,
        "source": MeetingSource(source).value,
        "created_at": created_at,
        "updated_at": time.time(),
        "speakers": [],
        "segments": [],
        "errors": [],
        "metrics": {},
    }


def summary_row(row: Mapping[str, Any]) -> MeetingSummaryRow:
    return MeetingSummaryRow(
        id=row["id"],
        title=row["title"],
        status=MeetingStatus(row["status"]),
        source=MeetingSource(row["source"]),
        created_at=row["created_at"],
        duration=row["duration"],
        speaker_names={s["label"]: s["name"] for s in row["speakers"]},
    )


def stored_meeting(row: Mapping[str, Any]) -> StoredMeeting:
    head = summary_row(row)
    return StoredMeeting(
        **{name: getattr(head, name) for name in MeetingSummaryRow.__dataclass_fields__},
        updated_at=row["updated_at"],
        language=row["language"],
        segments=row["segments"],
        summary=row["summary"],
        provider=row["provider"],
        errors=row["errors"],
        metrics=row["metrics"],
    )

"""The meeting store's interface, and the calls a session makes to keep its meeting there.

Every session, live or uploaded, becomes one stored meeting. Its life:

    recording (live, while audio arrives) --stop--> queued --worker--> processing --> done | failed
    queued (upload accepted)             ------------------------------^
    recovered: finished at start-up from the spool of a process that died mid-recording

`MeetingStore` is the interface (create, set_status, save_final, get, list, rename, delete, counts);
`services/sql_meeting_store.py` implements it with SQLAlchemy for SQLite and PostgreSQL.
`record_start` / `record_final` are what a session calls; they never let a store failure end a
meeting: the failure is logged and listed in `final.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from services.errors import StoreError
from services.stored_meeting import (
    FinishedMeeting,
    MeetingPage,
    MeetingSource,
    MeetingStatus,
    StoredMeeting,
)

if TYPE_CHECKING:
    from observability import Metrics

logger = logging.getLogger(__name__)


class MeetingStore(Protocol):
    """Where meetings are kept. Every method raises `StoreError` when the store fails."""

    async def create(
        self,
        meeting_id: str,
        *,
        title: str | None,
        created_at: float,
        source: MeetingSource = MeetingSource.LIVE,
        status: MeetingStatus = MeetingStatus.RECORDING,
        language: str | None = None,
    ) -> None:
        """Add a meeting that has just started (live) or been accepted (upload)."""

    async def set_status(self, meeting_id: str, status: MeetingStatus) -> None:
        """Move a meeting to `status`. Raises `MeetingNotFoundError`."""

    async def save_final(
        self,
        meeting_id: str,
        result: FinishedMeeting,
        *,
        title: str | None,
        created_at: float,
        source: MeetingSource = MeetingSource.LIVE,
        status: MeetingStatus = MeetingStatus.DONE,
    ) -> None:
        """Keep the finished meeting, creating its row if `create` never ran (a title set meanwhile wins)."""

    async def get(self, meeting_id: str) -> StoredMeeting:
        """The whole meeting. Raises `MeetingNotFoundError`."""

    async def list_meetings(self, *, limit: int = 50, before: str | None = None) -> MeetingPage:
        """Meetings newest first; `before` is a `MeetingPage.next` cursor. Raises `MeetingRequestError`."""

    async def rename(
        self, meeting_id: str, *, title: str | None = None, speakers: Mapping[str, str | None] | None = None
    ) -> StoredMeeting:
        """Set the title and/or speaker names (a blank name restores the default). Raises
        `MeetingNotFoundError`, `MeetingRequestError` for a label the meeting does not have."""

    async def delete(self, meeting_id: str) -> bool:
        """Remove the meeting; False when there was none."""

    async def count_by_status(self) -> dict[MeetingStatus, int]:
        """How many meetings are stored in each status (every status present, zero included)."""

    async def aclose(self) -> None:
        """Release connections."""


async def record_start(
    store: MeetingStore,
    meeting_id: str,
    *,
    title: str | None,
    created_at: float,
    source: MeetingSource = MeetingSource.LIVE,
    status: MeetingStatus = MeetingStatus.RECORDING,
    language: str | None = None,
) -> bool:
    """List a meeting as soon as it starts. A store failure is logged and the meeting goes on."""
    try:
        await store.create(
            meeting_id, title=title, created_at=created_at, source=source, status=status, language=language
        )
    except StoreError as exc:
        logger.error("meeting %s: could not list it in the store at start: %s", meeting_id, exc)
        return False
    return True


async def record_status(store: MeetingStore, meeting_id: str, status: MeetingStatus) -> bool:
    """Move a stored meeting to `status`; a failure (or a meeting never listed) is logged only."""
    try:
        await store.set_status(meeting_id, status)
    except StoreError as exc:
        logger.warning("meeting %s: could not mark it %s: %s", meeting_id, status.value, exc)
        return False
    return True


async def record_final(
    store: MeetingStore,
    final: dict[str, Any],
    *,
    title: str | None,
    created_at: float,
    source: MeetingSource = MeetingSource.LIVE,
    status: MeetingStatus = MeetingStatus.DONE,
) -> bool:
    """Keep a session's `final` message as its stored meeting (id = `final["session_id"]`).

    Call it after `final` is built and before it is sent: a store failure is logged and appended
    to `final["errors"]`, so the client learns the meeting was not kept, and nothing else fails.
    """
    meeting_id = final["session_id"]
    try:
        await store.save_final(
            meeting_id,
            FinishedMeeting.from_final(final),
            title=title,
            created_at=created_at,
            source=source,
            status=status,
        )
    except StoreError as exc:
        logger.error("meeting %s: could not store the finished meeting: %s", meeting_id, exc)
        final.setdefault("errors", []).append(f"The meeting could not be stored: {exc}")
        return False
    return True


async def refresh_store_metrics(store: MeetingStore, metrics: Metrics) -> None:
    """Set the stored-meetings gauge from the store itself, so several processes sharing one
    database all report the same, true counts (in-process counting would drift)."""
    try:
        counts = await store.count_by_status()
    except StoreError as exc:
        logger.warning("stored-meeting counts unavailable for /metrics: %s", exc)
        return
    for status, count in counts.items():
        metrics.stored_meetings.labels(status=status.value).set(count)

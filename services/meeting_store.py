"""Stored meetings: what a meeting looks like once kept, and the small interface every store offers.

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from services.errors import StoreError

if TYPE_CHECKING:
    from observability import Metrics

logger = logging.getLogger(__name__)


class MeetingStatus(StrEnum):
    RECORDING = "recording"
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    RECOVERED = "recovered"


class MeetingSource(StrEnum):
    LIVE = "live"
    UPLOAD = "upload"


# Labels the server gives ("SPEAKER_1", "spk 2"): shown as "Speaker N" (as static/format.js does).
GENERIC_LABEL = re.compile(r"^(?:speaker|spk|s)[ _-]?(\d+)$", re.IGNORECASE)


def speaker_labels(segments: Sequence[Mapping[str, Any]]) -> list[str]:
    """The speaker labels in `segments`, in order of first appearance in time."""
    labels: list[str] = []
    for segment in sorted(segments, key=lambda s: s["start"]):
        label = segment.get("speaker")
        if label is not None and label not in labels:
            labels.append(label)
    return labels


def display_names(labels: Sequence[str], custom: Mapping[str, str | None]) -> dict[str, str]:
    """Label -> name shown: the chosen name, else "Speaker N" in order of appearance (as the page does)."""
    names: dict[str, str] = {}
    number = 0
    for label in labels:
        if GENERIC_LABEL.match(label.strip()):
            number += 1
            names[label] = f"Speaker {number}"
        else:
            names[label] = label
        if custom.get(label):
            names[label] = str(custom[label])
    return names


def iso_time(unix_seconds: float) -> str:
    """Unix time as ISO 8601 UTC with milliseconds: "2026-11-25T10:15:52.123Z"."""
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class MeetingSummaryRow:
    """One line of the meeting list: no transcript, so listing stays cheap."""

    id: str
    title: str | None
    status: MeetingStatus
    source: MeetingSource
    created_at: float
    """Unix time the meeting started (or the upload was accepted)."""
    duration: float | None
    speaker_names: dict[str, str | None]
    """Label -> chosen name (None: never renamed), in order of first appearance."""

    @property
    def speakers(self) -> dict[str, str]:
        return display_names(list(self.speaker_names), self.speaker_names)

    def to_wire(self) -> dict[str, Any]:
        """An item of `GET /api/meetings`."""
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "created_at": iso_time(self.created_at),
            "duration": self.duration,
            "speakers": self.speakers,
            "source": self.source.value,
        }


@dataclass(slots=True)
class StoredMeeting(MeetingSummaryRow):
    """A whole stored meeting: the `final` message's fields plus what the store adds."""

    updated_at: float = 0.0
    language: str | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    provider: str | None = None
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def transcript(self) -> str:
        """As `final.transcript` ("LABEL: text" per segment), with chosen names in place of labels."""
        lines = []
        for segment in self.segments:
            text = segment["text"].strip()
            label = segment.get("speaker")
            if text:
                who = (self.speaker_names.get(label) or label) if label is not None else None
                lines.append(f"{who}: {text}" if who else text)
        return "\n".join(lines)

    def to_wire(self) -> dict[str, Any]:
        """The body of `GET /api/meetings/{id}`."""
        return {
            **MeetingSummaryRow.to_wire(self),
            "updated_at": iso_time(self.updated_at),
            "language": self.language,
            "transcript": self.transcript,
            "segments": self.segments,
            "summary": self.summary,
            "provider": self.provider,
            "errors": self.errors,
            "metrics": self.metrics,
        }


@dataclass(slots=True)
class MeetingPage:
    """One page of the list, newest first; `next` is the cursor of the following page, if any."""

    meetings: list[MeetingSummaryRow]
    next: str | None

    def to_wire(self) -> dict[str, Any]:
        return {"meetings": [meeting.to_wire() for meeting in self.meetings], "next": self.next}


@dataclass(slots=True)
class FinishedMeeting:
    """What processing produced: the fields of the `final` message that are kept."""

    duration: float
    segments: list[dict[str, Any]]
    summary: dict[str, Any] | None
    provider: str | None
    errors: list[str]
    metrics: dict[str, Any]

    @classmethod
    def from_final(cls, final: Mapping[str, Any]) -> FinishedMeeting:
        metrics = dict(final.get("metrics") or {})
        return cls(
            duration=float(metrics.get("audio_seconds") or 0.0),
            segments=[
                {"start": s["start"], "end": s["end"], "speaker": s.get("speaker"), "text": s["text"]}
                for s in final.get("segments") or []
            ],
            summary=final.get("summary"),
            provider=final.get("provider"),
            errors=list(final.get("errors") or []),
            metrics=metrics,
        )


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
) -> bool:
    """List a meeting as soon as it starts. A store failure is logged and the meeting goes on."""
    try:
        await store.create(meeting_id, title=title, created_at=created_at, source=source, status=status)
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

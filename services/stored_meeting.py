"""A stored meeting as the rest of the code sees it: statuses, sources, display names, plain dataclasses.

Nothing here does I/O: the store (`services/meeting_store.py`, `services/sql_meeting_store.py`)
fills these, the API and the exports read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


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

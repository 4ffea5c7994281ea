"""Stage outputs shared by the pipeline: plain dataclasses, no I/O.

ASR produces `Segment`s (with `Word`s) and, while recording, `TranscriptUpdate`s; diarisation
fills in `Segment.speaker`, the LLM service produces a `MeetingSummary`, and the workflow hooks
receive a `MeetingRecord`.
Pydantic lives only at the edges (settings, wire messages, LLM output validation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
"""Every component works on 16 kHz mono float32 audio in [-1, 1]."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its time span in seconds from the session start."""

    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class DraftRequest:
    """Audio to draft (float32, 16 kHz) starting `offset` seconds in, conditioned on `prompt`."""

    audio: np.ndarray
    offset: float
    prompt: str = ""


@dataclass(slots=True)
class Segment:
    """A stretch of transcript: times in seconds from the session start."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    words: list[Word] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        """The `final.segments` item of the WebSocket contract."""
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "speaker": self.speaker,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class TranscriptUpdate:
    """One `partial_transcript` message: the current text of segment `segment_id`."""

    segment_id: int
    segment: Segment
    committed: bool


@dataclass(slots=True)
class ActionItem:
    """Something somebody agreed to do."""

    text: str
    owner: str | None = None
    due: str | None = None
    time: float | None = None
    """Transcript time (seconds) the item was taken from, when known."""


@dataclass(slots=True)
class MeetingSummary:
    """What the meeting produced, whoever wrote it (an LLM or the offline summariser)."""

    summary: str
    action_items: list[ActionItem] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    open_questions: list[str] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class MeetingRecord:
    """Everything about a finished meeting that the workflow hooks may hand on (no audio)."""

    session_id: str
    title: str | None
    started_at: float
    """Unix time the session started."""
    duration: float
    """Seconds of audio received."""
    segments: list[Segment]
    summary: MeetingSummary
    provider: str
    errors: list[str] = field(default_factory=list)

    @property
    def transcript(self) -> str:
        return transcript_text(self.segments)


def transcript_text(segments: list[Segment]) -> str:
    """The plain transcript: one line per segment, prefixed with the speaker when known."""
    lines = []
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        lines.append(f"{segment.speaker}: {text}" if segment.speaker else text)
    return "\n".join(lines)

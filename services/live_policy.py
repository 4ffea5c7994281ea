"""The live policy's timing (from the ASR_* settings) and the careful pass it schedules."""

from __future__ import annotations

from dataclasses import dataclass

from services.settings import Settings
from services.types import Segment


@dataclass(frozen=True, slots=True)
class LivePolicy:
    """Timing of the live policy, in seconds (from the ASR_* settings)."""

    min_silence: float = 0.5
    commit_silence: float = 1.0
    commit_window: float = 8.0
    max_utterance: float = 8.0
    vad_threshold: float = 0.35

    @classmethod
    def from_settings(cls, settings: Settings) -> LivePolicy:
        """The live transcription timing the ASR_* settings ask for."""
        return cls(
            min_silence=settings.asr_min_silence_seconds,
            commit_silence=settings.asr_commit_silence_seconds,
            commit_window=settings.asr_commit_window_seconds,
            max_utterance=settings.asr_max_utterance_seconds,
            vad_threshold=settings.asr_vad_threshold,
        )


@dataclass(frozen=True, slots=True)
class CommitJob:
    """A careful pass over [start, end) samples that replaces the drafts shown for that audio."""

    start: int
    end: int
    pending: tuple[tuple[int, float], ...]  # (segment id, start time) of the drafts it replaces
    drafts: dict[int, Segment]  # their latest text, which stands in if the careful pass fails

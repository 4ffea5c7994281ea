"""What every diarisation backend shares: the `SpeakerTurn` it produces and the tiny interface.

A backend is synchronous and CPU/GPU-bound: `DiarizationService` runs it on the inference
executor. It answers "who spoke when" for a whole recording; aligning those turns with the
transcript happens once, in `services.diarization`, whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker; `speaker` is a backend-local label."""

    start: float
    end: float
    speaker: str


class DiarizationBackend(Protocol):
    """Who spoke when, for a whole recording (blocking; call it on the executor)."""

    name: str

    def diarize(
        self, audio: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        """Turns sorted by start time for float32 mono 16 kHz `audio`; [] when nobody speaks."""
        ...

    def close(self) -> None:
        """Release the model (idempotent)."""
        ...

"""An in-memory diarisation backend for tests of the components around it (pipeline, session).

`ScriptedDiarizer(turns)` answers every `diarize` call with the scripted turns that start inside
the audio it is given; `error` makes it raise instead (fault injection).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.diarization_backends.base import SpeakerTurn
from services.errors import DiarizationError
from services.types import SAMPLE_RATE


class ScriptedDiarizer:
    """Scripted turns behind the `DiarizationBackend` protocol."""

    name = "scripted"

    def __init__(self, turns: Sequence[SpeakerTurn], *, error: str | None = None) -> None:
        self._turns = list(turns)
        self._error = error
        self.calls = 0
        self.closed = False

    def diarize(
        self, audio: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        self.calls += 1
        if self._error is not None:
            raise DiarizationError(self._error)
        duration = len(audio) / SAMPLE_RATE
        return [turn for turn in self._turns if turn.start < duration]

    def close(self) -> None:
        self.closed = True

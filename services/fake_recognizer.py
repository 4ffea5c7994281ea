"""An in-memory `SpeechRecognizer` for tests of the components around ASR (session, pipeline).

`FakeRecognizer(words)` "hears" the scripted words whose middle falls inside the audio it is
given, by time: it never looks at the samples, so tests of the session and the pipeline run in
milliseconds and say exactly which words should come out. `fail_transcribe` makes the careful
path raise `ASRError` (fault injection), `fail_window` the full-context path; `calls` records
every call as (kind, start, end).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from services.asr_service import WindowText
from services.errors import ASRError
from services.types import SAMPLE_RATE, DraftRequest, Segment, Word


class FakeRecognizer:
    """Scripted words with times, behind the `SpeechRecognizer` protocol."""

    name = "fake"

    def __init__(self, words: Iterable[Word], *, fail_transcribe: bool = False, fail_window: bool = False) -> None:
        self._words = sorted(words, key=lambda word: word.start)
        self.fail_transcribe = fail_transcribe
        self.fail_window = fail_window
        self.calls: list[tuple[str, float, float]] = []

    def draft(self, audio: np.ndarray, offset: float, prompt: str = "") -> str:
        end = offset + len(audio) / SAMPLE_RATE
        self.calls.append(("draft", offset, end))
        return "".join(word.text for word in self._heard(offset, end)).strip()

    def draft_batch(self, requests: Sequence[DraftRequest]) -> list[str]:
        return [self.draft(request.audio, request.offset, request.prompt) for request in requests]

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str = "") -> list[Segment]:
        end = offset + len(audio) / SAMPLE_RATE
        self.calls.append(("transcribe", offset, end))
        if self.fail_transcribe:
            raise ASRError("transcription failed: injected fault")
        return self._segments(offset, end)

    def transcribe_window(self, audio: np.ndarray, offset: float, prompt: Sequence[int], *, last: bool) -> WindowText:
        end = offset + len(audio) / SAMPLE_RATE
        self.calls.append(("window", offset, end))
        if self.fail_window:
            raise ASRError("transcription failed: injected fault")
        return WindowText(self._segments(offset, end), [], None, False)

    def _segments(self, start: float, end: float) -> list[Segment]:
        words = self._heard(start, end)
        if not words:
            return []
        text = "".join(word.text for word in words).strip()
        return [Segment(start=words[0].start, end=words[-1].end, text=text, words=words)]

    def _heard(self, start: float, end: float) -> list[Word]:
        return [word for word in self._words if start <= (word.start + word.end) / 2 < end]


def words_over(text: str, start: float, end: float) -> list[Word]:
    """`text`'s words spread evenly over [start, end] seconds (a scripted turn's words)."""
    tokens = text.split()
    step = (end - start) / len(tokens)
    return [Word(start + i * step, start + (i + 1) * step, f" {token}") for i, token in enumerate(tokens)]

"""Streaming voice activity detection with the Silero VAD model that faster-whisper ships (ONNX).

faster-whisper's own `SileroVADModel.__call__` scores a whole recording at once from a zero
state; here the recurrent state and the 64-sample context are carried from call to call, so each
sample is scored exactly once while audio streams in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import get_vad_model

FRAME_SAMPLES = 512  # 32 ms at 16 kHz: Silero's frame
_CONTEXT_SAMPLES = 64


def load_vad_model() -> None:
    """Load the shared Silero model (start-up): the first session would otherwise load it on the event loop."""
    get_vad_model()


class StreamingVAD:
    """Speech probabilities for one audio stream, one per 512-sample frame. Not thread-safe."""

    def __init__(self) -> None:
        self._session = get_vad_model().session  # shared, thread-safe ONNX session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probabilities: list[float] = []

    def feed(self, audio: np.ndarray) -> None:
        """Score the whole frames in `audio` (float32, 16 kHz); a partial frame waits for more."""
        samples = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = samples[whole:]
        if whole == 0:
            return
        frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
        contexts = np.vstack([self._context, frames[:-1, -_CONTEXT_SAMPLES:]])
        batch = np.concatenate([contexts, frames], axis=1)
        output, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -_CONTEXT_SAMPLES:].copy()
        self.probabilities.extend(float(p) for p in np.asarray(output).reshape(-1))

    @property
    def frames(self) -> int:
        return len(self.probabilities)

    def quietest(self, start: int, end: int, below: float) -> int | None:
        """First sample of the lowest-scoring frame in [start, end), if it scores under `below`; else None."""
        first = max(0, start) // FRAME_SAMPLES
        probabilities = np.asarray(self.probabilities[first : max(first, end // FRAME_SAMPLES)])
        if probabilities.size == 0 or probabilities.min() >= below:
            return None
        return (first + int(np.argmin(probabilities))) * FRAME_SAMPLES

    def speech_span(self, since: int, end: int, onset: float, offset: float) -> tuple[int, int] | None:
        """First and last speech sample in [since, end) or None: speech opens on a frame scoring at
        least `onset` and goes on while frames score at least `offset` (hysteresis)."""
        first_frame = since // FRAME_SAMPLES
        probabilities = np.asarray(self.probabilities[first_frame:])
        onsets = np.flatnonzero(probabilities >= onset)
        if onsets.size == 0:
            return None
        continuing = np.flatnonzero(probabilities >= offset)
        first = max(since, (first_frame + int(onsets[0])) * FRAME_SAMPLES)
        last = min(end, (first_frame + int(continuing[-1]) + 1) * FRAME_SAMPLES)
        return first, last


@dataclass(frozen=True, slots=True)
class SpeechMap:
    """What one stream's VAD heard, for readers on other threads: `StreamingVAD.probabilities` only grows,
    so reading it beside a `feed` is safe. Audio not scored yet counts as speech."""

    vad: StreamingVAD
    onset: float
    offset: float

    def heard(self, start: int, end: int) -> bool:
        """Whether a frame in [start, end) samples scored as speech (unscored audio counts as speech)."""
        if self.vad.frames * FRAME_SAMPLES < end - FRAME_SAMPLES:
            return True
        frames = self.vad.probabilities[max(0, start) // FRAME_SAMPLES : -(-end // FRAME_SAMPLES)]
        return max(frames, default=0.0) >= self.onset

    def fit(self, start: int, end: int, pad: int = 0) -> tuple[int, int]:
        """The speech of [start, end) (its first to last speech frame; all of it when none scored as
        speech), grown over the speech frames on either side (the utterance it sits in), and `pad`
        samples more: word times from a long window can run over a pause or fall short of the talk."""
        probabilities = self.vad.probabilities[: self.vad.frames]
        first, last = start // FRAME_SAMPLES, min(len(probabilities), -(-end // FRAME_SAMPLES))
        inside = [index for index in range(first, last) if probabilities[index] >= self.offset]
        if inside:
            first, last = inside[0], inside[-1] + 1
        while first > 0 and probabilities[first - 1] >= self.offset:
            first -= 1
        while last < len(probabilities) and probabilities[last] >= self.offset:
            last += 1
        if not inside:
            return min(start, first * FRAME_SAMPLES - pad), max(end, last * FRAME_SAMPLES + pad)
        return first * FRAME_SAMPLES - pad, last * FRAME_SAMPLES + pad

"""`RelayBuffer`: a gateway session's audio on its way to Redis (Redis mode).

It stands where the in-process `SecureAudioBuffer` stands: every appended block is sealed at once
(the shared `AUDIO_ENCRYPTION_KEY`) and waits only until the relay's forwarder (`relay.py`) has
added it to the meeting's audio stream; the gateway holds no audio beyond that.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from services.audio_buffer import AudioCipher
from services.types import SAMPLE_RATE

MAX_CHUNK_SAMPLES = 10 * SAMPLE_RATE
"""Longer blocks (an upload's) are split into entries of at most this many samples."""


class RelayBuffer:
    """A session's sealed audio on its way to Redis: counts samples, holds only what is unsent."""

    def __init__(self, cipher: AudioCipher) -> None:
        self._cipher = cipher
        self._unsent: deque[tuple[bytes, int]] = deque()  # appended on the loop or an upload's thread
        self._samples = 0

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def nbytes(self) -> int:
        return sum(len(chunk) for chunk, _ in self._unsent)

    def append(self, pcm16: np.ndarray) -> None:
        for start in range(0, int(pcm16.size), MAX_CHUNK_SAMPLES):
            block = pcm16[start : start + MAX_CHUNK_SAMPLES]
            self._unsent.append((self._cipher.seal(block.astype("<i2", copy=False).tobytes()), int(block.size)))
            self._samples += int(block.size)

    def take(self) -> list[tuple[bytes, int]]:
        """The chunks not forwarded yet (sealed), oldest first."""
        taken = []
        while self._unsent:
            taken.append(self._unsent.popleft())
        return taken

    def read(self, start: int = 0, end: int | None = None) -> np.ndarray:
        raise NotImplementedError("a gateway holds no audio in Redis mode: the worker reads it")

    def clear(self) -> None:
        self._unsent.clear()

    def adopt(self, samples: int) -> None:
        """Count the audio another gateway already relayed (a session moved here)."""
        self._samples = samples

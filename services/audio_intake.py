"""Turning a client's binary frames into 16 kHz PCM16, and pacing clients that send too many.

Frames may be any size: a PCM16 sample split across two frames is put back together, and audio
at 8-48 kHz is resampled to 16 kHz with soxr's streaming resampler (no clicks at frame edges).
"""

from __future__ import annotations

import time

import numpy as np
import soxr

from services.types import SAMPLE_RATE


class PcmDecoder:
    """PCM16 little-endian mono at `sample_rate` in, 16 kHz int16 samples out."""

    def __init__(self, sample_rate: int) -> None:
        self._carry = b""
        self._resampler = (
            soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32") if sample_rate != SAMPLE_RATE else None
        )

    def decode(self, data: bytes) -> np.ndarray:
        # np.frombuffer(..., int16) raises on odd lengths: carry the stray byte to the next frame.
        data = self._carry + data
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2")
        if self._resampler is None:
            return samples
        return _to_int16(self._resampler.resample_chunk(samples.astype(np.float32) / 32768.0))

    def flush(self) -> np.ndarray:
        """The samples the resampler still holds (its filter delay): call once, at the end."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        return _to_int16(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(audio * 32768.0, -32768, 32767).astype(np.int16)


class FrameRateLimiter:
    """Token bucket over binary frames: a burst of one second's allowance, refilled continuously."""

    def __init__(self, per_second: float) -> None:
        self._rate = per_second
        self._tokens = per_second
        self._last = time.monotonic()

    def reserve(self) -> float:
        """Take a token; return how long to wait before the frame may be handled (0 = at once)."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate) - 1
        self._last = now
        return max(0.0, -self._tokens / self._rate)


class FramePacer:
    """Slows a flooding client down instead of dropping its audio, and says when to tell it (once a second).

    While the session waits, its frames stay in the socket and TCP flow control pushes back on the
    client; other sessions are not affected.
    """

    def __init__(self, per_second: float) -> None:
        self._limiter = FrameRateLimiter(per_second)
        self._told_at = float("-inf")

    def next_frame(self) -> tuple[float, bool]:
        """Seconds to wait before handling the next frame, and whether to tell the client now."""
        delay = self._limiter.reserve()
        if delay <= 0:
            return 0.0, False
        now = time.monotonic()
        tell = now - self._told_at >= 1.0
        if tell:
            self._told_at = now
        return delay, tell

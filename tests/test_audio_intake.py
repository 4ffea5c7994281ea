from __future__ import annotations

import numpy as np
import soxr

from services.audio_intake import FrameRateLimiter, PcmDecoder


def test_samples_split_across_frames_are_reassembled() -> None:
    pcm = np.arange(-500, 500, dtype="<i2")
    raw = pcm.tobytes()
    decoder = PcmDecoder(16000)
    pieces = [decoder.decode(raw[i : i + size]) for i, size in zip(range(0, len(raw), 7), [7] * 1000, strict=False)]
    np.testing.assert_array_equal(np.concatenate(pieces), pcm)
    assert decoder.decode(b"").size == 0


def test_48khz_is_resampled_to_16khz_in_stream() -> None:
    t = np.arange(48000) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2")
    decoder = PcmDecoder(48000)
    out = np.concatenate([decoder.decode(tone[i : i + 1001].tobytes()) for i in range(0, len(tone), 1001)])
    out = np.concatenate([out, decoder.flush()])
    reference = soxr.resample(tone.astype(np.float32) / 32768, 48000, 16000) * 32768
    assert abs(len(out) - 16000) <= 2
    n = min(len(out), len(reference)) - 200
    assert np.max(np.abs(out[200:n] - reference[200:n])) < 50


def test_rate_limiter_allows_a_burst_then_paces() -> None:
    limiter = FrameRateLimiter(10)
    delays = [limiter.reserve() for _ in range(15)]
    assert delays[:9] == [0.0] * 9
    assert 0.0 < delays[10] < delays[14] <= 0.6

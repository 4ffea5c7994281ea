from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

from services.vad import FRAME_SAMPLES, StreamingVAD
from tests.support import load_wav


def test_streaming_scores_equal_whole_file_scores_whatever_the_chunking() -> None:
    pcm, _ = load_wav("one_voice.wav")
    audio = pcm.astype(np.float32) / 32768.0
    whole = len(audio) // FRAME_SAMPLES * FRAME_SAMPLES
    reference = get_vad_model()(audio[:whole]).reshape(-1)
    vad = StreamingVAD()
    for offset in range(0, len(audio), 1234):  # chunks that do not align with frames
        vad.feed(audio[offset : offset + 1234])
    np.testing.assert_allclose(vad.probabilities[: len(reference)], reference, atol=1e-5)
    assert 0.3 < float(np.mean(np.asarray(vad.probabilities) > 0.5)) < 0.95


def test_silence_scores_low() -> None:
    vad = StreamingVAD()
    vad.feed(np.zeros(16000 * 2, dtype=np.float32))
    assert vad.frames == 62 and max(vad.probabilities) < 0.2

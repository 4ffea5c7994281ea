from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

from services.vad import FRAME_SAMPLES, SpeechMap, StreamingVAD
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


def test_speech_map_hears_speech_in_a_span_and_fits_a_span_to_its_utterance() -> None:
    pcm, _ = load_wav("one_voice.wav")
    silence = np.zeros(16000 * 3, dtype=np.float32)
    audio = np.concatenate([pcm.astype(np.float32) / 32768.0, silence])
    vad = StreamingVAD()
    speech = SpeechMap(vad, onset=0.35, offset=0.2)
    assert speech.heard(len(audio) - 16000, len(audio)), "audio not scored yet counts as speech"
    vad.feed(audio)
    end_of_speech = len(pcm)
    assert not speech.heard(end_of_speech + 8000, len(audio)), "the silence after the talk"
    assert speech.heard(16000, 2 * 16000)
    loudest = int(np.argmax(vad.probabilities)) * FRAME_SAMPLES  # inside an utterance
    first, last = speech.fit(loudest, loudest + FRAME_SAMPLES)
    assert first < loudest and last > loudest + 8000, "a word's span grows over the speech around it"
    assert last < end_of_speech + 16000, "and stops where the speech does"
    assert speech.fit(loudest, loudest + FRAME_SAMPLES, pad=800) == (first - 800, last + 800)
    assert speech.fit(first, len(audio)) == (first, last), "a span running on into the silence is cut back"

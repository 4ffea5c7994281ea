"""PyAV decoding of uploads: every format to 16 kHz mono, streamed in ~1 s chunks, the length cap, non-audio."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from services.audio_decode import CHUNK_SAMPLES, decode_float32, decode_pcm16, probe_audio
from services.errors import NotAudioError
from tests.audio_files import FORMATS, encode
from tests.support import load_wav


@pytest.mark.parametrize("extension", list(FORMATS))
def test_each_format_decodes_to_the_same_audio(extension: str) -> None:
    pcm, rate = load_wav("one_voice.wav")
    file = io.BytesIO(encode(pcm, rate, extension).data)
    probe_audio(file)
    audio = decode_float32(file, max_seconds=3600)
    assert abs(audio.size - pcm.size) < 0.1 * rate, "within 0.1 s of the original (codec padding)"
    reference = pcm.astype(np.float32) / 32768.0
    shift = int(np.argmax(np.correlate(audio[: 3 * rate], reference[: 2 * rate], mode="valid")))
    n = min(audio.size - shift, reference.size)
    correlation = np.corrcoef(audio[shift : shift + n], reference[:n])[0, 1]
    assert correlation > 0.8, f"{extension}: decoded audio does not match the original ({correlation:.2f})"


def test_stereo_44k_is_mixed_down_and_resampled() -> None:
    seconds, rate = 2.0, 44_100
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out = io.BytesIO()
    with av.open(out, mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            np.stack([tone, tone]).T.reshape(1, -1).copy(), format="s16", layout="stereo"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    audio = decode_float32(io.BytesIO(out.getvalue()), max_seconds=60)
    assert abs(audio.size - 32_000) < 100
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16_000 / audio.size - 440) < 5, "the tone survives the resampling"


def test_decoded_audio_is_handed_on_in_chunks_and_capped() -> None:
    pcm, rate = load_wav("meeting_two_voices.wav")
    chunks: list[np.ndarray] = []
    decoded = decode_pcm16(io.BytesIO(encode(pcm, rate, "flac").data), chunks.append, max_seconds=10.0)
    assert decoded.truncated and decoded.seconds == 10.0
    assert sum(chunk.size for chunk in chunks) == 10 * rate
    assert all(chunk.dtype == np.int16 for chunk in chunks)
    assert max(chunk.size for chunk in chunks) < 2 * CHUNK_SAMPLES, "never the whole recording at once"
    whole = decode_pcm16(io.BytesIO(encode(pcm, rate, "flac").data), lambda chunk: None, max_seconds=3600)
    assert not whole.truncated and abs(whole.seconds - pcm.size / rate) < 0.01


@pytest.mark.parametrize(
    "data",
    [b"", b"plain text, not a recording\n" * 100, bytes(np.random.default_rng(0).integers(0, 256, 20_000, np.uint8))],
    ids=["empty", "text", "random bytes"],
)
def test_not_audio_is_refused(data: bytes) -> None:
    with pytest.raises(NotAudioError):
        probe_audio(io.BytesIO(data))
    with pytest.raises(NotAudioError):
        decode_float32(io.BytesIO(data), max_seconds=60)

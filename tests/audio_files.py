"""Compressed test recordings made at test time from the committed WAV fixtures.

Encoded with PyAV's bundled FFmpeg encoders (LAME for MP3, FFmpeg's AAC in an M4A, Opus in OGG
and WebM, FLAC), so no generated binary is committed and no system ffmpeg is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

# file extension -> (FFmpeg container, codec, encoder sample rate)
FORMATS: dict[str, tuple[str, str, int]] = {
    "wav": ("wav", "pcm_s16le", 16_000),
    "mp3": ("mp3", "libmp3lame", 16_000),
    "m4a": ("ipod", "aac", 16_000),
    "ogg": ("ogg", "libopus", 48_000),
    "webm": ("webm", "libopus", 48_000),
    "flac": ("flac", "flac", 16_000),
}

MEDIA_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "ogg": "audio/ogg",
    "webm": "audio/webm",
    "flac": "audio/flac",
}


@dataclass(frozen=True, slots=True)
class AudioFile:
    name: str
    data: bytes
    media_type: str


def encode(pcm16: np.ndarray, rate: int, extension: str, *, stem: str = "recording") -> AudioFile:
    """`pcm16` (mono int16 at `rate`) encoded as a `.extension` file, in memory."""
    container_format, codec, codec_rate = FORMATS[extension]
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm16.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=codec_rate)
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return AudioFile(f"{stem}.{extension}", out.getvalue(), MEDIA_TYPES[extension])

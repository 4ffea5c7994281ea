"""Decoding uploaded recordings with PyAV (FFmpeg's libraries, already a faster-whisper dependency).

    probe_audio(file)                               is there decodable audio? (NotAudioError if not)
    decode_pcm16(file, on_chunk, max_seconds=...)   16 kHz mono int16, handed on ~1 s at a time
    decode_float32(file, max_seconds=...)           the same as one float32 array in [-1, 1]

Any container and codec FFmpeg reads works (WAV, MP3, M4A/AAC, OGG/Opus/Vorbis, WebM, FLAC, ...);
the first audio stream is taken and mixed down to mono. Every function blocks (it is CPU work):
run it on the inference executor or a worker thread, never on the event loop. The decoded
audio is handed on in chunks, so the caller can seal each one at once instead of holding the
whole recording in the clear.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

from services.errors import NotAudioError
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

CHUNK_SAMPLES = SAMPLE_RATE
"""Decoded audio is handed on a second at a time (the size of one sealed buffer chunk)."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """What decoding produced: seconds of 16 kHz audio, and whether `max_seconds` cut it short."""

    seconds: float
    truncated: bool


def probe_audio(file: BinaryIO) -> None:
    """Check that `file` holds an audio stream whose first frame decodes; rewinds it afterwards.

    Cheap (headers and one frame), so a request can answer 415 before accepting the upload.

    Raises:
        NotAudioError: no audio stream, or it cannot be decoded.
    """
    file.seek(0)
    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise NotAudioError("The file has no audio stream: send a recording (WAV, MP3, M4A, OGG, WebM, FLAC).")
            next(container.decode(audio=0), None)
    except av.FFmpegError as exc:
        raise NotAudioError(
            f"The file is not audio that can be decoded ({type(exc).__name__}): "
            "send a recording (WAV, MP3, M4A, OGG, WebM, FLAC)."
        ) from exc
    finally:
        file.seek(0)


def decode_pcm16(file: BinaryIO, on_chunk: Callable[[np.ndarray], None], *, max_seconds: float) -> DecodedAudio:
    """Decode `file` to 16 kHz mono int16 and hand it to `on_chunk` about a second at a time.

    Stops after `max_seconds` of audio (the rest is not decoded). Damaged frames are skipped.

    Raises:
        NotAudioError: the file cannot be opened or holds no audio stream.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_samples = total = 0
    file.seek(0)
    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise NotAudioError("The file has no audio stream.")
            for block in _resampled(container):
                block = block[: limit - total]
                pending.append(block)
                pending_samples += block.size
                total += block.size
                if pending_samples >= CHUNK_SAMPLES or total >= limit:
                    on_chunk(np.concatenate(pending))
                    pending, pending_samples = [], 0
                if total >= limit:
                    break
    except av.FFmpegError as exc:
        raise NotAudioError(f"The file could not be decoded ({type(exc).__name__}: {exc}).") from exc
    finally:
        gc.collect()  # PyAV's resampler keeps native buffers until collected (faster-whisper issue 390)
    if pending:
        on_chunk(np.concatenate(pending))
    return DecodedAudio(total / SAMPLE_RATE, truncated=total >= limit)


def decode_float32(file: BinaryIO, *, max_seconds: float) -> np.ndarray:
    """The whole of `file` as 16 kHz mono float32 in [-1, 1] (see `decode_pcm16`).

    Raises:
        NotAudioError: the file cannot be opened or holds no audio stream.
    """
    chunks: list[np.ndarray] = []
    decode_pcm16(file, chunks.append, max_seconds=max_seconds)
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def _resampled(container: av.container.InputContainer) -> Iterator[np.ndarray]:
    """The first audio stream's samples as 16 kHz mono int16 blocks (resampler flushed at the end)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frames = container.decode(audio=0)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except av.InvalidDataError:  # a damaged packet: skip it, as FFmpeg's own tools do
            logger.debug("skipping an undecodable audio frame")
            continue
        frame.pts = None  # timestamps of concatenated or damaged streams may jump; the samples count
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)

"""The speakers of one recording session: provisional live labels, then the final turns.

With the embedded backend the final diarisation is done while the meeting is recorded: `catch_up`
embeds the speech that has ended every `CATCH_UP_SECONDS`, so at stop only the last speech and the
clustering are left. A heavy backend (pyannote, NeMo) diarises the whole recording at stop, through
the `whole_recording` function the diarisation service hands in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from services.audio_buffer import SecureAudioBuffer
from services.diarization_backends.base import SpeakerTurn
from services.diarization_backends.clustering import OnlineClusters
from services.diarization_backends.embedded import EmbeddedBackend, StreamingDiarizer
from services.errors import DiarizationError, MeetingAssistantError
from services.orchestrator import ModelRunner
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

CATCH_UP_SECONDS = 5.0
"""How much new audio the session's final diarisation lets pass before embedding what ended."""
FEED_SECONDS = 30.0
"""At most this much audio per embedding call. A worker that takes a meeting over (Redis mode)
embeds it from its beginning: in one call, an hour of it would hold an inference thread for a
minute or more while every meeting's careful passes wait for the other one."""

WholeRecordingTurns = Callable[[np.ndarray], Awaitable[list[SpeakerTurn]]]


class SessionSpeakers:
    """Live labels and final turns for one session. Everything it needs is handed in."""

    def __init__(
        self,
        session_id: str,
        run_model: ModelRunner,
        *,
        embedder: EmbeddedBackend | None,
        streaming: StreamingDiarizer | None,
        whole_recording: WholeRecordingTurns,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        observe: Callable[[str, float], None] = lambda backend, seconds: None,
    ) -> None:
        self._session_id = session_id
        self._run_model = run_model
        self._embedder = embedder
        self._streaming = streaming
        self._whole_recording = whole_recording
        self._min_speakers = min_speakers
        self._max_speakers = max_speakers
        self._observe = observe
        self._clusters = OnlineClusters(max_speakers=max_speakers)
        self._lock = asyncio.Lock()
        self._fed_to = 0
        self._feeding: asyncio.Task[None] | None = None

    async def label_in(self, buffer: SecureAudioBuffer, start: float, end: float) -> str | None:
        """`label` of the session's audio from `start` to `end` seconds (read off the event loop: decrypting
        up to a window of audio is model-sized work)."""
        audio = await self._run_model(buffer.read, int(start * SAMPLE_RATE), int(end * SAMPLE_RATE))
        return await self.label(audio, start, end)

    async def label(self, audio: np.ndarray, start: float, end: float) -> str | None:
        """A label consistent across the session (SPEAKER_1, …), or None when too short to tell.

        `audio` is the segment's float32 16 kHz samples spanning [start, end] seconds.
        """
        if self._embedder is None or len(audio) < SAMPLE_RATE // 2:
            return None
        embedding = await self._run_model(self._embedder.embed_segment, audio)
        if embedding is None:
            return None
        async with self._lock:  # commits arrive in order; keep the centroid updates in that order
            index = self._clusters.assign(embedding, weight=max(end - start, 0.5))
        return f"SPEAKER_{index + 1}"

    @property
    def settled_seconds(self) -> float | None:
        """How far into the recording the final diarisation is done; None when it all waits for stop."""
        return self._streaming.settled / SAMPLE_RATE if self._streaming is not None else None

    def catch_up(self, buffer: SecureAudioBuffer) -> asyncio.Task[None] | None:
        """Start embedding the speech that ended since the last time, if enough audio has come.

        Returns at once; the task it started (if any) needs no awaiting.
        """
        if self._streaming is None or (self._feeding is not None and not self._feeding.done()):
            return None
        if buffer.samples - self._fed_to < CATCH_UP_SECONDS * SAMPLE_RATE:
            return None
        self._fed_to = buffer.samples
        self._feeding = asyncio.create_task(self._feed(self._streaming, buffer, self._fed_to))
        return self._feeding

    async def turns(self, buffer: SecureAudioBuffer) -> list[SpeakerTurn]:
        """Who spoke when in the whole recording (call once, after the last audio).

        Raises:
            DiarizationError: the backend failed.
        """
        if self._feeding is not None:
            await self._feeding
        streaming = self._streaming
        if streaming is None:
            return await self._whole_recording(await self._run_model(buffer.read))
        started = time.perf_counter()

        def finish() -> list[SpeakerTurn]:
            streaming.feed(buffer.read(streaming.settled), final=True)
            return streaming.turns(self._min_speakers, self._max_speakers)

        try:
            turns = await self._run_model(finish)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise DiarizationError(f"embedded diarisation failed: {exc}") from exc
        self._observe(EmbeddedBackend.name, time.perf_counter() - started)
        return turns

    def close(self) -> None:
        """Stop waiting for embedding work in flight (the recording ended without a final)."""
        if self._feeding is not None:
            self._feeding.cancel()

    async def _feed(self, streaming: StreamingDiarizer, buffer: SecureAudioBuffer, end: int) -> None:
        piece = int(FEED_SECONDS * SAMPLE_RATE)
        try:
            while end - (settled := streaming.settled) > piece:
                await self._run_model(lambda: streaming.feed(buffer.read(settled, settled + piece)))
                if streaming.settled == settled:
                    break  # no pause in a whole piece: the rest in one call
            await self._run_model(lambda: streaming.feed(buffer.read(streaming.settled, end)))
        except (MeetingAssistantError, RuntimeError, ValueError, MemoryError) as exc:
            logger.warning(
                "diarisation while recording failed (session %s): %s; the whole recording is diarised at stop",
                self._session_id,
                exc,
            )
            self._streaming = None

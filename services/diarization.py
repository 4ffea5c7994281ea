"""Who said what: speaker labels for the final transcript and provisional ones while recording.

    build_diarization_service(settings, executor, metrics) -> DiarizationService
        .label_segments(audio, segments)  final pass: every segment labelled, split at speaker changes
        .session_speakers(id) -> SessionSpeakers  one per session:
            .label(audio, start, end) -> "SPEAKER_n"   provisional label of a committed live segment
            .catch_up(buffer)                        embed the speech that ended (while recording)
            .turns(buffer) -> [SpeakerTurn]          at stop: who spoke when in the whole recording

Backends (`services/diarization_backends/`) answer "who spoke when" for the whole recording; this
module aligns their turns with the transcript's word times and names speakers SPEAKER_1, SPEAKER_2,
… in order of first appearance. The embedded CPU backend is always loaded at start-up: it is the
default, the live tracker's encoder and the fallback when pyannote or NeMo cannot be had (one
warning, the "Speaker labels absent" row of the design's troubleshooting table). All model work
runs on the inference executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from observability import Metrics
from services.audio_buffer import SecureAudioBuffer
from services.diarization_backends import nemo_backend, pyannote_backend
from services.diarization_backends.alignment import assign_speakers
from services.diarization_backends.base import DiarizationBackend, SpeakerTurn
from services.diarization_backends.clustering import OnlineClusters
from services.diarization_backends.embedded import EmbeddedBackend, StreamingDiarizer
from services.errors import DiarizationError, MeetingAssistantError
from services.settings import Settings
from services.types import SAMPLE_RATE, Segment

logger = logging.getLogger(__name__)

__all__ = ["DiarizationService", "SessionSpeakers", "build_diarization_service"]

T = TypeVar("T")
CATCH_UP_SECONDS = 5.0
"""How much new audio the session's final diarisation lets pass before embedding what ended."""


class SessionSpeakers:
    """The speakers of one recording session: provisional live labels, then the final turns.

    With the embedded backend the final diarisation is done while the meeting is recorded:
    `catch_up` embeds the speech that has ended every `CATCH_UP_SECONDS`, so at stop only the
    last speech and the clustering are left. A heavy backend (pyannote, NeMo) diarises the whole
    recording at stop.
    """

    def __init__(
        self,
        service: DiarizationService,
        embedder: EmbeddedBackend | None,
        streaming: StreamingDiarizer | None,
        session_id: str,
    ) -> None:
        self._service = service
        self._embedder = embedder
        self._streaming = streaming
        self._session_id = session_id
        self._clusters = OnlineClusters(max_speakers=service.max_speakers)
        self._lock = asyncio.Lock()
        self._fed_to = 0
        self._feeding: asyncio.Task[None] | None = None

    async def label(self, audio: np.ndarray, start: float, end: float) -> str | None:
        """A label consistent across the session (SPEAKER_1, …), or None when too short to tell.

        `audio` is the segment's float32 16 kHz samples spanning [start, end] seconds.
        """
        if self._embedder is None or len(audio) < SAMPLE_RATE // 2:
            return None
        embedding = await self._service.run(self._embedder.embed_segment, audio)
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
            return await self._service.speaker_turns(await self._service.run(buffer.read))
        started = time.perf_counter()

        def finish() -> list[SpeakerTurn]:
            streaming.feed(buffer.read(streaming.settled), final=True)
            return streaming.turns(self._service.min_speakers, self._service.max_speakers)

        try:
            turns = await self._service.run(finish)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise DiarizationError(f"embedded diarisation failed: {exc}") from exc
        self._service.observe(EmbeddedBackend.name, time.perf_counter() - started)
        return turns

    def close(self) -> None:
        """Stop waiting for embedding work in flight (the recording ended without a final)."""
        if self._feeding is not None:
            self._feeding.cancel()

    async def _feed(self, streaming: StreamingDiarizer, buffer: SecureAudioBuffer, end: int) -> None:
        try:
            await self._service.run(lambda: streaming.feed(buffer.read(streaming.settled, end)))
        except (MeetingAssistantError, RuntimeError, ValueError, MemoryError) as exc:
            logger.warning(
                "diarisation while recording failed (session %s): %s; the whole recording is diarised at stop",
                self._session_id,
                exc,
            )
            self._streaming = None


class DiarizationService:
    """Labels transcript segments with speakers using the backend chosen by the settings."""

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        metrics: Metrics,
        embedded: EmbeddedBackend | None,
        *,
        heavy_loader: Callable[[], DiarizationBackend] | None = None,
        heavy_name: str | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> None:
        self._executor = executor
        self._metrics = metrics
        self._embedded = embedded
        self._heavy_loader = heavy_loader
        self._heavy: DiarizationBackend | None = None
        self._load_lock = asyncio.Lock()
        self.min_speakers = min_speakers
        self.max_speakers = max_speakers
        self.name: str = heavy_name or ("embedded" if embedded is not None else "none")
        """The backend in use: "embedded", "pyannote", "nemo", or "none"."""

    async def label_segments(self, audio: np.ndarray, segments: Sequence[Segment]) -> list[Segment]:
        """New segments, each labelled and split at speaker changes (word times decide where).

        Silence or very short audio gives the segments back with `speaker=None`.

        Raises:
            DiarizationError: the backend failed (the caller keeps the unlabelled segments).
        """
        if self.name == "none" or not segments:
            return [_copy(segment) for segment in segments]
        return self.apply_turns(segments, await self.speaker_turns(audio))

    async def speaker_turns(self, audio: np.ndarray) -> list[SpeakerTurn]:
        """Who spoke when in `audio` (the whole meeting); needs no transcript, so it can run while
        the transcript is being finished.

        Raises:
            DiarizationError: the backend failed.
        """
        if self.name == "none":
            return []
        started = time.perf_counter()
        backend = await self._backend()
        turns = await self._run(backend, audio)
        self.observe(backend.name, time.perf_counter() - started)
        return turns

    def apply_turns(self, segments: Sequence[Segment], turns: Sequence[SpeakerTurn]) -> list[Segment]:
        """Label `segments` from `turns`, splitting a segment where the speaker changes."""
        return assign_speakers(segments, turns)

    def session_speakers(self, session_id: str) -> SessionSpeakers:
        """Live labels and final turns for one recording session."""
        embedder = self._embedded if self.name != "none" else None
        streams = self.name == EmbeddedBackend.name and self._heavy_loader is None and self._embedded is not None
        streaming = StreamingDiarizer(self._embedded) if streams and self._embedded is not None else None
        return SessionSpeakers(self, embedder, streaming, session_id)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking model work on the inference executor."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def observe(self, backend: str, seconds: float) -> None:
        self._metrics.diarization_latency.labels(backend=backend).observe(seconds)

    async def aclose(self) -> None:
        """Release the models."""
        for backend in (self._heavy, self._embedded):
            if backend is not None:
                backend.close()
        self._heavy = None

    async def _backend(self) -> DiarizationBackend:
        if self._heavy_loader is None:
            assert self._embedded is not None
            return self._embedded
        async with self._load_lock:
            if self._heavy is None and self._heavy_loader is not None:
                loader, self._heavy_loader = self._heavy_loader, None
                try:
                    self._heavy = await self.run(loader)
                except DiarizationError as exc:
                    self._fall_back(str(exc))
        return self._heavy or self._embedded_or_raise()

    async def _run(self, backend: DiarizationBackend, audio: np.ndarray) -> list[SpeakerTurn]:
        hints = (self.min_speakers, self.max_speakers)
        try:
            return await self.run(backend.diarize, audio, *hints)
        except DiarizationError as exc:
            if backend is self._embedded or self._embedded is None:
                raise
            logger.warning(
                "diarisation: %s failed for this meeting (%s); using the embedded diariser", backend.name, exc
            )
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise DiarizationError(f"{backend.name} diarisation failed: {exc}") from exc
        return await self.run(self._embedded_or_raise().diarize, audio, *hints)

    def _fall_back(self, reason: str) -> None:
        _warn_fallback(self.name, reason)
        self.name = "embedded" if self._embedded is not None else "none"

    def _embedded_or_raise(self) -> EmbeddedBackend:
        if self._embedded is None:
            raise DiarizationError("no diariser is available (the embedded encoder failed to load at start-up)")
        return self._embedded


def _copy(segment: Segment) -> Segment:
    return Segment(segment.start, segment.end, segment.text, segment.speaker, list(segment.words))


def _warn_fallback(wanted: str, reason: str) -> None:
    logger.warning(
        "Speaker labels: %s diarisation unavailable (%s); falling back to the embedded offline diariser",
        wanted,
        reason,
    )


def _heavy_choice(settings: Settings) -> str | None:
    """Which heavy backend the settings ask for, if any ("nemo" or "pyannote")."""
    backend = settings.diarization_backend
    if backend == "nemo" or (backend == "auto" and settings.nemo_diarization_enabled):
        return "nemo"
    if backend == "pyannote" or (backend == "auto" and settings.hf_token is not None):
        return "pyannote"
    return None


def _heavy_loader(choice: str, settings: Settings) -> Callable[[], Any]:
    """A zero-argument loader for the heavy backend, after a cheap check that it can load at all."""
    if choice == "nemo":
        nemo_backend.check_loadable()
        return nemo_backend.NemoBackend.load
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    checkpoint = settings.pyannote_pipeline
    pyannote_backend.check_loadable(checkpoint, token)
    return lambda: pyannote_backend.PyannoteBackend.load(checkpoint, token)


def build_diarization_service(
    settings: Settings, executor: concurrent.futures.Executor, metrics: Metrics
) -> DiarizationService:
    """Load the embedded model now (start-up) and arrange for a heavy backend to load lazily.

    When pyannote or NeMo is asked for but cannot be had, logs one warning and uses the embedded
    diariser. `DIARIZATION_BACKEND=none` turns diarisation off (segments keep `speaker=None`).
    """

    def service(embedded: EmbeddedBackend | None, **heavy: Any) -> DiarizationService:
        return DiarizationService(
            executor,
            metrics,
            embedded,
            min_speakers=settings.diarization_min_speakers,
            max_speakers=settings.diarization_max_speakers,
            **heavy,
        )

    if settings.diarization_backend == "none":
        return service(None)
    try:
        embedded: EmbeddedBackend | None = EmbeddedBackend.build()
    except DiarizationError as exc:
        logger.error("Speaker labels absent: the embedded diariser could not load (%s)", exc)
        embedded = None
    choice = _heavy_choice(settings)
    if choice is None:
        return service(embedded)
    try:
        loader = _heavy_loader(choice, settings)
    except DiarizationError as exc:
        _warn_fallback(choice, str(exc))
        return service(embedded)
    return service(embedded, heavy_loader=loader, heavy_name=choice)

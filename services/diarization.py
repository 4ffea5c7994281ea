"""Who said what: speaker labels for the final transcript and provisional ones while recording.

    build_diarization_service(settings, run_model, metrics) -> DiarizationService
        .label_segments(audio, segments)  final pass: every segment labelled, split at speaker changes
        .session_speakers(id) -> SessionSpeakers  one per session (services/session_speakers.py):
            .label(audio, start, end) -> "SPEAKER_n"   provisional label of a committed live segment
            .catch_up(buffer)                        embed the speech that ended (while recording)
            .turns(buffer) -> [SpeakerTurn]          at stop: who spoke when in the whole recording

Backends (`services/diarization_backends/`) answer "who spoke when" for the whole recording; this
module aligns their turns with the transcript's word times and names speakers SPEAKER_1, SPEAKER_2,
… in order of first appearance. The embedded CPU backend is always loaded at start-up: it is the
default, the live tracker's encoder and the fallback when pyannote or NeMo cannot be had (one
warning, the "Speaker labels absent" row of the design's troubleshooting table). All model work
runs on the inference executor, through the orchestrator's `run_model`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from observability import Metrics
from services.diarization_backends import nemo_backend, pyannote_backend
from services.diarization_backends.alignment import assign_speakers
from services.diarization_backends.base import DiarizationBackend, SpeakerTurn
from services.diarization_backends.embedded import EmbeddedBackend, StreamingDiarizer
from services.errors import DiarizationError
from services.orchestrator import ModelRunner
from services.session_speakers import SessionSpeakers
from services.settings import Settings
from services.types import Segment

logger = logging.getLogger(__name__)

__all__ = ["DiarizationService", "build_diarization_service"]


class DiarizationService:
    """Labels transcript segments with speakers using the backend chosen by the settings."""

    def __init__(
        self,
        run_model: ModelRunner,
        metrics: Metrics,
        embedded: EmbeddedBackend | None,
        *,
        heavy_loader: Callable[[], DiarizationBackend] | None = None,
        heavy_name: str | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> None:
        self._run_model = run_model
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
        self._observe(backend.name, time.perf_counter() - started)
        return turns

    def apply_turns(self, segments: Sequence[Segment], turns: Sequence[SpeakerTurn]) -> list[Segment]:
        """Label `segments` from `turns`, splitting a segment where the speaker changes."""
        return assign_speakers(segments, turns)

    def session_speakers(self, session_id: str, run_model: ModelRunner | None = None) -> SessionSpeakers:
        """Live labels and final turns for one recording session, its model work run by `run_model`."""
        embedder = self._embedded if self.name != "none" else None
        streams = self.name == EmbeddedBackend.name and self._heavy_loader is None and self._embedded is not None
        streaming = StreamingDiarizer(self._embedded) if streams and self._embedded is not None else None
        return SessionSpeakers(
            session_id,
            run_model or self._run_model,
            embedder=embedder,
            streaming=streaming,
            whole_recording=self.speaker_turns,
            min_speakers=self.min_speakers,
            max_speakers=self.max_speakers,
            observe=self._observe,
        )

    def _observe(self, backend: str, seconds: float) -> None:
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
                    self._heavy = await self._run_model(loader)
                except DiarizationError as exc:
                    self._fall_back(str(exc))
        return self._heavy or self._embedded_or_raise()

    async def _run(self, backend: DiarizationBackend, audio: np.ndarray) -> list[SpeakerTurn]:
        hints = (self.min_speakers, self.max_speakers)
        try:
            return await self._run_model(backend.diarize, audio, *hints)
        except DiarizationError as exc:
            if backend is self._embedded or self._embedded is None:
                raise
            logger.warning(
                "diarisation: %s failed for this meeting (%s); using the embedded diariser", backend.name, exc
            )
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise DiarizationError(f"{backend.name} diarisation failed: {exc}") from exc
        return await self._run_model(self._embedded_or_raise().diarize, audio, *hints)

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


def build_diarization_service(settings: Settings, run_model: ModelRunner, metrics: Metrics) -> DiarizationService:
    """Load the embedded model now (start-up) and arrange for a heavy backend to load lazily.

    When pyannote or NeMo is asked for but cannot be had, logs one warning and uses the embedded
    diariser. `DIARIZATION_BACKEND=none` turns diarisation off (segments keep `speaker=None`).
    """

    def service(embedded: EmbeddedBackend | None, **heavy: Any) -> DiarizationService:
        return DiarizationService(
            run_model,
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

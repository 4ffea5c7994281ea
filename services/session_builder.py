"""A live session's parts, built alike for every session the process records.

    SessionBuilder(...).open(id, emit) -> SessionParts    buffer, live pump, speaker tracker, urgency

What the sessions share lives here: the `DraftBatcher` that decodes the drafts of every live session
together, and the `FullContextReaders` that read one full-context window at a time. Each session
gets its own buffer (spooled to disk when there is a spool directory), live transcriber, speaker
tracker, full-context runner and pump, with model runners at its own urgency.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from observability import Metrics
from services.asr_service import SpeechRecognizer
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.draft_batcher import DraftBatcher
from services.full_context_pass import FullContextReaders
from services.live_policy import LivePolicy
from services.live_pump import Emit, LivePump
from services.live_transcriber import LiveTranscriber
from services.orchestrator import ModelRunner, Orchestrator, Urgency
from services.priority_executor import Priority
from services.recording import SessionParts
from services.settings import Settings
from services.spool_directory import SpoolDirectory, SpooledAudioBuffer
from services.types import DraftRequest

if TYPE_CHECKING:
    from services.diarization import DiarizationService


class SessionBuilder:
    """Builds each live session's parts."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        recognizer: SpeechRecognizer,
        orchestrator: Orchestrator,
        diarization: DiarizationService | None,
        policy: LivePolicy,
        cipher: AudioCipher,
        partial_interval: float,
        spools: SpoolDirectory | None,
        draft_batch_size: int,
        full_context_final: bool,
    ) -> None:
        self._metrics = metrics
        self._recognizer = recognizer
        self._orchestrator = orchestrator
        self._diarization = diarization
        self._policy = policy
        self._cipher = cipher
        self._partial_interval = partial_interval
        self._spools = spools
        load = orchestrator.load
        self._full_readers = FullContextReaders(
            recognizer, metrics, enabled=full_context_final, busy=lambda: load.thinning
        )
        live_drafts = orchestrator.runner(Urgency(), draft=True)
        self._drafts = DraftBatcher(recognizer, live_drafts, metrics, max_batch=draft_batch_size)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        metrics: Metrics,
        recognizer: SpeechRecognizer,
        orchestrator: Orchestrator,
        diarization: DiarizationService | None,
        cipher: AudioCipher,
        spools: SpoolDirectory | None,
    ) -> SessionBuilder:
        """The builder with the live policy and the ASR_* switches of `settings`."""
        return cls(
            metrics=metrics,
            recognizer=recognizer,
            orchestrator=orchestrator,
            diarization=diarization,
            policy=LivePolicy.from_settings(settings),
            cipher=cipher,
            partial_interval=settings.asr_partial_interval,
            spools=spools,
            draft_batch_size=settings.asr_draft_batch_size,
            full_context_final=settings.asr_full_context_final,
        )

    def open(self, session_id: str, emit: Emit, *, spooled: bool = True) -> SessionParts:
        """A new session's parts; `emit` receives its live updates. With `spooled` (and a spool directory)
        its audio also goes to disk, sealed, as it arrives."""
        urgency = Urgency()
        run_model = self._orchestrator.runner(urgency)
        run_draft = self._orchestrator.runner(urgency, draft=True)  # behind careful passes (capacity)
        spool = self._spools.open(session_id) if spooled and self._spools is not None else None
        buffer = SpooledAudioBuffer(self._cipher, spool) if spool is not None else SecureAudioBuffer(self._cipher)
        speakers = self._diarization.session_speakers(session_id, run_model) if self._diarization is not None else None
        transcriber = LiveTranscriber(self._recognizer, buffer, self._policy, self._metrics)
        full_pass = self._full_readers.runner(
            session_id, buffer, transcriber.speech, run_window=run_draft, run_rest=run_model
        )
        pump = LivePump(
            session_id=session_id,
            buffer=buffer,
            transcriber=transcriber,
            speakers=speakers,
            run_model=run_model,
            emit=emit,
            interval=self._partial_interval,
            metrics=self._metrics,
            run_draft=run_draft,
            decode_draft=functools.partial(self._decode_draft, urgency, run_draft),
            load=self._orchestrator.load,  # thins drafts under load (services/capacity.py)
            full_pass=full_pass,
        )
        return SessionParts(buffer, pump, speakers, urgency, spool=spool)

    async def _decode_draft(self, urgency: Urgency, run_draft: ModelRunner, request: DraftRequest) -> str:
        """A live session's draft goes in the shared batch; one nobody watches runs at its own priority."""
        if urgency.level is Priority.LIVE:
            return await self._drafts.draft(request)
        return await run_draft(self._recognizer.draft, request.audio, request.offset, request.prompt)

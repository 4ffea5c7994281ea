"""The meeting pipeline: what every session shares, and the steps after `stop`.

`MeetingPipeline` bundles the long-lived components the app lifespan builds (recogniser,
orchestrator, diariser, LLM chain, workflow hooks) and runs the post-recording steps:
diarise the committed transcript, summarise it, hand the record to the hooks, build `final`.
A failing step is listed in `errors` and the meeting goes on with what it has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from observability import Metrics
from services.asr_service import SpeechRecognizer
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.errors import MeetingAssistantError
from services.live_transcriber import LivePolicy, LiveTranscriber
from services.orchestrator import InferenceJob, Orchestrator
from services.settings import Settings
from services.types import SAMPLE_RATE, MeetingRecord, MeetingSummary, Segment

if TYPE_CHECKING:
    from integrations.workflows import WorkflowRunner
    from services.diarization import DiarizationService, SessionSpeakers
    from services.diarization_backends.base import SpeakerTurn
    from services.llm_service import LLMService

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
StatusReport = Callable[[str, str], None]

NO_SPEECH_SUMMARY = "No speech was detected in this recording."


def live_policy(settings: Settings) -> LivePolicy:
    """The live transcription timing the ASR_* settings ask for."""
    return LivePolicy(
        min_silence=settings.asr_min_silence_seconds,
        commit_silence=settings.asr_commit_silence_seconds,
        commit_window=settings.asr_commit_window_seconds,
        max_utterance=settings.asr_max_utterance_seconds,
        vad_threshold=settings.asr_vad_threshold,
    )


class MeetingPipeline:
    """Shared components plus the post-recording steps of a meeting."""

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        recognizer: SpeechRecognizer,
        orchestrator: Orchestrator,
        diarization: DiarizationService | None,
        llm: LLMService,
        workflows: WorkflowRunner,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.recognizer = recognizer
        self.orchestrator = orchestrator
        self.diarization = diarization
        self.llm = llm
        self.workflows = workflows
        self._live_policy = live_policy(settings)
        key = settings.audio_encryption_key
        self._cipher = AudioCipher(key.get_secret_value() if key else None)

    def new_buffer(self) -> SecureAudioBuffer:
        return SecureAudioBuffer(self._cipher)

    def new_transcriber(self, buffer: SecureAudioBuffer) -> LiveTranscriber:
        return LiveTranscriber(self.recognizer, buffer, self._live_policy, self.metrics)

    def new_session_speakers(self, session_id: str) -> SessionSpeakers | None:
        return self.diarization.session_speakers(session_id) if self.diarization is not None else None

    async def run_model(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.orchestrator.run_model(fn, *args, **kwargs)

    def submit(self, session_id: str, run: Callable[[], Awaitable[None]]) -> None:
        self.metrics.jobs_total.labels(stage="meeting").inc()
        self.orchestrator.submit(InferenceJob(session_id=session_id, run=run))

    async def finish_meeting(
        self,
        *,
        session_id: str,
        title: str | None,
        started_at: float,
        buffer: SecureAudioBuffer,
        segments: Sequence[Segment],
        speaker_turns: asyncio.Task[list[SpeakerTurn]] | None,
        errors: list[str],
        report: StatusReport,
    ) -> dict[str, Any]:
        """Diarise, summarise and hand on a meeting whose transcript is complete; return `final`.

        `speaker_turns` is the diarisation started at stop (`start_diarization`). `errors` holds
        what already went wrong; each failing step adds its own line.
        """
        timings: dict[str, float] = {}
        segments = [segment for segment in segments if segment.text]
        if segments:
            report("diarizing", "Telling the speakers apart.")
            segments = await self._timed(
                timings, "diarization", self._diarize(session_id, speaker_turns, segments, errors)
            )
            report("summarizing", "Writing the summary.")
            summary, provider = await self._timed(
                timings, "summary", self._summarize(session_id, title, segments, errors)
            )
        else:
            summary, provider = MeetingSummary(summary=NO_SPEECH_SUMMARY), "none"
        record = MeetingRecord(
            session_id=session_id,
            title=title,
            started_at=started_at,
            duration=buffer.samples / SAMPLE_RATE,
            segments=list(segments),
            summary=summary,
            provider=provider,
            errors=errors,
        )
        errors.extend(await self._timed(timings, "workflows", self.workflows.run(record)))
        return {
            "type": "final",
            "session_id": session_id,
            "transcript": record.transcript,
            "segments": [segment.to_wire() for segment in record.segments],
            "summary": summary.to_wire(),
            "provider": provider,
            "errors": errors,
            "metrics": {
                "audio_seconds": round(record.duration, 3),
                "segments": len(record.segments),
                "speakers": len({s.speaker for s in record.segments if s.speaker}),
                **{f"{name}_seconds": round(value, 3) for name, value in timings.items()},
            },
        }

    async def _timed(self, timings: dict[str, float], name: str, step: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await step
        finally:
            timings[name] = time.perf_counter() - started

    def start_diarization(
        self, speakers: SessionSpeakers | None, buffer: SecureAudioBuffer
    ) -> asyncio.Task[list[SpeakerTurn]] | None:
        """Finish telling the speakers apart from the audio alone, at stop.

        Diarisation needs no transcript, so it runs beside the last transcription step instead of
        after it (on the two cores of a small server that halves its share of stop -> final).
        """
        if speakers is None:
            return None
        self.metrics.jobs_total.labels(stage="diarization").inc()
        return asyncio.create_task(speakers.turns(buffer))

    async def _diarize(
        self,
        session_id: str,
        speaker_turns: asyncio.Task[list[SpeakerTurn]] | None,
        segments: list[Segment],
        errors: list[str],
    ) -> list[Segment]:
        if self.diarization is None or speaker_turns is None:
            return segments
        try:
            return self.diarization.apply_turns(segments, await speaker_turns)
        except MeetingAssistantError as exc:
            logger.warning("diarisation failed (session %s): %s", session_id, exc)
            self.metrics.job_failures.labels(stage="diarization").inc()
            errors.append(f"Speaker labels unavailable: {exc}")
            return segments

    async def _summarize(
        self, session_id: str, title: str | None, segments: Sequence[Segment], errors: list[str]
    ) -> tuple[MeetingSummary, str]:
        self.metrics.jobs_total.labels(stage="summary").inc()
        outcome = await self.llm.summarize_meeting(segments, title=title, session_id=session_id)
        errors.extend(outcome.errors)
        return outcome.summary, outcome.provider

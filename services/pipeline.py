"""The meeting pipeline: a session's parts while it records, and the one job that finishes it.

    open_session(id, emit) -> SessionParts      the buffer, the live pump and the speaker tracker
    list_meeting(parts, id, title, started_at)  the stored meeting appears (status recording)
    submit(id, run)                             queue the after-stop job on the orchestrator
    finish(FinishedRecording, send) -> final    tail commit, diarisation, summary, hooks, store, `final`

The session hands a `FinishedRecording` to `finish` and only sends what comes back. A failing
step is listed in `errors` and the meeting goes on with what it has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from observability import Metrics
from services.errors import BacklogFullError, MeetingAssistantError
from services.live_pump import Emit, LivePump
from services.meeting_steps import label_speakers, summarize, timed
from services.meeting_store import MeetingStore, record_final, record_start, record_status
from services.memory import release_free_memory
from services.orchestrator import InferenceJob, Orchestrator
from services.priority_executor import Priority
from services.protocol import error_message, final_message, notice
from services.recording import FinishedRecording, SessionParts
from services.session_builder import SessionBuilder
from services.spool import SpoolMeta
from services.stored_meeting import MeetingSource, MeetingStatus
from services.tasks import cancel_and_wait
from services.types import SAMPLE_RATE, MeetingRecord, MeetingSummary

if TYPE_CHECKING:
    from integrations.workflows import WorkflowRunner
    from services.diarization import DiarizationService
    from services.diarization_backends.base import SpeakerTurn
    from services.llm_service import LLMService

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]

NO_SPEECH_SUMMARY = "No speech was detected in this recording."


class MeetingPipeline:
    """Builds each session's parts and finishes each meeting."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        orchestrator: Orchestrator,
        diarization: DiarizationService | None,
        llm: LLMService,
        workflows: WorkflowRunner,
        store: MeetingStore,
        sessions: SessionBuilder,
    ) -> None:
        self.metrics = metrics
        self._store = store
        self._orchestrator = orchestrator
        self._diarization = diarization
        self._llm = llm
        self._workflows = workflows
        self._sessions = sessions

    def open_session(self, session_id: str, emit: Emit, *, spooled: bool = True) -> SessionParts:
        """A new session's buffer, live pump and speaker tracker (`SessionBuilder.open`)."""
        return self._sessions.open(session_id, emit, spooled=spooled)

    def list_meeting(
        self,
        parts: SessionParts,
        session_id: str,
        title: str | None,
        started_at: float,
        *,
        source: MeetingSource = MeetingSource.LIVE,
        language: str | None = None,
    ) -> None:
        """List the meeting in the store (in the background; a failure is only logged): a live one
        as recording while it records, an upload as queued until its job starts."""
        status = MeetingStatus.RECORDING if source is MeetingSource.LIVE else MeetingStatus.QUEUED
        if parts.spool is not None:  # what recovery needs if the store never gets the row
            parts.spool.describe(SpoolMeta(session_id, started_at, title, source.value, language))
        parts.listed = asyncio.create_task(
            record_start(
                self._store,
                session_id,
                title=title,
                created_at=started_at,
                source=source,
                status=status,
                language=language,
            )
        )

    def submit(
        self,
        session_id: str,
        run: Callable[[], Awaitable[None]],
        *,
        background: bool = False,
        audio_seconds: float = 0.0,
    ) -> None:
        """Queue an after-stop job; `background` when nobody waits for it on a socket.

        Raises:
            RuntimeError: the server is shutting down and takes no new jobs.
            BacklogFullError: too many background jobs are waiting already.
        """
        self.metrics.jobs_total.labels(stage="meeting").inc()
        priority = Priority.BACKGROUND if background else Priority.LIVE
        self._orchestrator.submit(InferenceJob(session_id, run, priority, audio_seconds))

    def finish_unheard(self, session_id: str, title: str | None, started_at: float, parts: SessionParts) -> None:
        """Finish a recording nobody waits for (its client left for good), behind live meetings.

        Never raises: when the server takes no more jobs the recording is dropped with a log line.
        """
        recording = FinishedRecording(session_id, title, started_at, time.perf_counter(), parts)
        parts.detach()
        try:
            seconds = parts.buffer.samples / SAMPLE_RATE
            self.submit(session_id, lambda: self.finish(recording, _nobody), background=True, audio_seconds=seconds)
        except (RuntimeError, BacklogFullError) as exc:
            logger.error("session %s (client gone) is not finished: %s", session_id, exc)
            parts.close()

    async def finish(self, recording: FinishedRecording, send: Send) -> dict[str, Any]:
        """Finish a stopped recording and return its `final` message; `send` gets the statuses on the way.

        Frees the recording's parts whatever happens.
        """
        session_id, parts = recording.session_id, recording.parts
        try:
            parts.audio_complete()
            send(notice("transcribing", session_id))
            if parts.listed is not None and await parts.listed:
                await record_status(self._store, session_id, MeetingStatus.PROCESSING)
            parts.pump.stop()
            await parts.pump.settle()
            turns = self._start_diarization(parts)
            try:
                errors = await self._finish_transcript(session_id, parts.pump, send)
                return await self._finish_meeting(recording, turns, errors, send, tail_failed=bool(errors))
            finally:
                if turns is not None:
                    await cancel_and_wait(turns)  # unused when there was no speech
        finally:
            parts.close()
            await self._orchestrator.runner(parts.urgency)(release_free_memory)  # services/memory.py

    async def _finish_transcript(self, session_id: str, pump: LivePump, send: Send) -> list[str]:
        """Commit the open tail; the errors it met."""
        self.metrics.jobs_total.labels(stage="asr_final").inc()
        try:
            await pump.finish()
        except MeetingAssistantError as exc:
            logger.warning("finishing the transcript failed (session %s): %s", session_id, exc)
            self.metrics.job_failures.labels(stage="asr_final").inc()
            send(error_message("transcription_failed", str(exc)))
            return [str(exc)]
        return []

    def _start_diarization(self, parts: SessionParts) -> asyncio.Task[list[SpeakerTurn]] | None:
        """Finish telling the speakers apart from the audio alone, beside the tail commit.

        Diarisation needs no transcript, so it runs beside the last transcription step instead of
        after it (on the two cores of a small server that halves its share of stop -> final).
        """
        if parts.speakers is None:
            return None
        self.metrics.jobs_total.labels(stage="diarization").inc()
        return asyncio.create_task(parts.speakers.turns(parts.buffer))

    async def _finish_meeting(
        self,
        recording: FinishedRecording,
        turns: asyncio.Task[list[SpeakerTurn]] | None,
        errors: list[str],
        send: Send,
        *,
        tail_failed: bool,
    ) -> dict[str, Any]:
        session_id = recording.session_id
        timings: dict[str, float] = {}
        segments = [segment for segment in recording.parts.pump.transcript if segment.text]
        if segments:
            send(notice("diarizing", session_id))
            labelled = label_speakers(
                self._diarization, turns, segments, session_id=session_id, metrics=self.metrics, errors=errors
            )
            segments = await timed(timings, "diarization", labelled)
            send(notice("summarizing", session_id))
            summary_step = summarize(
                self._llm, segments, session_id=session_id, title=recording.title, metrics=self.metrics, errors=errors
            )
            summary, provider = await timed(timings, "summary", summary_step)
        else:
            summary, provider = MeetingSummary(summary=NO_SPEECH_SUMMARY), "none"
        record = MeetingRecord(
            session_id=session_id,
            title=recording.title,
            started_at=recording.started_at,
            duration=recording.parts.buffer.samples / SAMPLE_RATE,
            segments=list(segments),
            summary=summary,
            provider=provider,
            errors=errors,
        )
        await self._run_hooks(recording, record, timings)
        timings["stop_to_final"] = time.perf_counter() - recording.stopped_at
        if recording.source is MeetingSource.LIVE and not recording.recovered:  # not a live latency
            self.metrics.end_to_end_latency.observe(timings["stop_to_final"])
        final = final_message(record, timings)
        status = MeetingStatus.RECOVERED if recording.recovered else MeetingStatus.DONE
        if tail_failed and not segments:
            status = MeetingStatus.FAILED
        stored = await record_final(
            self._store,
            final,
            title=recording.title,
            created_at=recording.started_at,
            source=recording.source,
            status=status,
        )
        if stored:
            recording.parts.meeting_stored()
        send(notice("done", session_id))
        return final

    async def _run_hooks(self, recording: FinishedRecording, record: MeetingRecord, timings: dict[str, float]) -> None:
        """The hooks (Slack, audit log, TTS), once per meeting: their failures go to `record.errors`."""
        if recording.hooks_once is not None and not await recording.hooks_once():
            logger.warning("session %s: its hooks already ran on a worker that stopped; not again", record.session_id)
            return
        record.errors.extend(await timed(timings, "workflows", self._workflows.run(record)))


def _nobody(message: dict[str, Any]) -> None:
    """Where the messages of a meeting whose client left go."""

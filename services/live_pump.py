"""The live loop of one recording: drafts while people speak, careful passes beside them, live labels.

The session calls `notify()` whenever audio arrives. Once `interval` of new audio has come, the
pump runs one transcriber step on the inference executor (a draft, a freeze or a staged careful
pass), starts the careful pass it staged on another inference thread (drafting goes on meanwhile;
one pass per session at a time), labels committed segments with a provisional speaker, and lets
the session's diariser embed the speech that has ended. Every update goes to `emit` with the lag
(seconds of audio received but not yet looked at).

A failing draft or careful pass never ends the recording: the drafts shown stand in for a failed
careful pass, and the tail commit at stop looks at the audio again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from observability import Metrics
from services.audio_buffer import SecureAudioBuffer
from services.live_policy import CommitJob
from services.live_transcriber import LiveTranscriber
from services.orchestrator import ModelRunner
from services.session_speakers import SessionSpeakers
from services.types import SAMPLE_RATE, Segment, TranscriptUpdate

logger = logging.getLogger(__name__)

Step = Callable[[], list[TranscriptUpdate]]
"""One blocking transcriber step (draft, careful commit, tail): the updates to send."""
Emit = Callable[[TranscriptUpdate, float], None]
"""Receives each update with the lag in seconds."""


class LivePump:
    """Drives one session's `LiveTranscriber` while audio streams in: `start()`, then `stop()` at the end."""

    def __init__(
        self,
        *,
        session_id: str,
        buffer: SecureAudioBuffer,
        transcriber: LiveTranscriber,
        speakers: SessionSpeakers | None,
        run_model: ModelRunner,
        emit: Emit,
        interval: float,
        metrics: Metrics,
    ) -> None:
        self._session_id = session_id
        self._buffer = buffer
        self._transcriber = transcriber
        self._speakers = speakers
        self._run_model = run_model
        self._emit = emit
        self._interval = int(interval * SAMPLE_RATE)
        self._metrics = metrics
        self._audio_arrived = asyncio.Event()
        self._lock = asyncio.Lock()  # one step at a time: they share the transcriber
        self._running = False
        self._loop_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._latest: dict[int, TranscriptUpdate] = {}  # each segment as last sent, for a resumed client

    @property
    def committed(self) -> list[Segment]:
        """The committed segments so far, in order."""
        return self._transcriber.committed

    def start(self) -> None:
        self._running = True
        self._loop_task = asyncio.create_task(self._loop(), name=f"pump-{self._session_id}")

    def listen(self, emit: Emit) -> list[TranscriptUpdate]:
        """Send later updates to `emit` (a resumed client); returns every segment as last sent."""
        self._emit = emit
        return [self._latest[segment_id] for segment_id in sorted(self._latest)]

    def notify(self) -> None:
        """New audio is in the buffer."""
        self._audio_arrived.set()

    def stop(self) -> None:
        """No more drafts: the recording stopped. The step in flight goes on (see `settle`)."""
        self._running = False
        self._audio_arrived.set()

    async def settle(self) -> None:
        """Wait for the step and the careful pass in flight (they never raise)."""
        if self._loop_task is not None:
            await self._loop_task  # its last step may have started a careful pass: read that after
        if self._commit_task is not None:
            await self._commit_task

    async def finish(self) -> None:
        """Commit whatever is still open (after `stop()` and `settle()`): the recording is over.

        Raises:
            MeetingAssistantError: the recogniser or the audio buffer failed.
        """
        await self._advance(self._transcriber.finish)

    def cancel(self) -> None:
        """Abandon the work in flight (the session ends without a final)."""
        self._running = False
        for task in (self._loop_task, self._commit_task):
            if task is not None:
                task.cancel()

    async def _loop(self) -> None:
        while self._running:
            await self._audio_arrived.wait()
            self._audio_arrived.clear()
            if not self._running or self._buffer.samples - self._transcriber.processed_samples < self._interval:
                continue
            try:
                self._metrics.jobs_total.labels(stage="asr_live").inc()
                await self._advance(self._transcriber.advance)
                self._start_commit()
                if self._speakers is not None:
                    self._speakers.catch_up(self._buffer)
            except Exception:  # a failed draft must not end the recording; the tail commit retries the audio
                logger.exception("live transcription step failed (session %s)", self._session_id)
                self._metrics.job_failures.labels(stage="asr_live").inc()
                await asyncio.sleep(self._interval / SAMPLE_RATE)

    def _start_commit(self) -> None:
        """Run the careful pass the transcriber staged beside the drafts, which go on meanwhile."""
        if self._commit_task is not None and not self._commit_task.done():
            return
        job = self._transcriber.take_commit()
        if job is not None:
            self._commit_task = asyncio.create_task(self._commit(job), name=f"commit-{self._session_id}")

    async def _commit(self, job: CommitJob) -> None:
        self._metrics.jobs_total.labels(stage="asr_live").inc()
        segments: list[Segment] | None
        try:
            segments = await self._run_model(self._transcriber.transcribe_commit, job)
        except Exception:  # the drafts shown stand in for the careful text: nothing said is lost
            logger.exception("careful transcription failed (session %s); keeping the drafts", self._session_id)
            self._metrics.job_failures.labels(stage="asr_live").inc()
            segments = None
        try:
            await self._advance(functools.partial(self._transcriber.apply_commit, job, segments))
        except Exception:  # never raises: settle() awaits this task
            logger.exception("committing a careful pass failed (session %s)", self._session_id)
            self._metrics.job_failures.labels(stage="asr_live").inc()

    async def _advance(self, step: Step) -> None:
        async with self._lock:
            updates = await self._run_model(step)
            for update in updates:
                await self._label(update)
                lag = (self._buffer.samples - self._transcriber.processed_samples) / SAMPLE_RATE
                self._metrics.processing_lag.observe(lag)
                self._latest[update.segment_id] = update
                self._emit(update, lag)

    async def _label(self, update: TranscriptUpdate) -> None:
        segment = update.segment
        if self._speakers is None or not update.committed or not segment.text:
            return
        try:
            # decrypting up to a window of audio is model-sized work: off the event loop
            audio = await self._run_model(
                self._buffer.read, int(segment.start * SAMPLE_RATE), int(segment.end * SAMPLE_RATE)
            )
            segment.speaker = await self._speakers.label(audio, segment.start, segment.end)
        except Exception:  # a live label is a nicety: the final pass labels every segment again
            logger.warning("live speaker label failed (session %s)", self._session_id, exc_info=True)

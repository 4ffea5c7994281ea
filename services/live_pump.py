"""The live loop of one recording: drafts while people speak, careful passes beside them, live labels.

The session calls `notify()` whenever audio arrives. Once `interval` of new audio has come, the
pump runs one transcriber step on the inference executor (a draft, a freeze or a staged careful
pass), starts the careful pass it staged on another inference thread (drafting goes on meanwhile;
one pass per session at a time), reads a window of the final transcript once one is due
(`full_context_pass.py`), labels committed segments with a provisional speaker, and lets the
session's diariser embed the speech that has ended. Every update goes to `emit` with the lag
(seconds of audio received but not yet looked at). A staged draft goes to `decode_draft` (the
process's `DraftBatcher`, which decodes the drafts of every live session together) and is shown
when it comes back, unless the utterance moved on meanwhile.

Under load the pump thins its drafts: a step drafts only once the load meter's `draft_interval` of
new audio has come since the last draft (`services/capacity.py`); the steps between run without
the draft (the VAD, freezes and careful passes staged on time, a few milliseconds). Draft steps run
at `Priority.DRAFT`, behind the careful passes and finals of every live session. Careful passes
are never thinned: committed text keeps its pace.

A failing draft or careful pass never ends the recording: the drafts shown stand in for a failed
careful pass, and the tail commit at stop looks at the audio again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from observability import Metrics
from services.audio_buffer import SecureAudioBuffer
from services.capacity import LoadMeter
from services.full_context_pass import FullContextRunner
from services.live_policy import CommitJob
from services.live_transcriber import LiveTranscriber
from services.orchestrator import ModelRunner
from services.session_speakers import SessionSpeakers
from services.types import SAMPLE_RATE, DraftRequest, Segment, TranscriptUpdate

logger = logging.getLogger(__name__)

Step = Callable[[], list[TranscriptUpdate]]
"""One blocking transcriber step (draft, careful commit, tail): the updates to send."""
Emit = Callable[[TranscriptUpdate, float], None]
"""Receives each update with the lag in seconds."""
DecodeDraft = Callable[[DraftRequest], Awaitable[str]]
"""Decodes a staged draft off the event loop (the `DraftBatcher`, or the pump's own draft runner)."""
_PACE_SLACK = 2.0
"""Audio seconds a client may run ahead of the wall clock and still count as sending in real time."""


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
        run_draft: ModelRunner | None = None,
        decode_draft: DecodeDraft | None = None,
        load: LoadMeter | None = None,
        full_pass: FullContextRunner | None = None,
    ) -> None:
        self._session_id = session_id
        self._buffer = buffer
        self._transcriber = transcriber
        self._speakers = speakers
        self._run_model = run_model
        self._run_draft = run_draft or run_model
        self._decode_draft = decode_draft or functools.partial(self._run_draft, transcriber.decode_draft)
        self._load = load
        self._full_pass = full_pass or FullContextRunner.off(session_id, run_model, metrics)
        self._started_at: float | None = None
        self._drafted_at = 0  # buffer length when the last drafting step was taken
        self._emit = emit
        self._interval = int(interval * SAMPLE_RATE)
        self._metrics = metrics
        self._audio_arrived = asyncio.Event()
        # One step at a time: they share the transcriber. Taken on the inference thread, not while
        # waiting for one: a draft queued behind other sessions' careful passes must not hold up
        # this session's own careful pass being applied (committed text first).
        self._state = threading.Lock()
        self._emitting = asyncio.Lock()  # updates are labelled and sent in the order their steps ended
        self._running = False
        self._loop_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._latest: dict[int, TranscriptUpdate] = {}  # each segment as last sent, for a resumed client
        self._backlog = False  # a takeover's first step drafts what came since the committed text
        self._seal_at: int | None = None  # where the client left: commit what is open before it
        self._afresh = False  # the returning client sends a new capture: hear it on its own

    @property
    def transcript(self) -> list[Segment]:
        """The final transcript once `finish` returned: the full-context pass's text where it read the
        audio, the committed segments elsewhere."""
        return self._full_pass.transcript(self._transcriber.committed)

    @property
    def processed_seconds(self) -> float:
        """Seconds of audio the live steps have looked at (for the load meter)."""
        return self._transcriber.processed_samples / SAMPLE_RATE

    @property
    def lag_seconds(self) -> float:
        """Seconds of audio received but not yet looked at, for a client sending at real-time pace (a burst,
        a resumed client catching up, leaves a backlog that says nothing about the box keeping up: 0)."""
        if self._started_at is None:
            return 0.0
        received = self._buffer.samples / SAMPLE_RATE
        if received > time.monotonic() - self._started_at + _PACE_SLACK:
            return 0.0
        return (self._buffer.samples - self._transcriber.processed_samples) / SAMPLE_RATE

    def _may_draft(self) -> bool:
        """Whether this step may draft: the load meter's draft interval has passed since the last draft."""
        if self._load is None:
            return True
        interval = max(self._interval, int(self._load.draft_interval * SAMPLE_RATE))
        return self._buffer.samples - self._drafted_at >= interval

    def resume_after(self, committed: list[Segment], next_id: int) -> None:
        """Start after a transcript committed elsewhere (a takeover); call before `start`. The first
        step drafts the audio received since then at once, at the priority of committed text."""
        self._transcriber.resume_after(committed, next_id)
        self._full_pass.start_after(committed)
        self._backlog = True

    def start(self) -> None:
        self._running = True
        self._started_at = time.monotonic()
        if self._load is not None:
            self._load.live.track(self)
        self._loop_task = asyncio.create_task(self._loop(), name=f"pump-{self._session_id}")

    def listen(self, emit: Emit) -> list[TranscriptUpdate]:
        """Send later updates to `emit` (a resumed client); returns every segment as last sent."""
        self._emit = emit
        return [self._latest[segment_id] for segment_id in sorted(self._latest)]

    def notify(self) -> None:
        """New audio is in the buffer."""
        self._audio_arrived.set()

    def seal(self) -> None:
        """The client left: commit what is open now, so audio a returning client sends (perhaps not
        continuing this: a reloaded page) is never heard in one careful window with what came before."""
        self._seal_at = self._buffer.samples
        self._audio_arrived.set()

    def hear_afresh(self) -> None:
        """The client that came back sends a new capture (a reloaded page), not the rest of what it sent
        before it left: what follows the seal is heard on its own (`LiveTranscriber.hear_afresh`)."""
        self._afresh = True
        self._full_pass.cut(self._buffer.samples)
        self._audio_arrived.set()

    def stop(self) -> None:
        """No more drafts: the recording stopped. The step in flight goes on (see `settle`)."""
        self._running = False
        self._untrack()
        self._audio_arrived.set()

    async def settle(self) -> None:
        """Wait for the step and the careful pass in flight (they never raise)."""
        if self._loop_task is not None:
            await self._loop_task  # its last step may have started a careful pass: read that after
        if self._commit_task is not None:
            await self._commit_task

    async def finish(self) -> None:
        """Read the rest of the final, then commit what is still open from its words, or with a careful pass
        if that reading failed or was skipped (after `stop()` and `settle()`).

        Raises:
            MeetingAssistantError: the recogniser or the audio buffer failed (the live tail).
        """
        await self._seal()
        await self._advance(self._transcriber.hear_to)  # the full-context pass reads no silence
        if not await self._full_pass.finish():
            await self._advance(self._transcriber.finish)
        elif self._started_at is not None:  # someone watches (not an upload): the tail from the words read
            await self._advance(functools.partial(self._transcriber.finish, self.transcript))

    def cancel(self) -> None:
        """Abandon the work in flight (the session ends without a final)."""
        self._running = False
        self._untrack()
        self._full_pass.cancel()
        for task in (self._loop_task, self._commit_task):
            if task is not None:
                task.cancel()

    def _untrack(self) -> None:
        if self._load is not None:
            self._load.live.untrack(self)

    async def _loop(self) -> None:
        while self._running:
            await self._audio_arrived.wait()
            self._audio_arrived.clear()
            await self._seal()  # even when stopped meanwhile (a client back at once): before the stop's commit
            if not self._running or self._buffer.samples - self._transcriber.processed_samples < self._interval:
                continue
            try:
                self._metrics.jobs_total.labels(stage="asr_live").inc()
                if self._backlog:
                    self._backlog = False
                    await self._advance(self._transcriber.draft_backlog)
                if self._may_draft():
                    self._drafted_at = self._buffer.samples
                    await self._draft_step()
                else:  # thinned: freeze and stage careful passes on time, without the draft (cheap)
                    await self._advance(functools.partial(self._transcriber.step, draft=False))
                self._start_commit()
                self._full_pass.poke()
                if self._speakers is not None:
                    self._speakers.catch_up(self._buffer)
            except Exception:  # a failed draft must not end the recording; the tail commit retries the audio
                logger.exception("live transcription step failed (session %s)", self._session_id)
                self._metrics.job_failures.labels(stage="asr_live").inc()
                await asyncio.sleep(self._interval / SAMPLE_RATE)

    async def _seal(self) -> None:
        """The client's leaving, then its coming back with a new capture, in that order (both before the
        audio it sends next is looked at)."""
        if (at := self._seal_at) is not None:
            self._seal_at = None
            if self._commit_task is not None:
                await self._commit_task  # never raises
            try:
                await self._advance(functools.partial(self._transcriber.seal, at))
            except Exception:  # the stop commits what is still open
                logger.exception("committing at the client's leaving failed (session %s)", self._session_id)
                self._metrics.job_failures.labels(stage="asr_live").inc()
        if self._afresh:
            self._afresh = False
            await self._advance(self._transcriber.hear_afresh)  # sets a flag: cannot fail

    async def _draft_step(self) -> None:
        """A step that may stage a draft; the draft decoded (with other sessions' drafts) and shown."""
        await self._advance(self._transcriber.step, self._run_draft)
        job = self._transcriber.take_draft()
        if job is not None:
            text = await self._decode_draft(job.request)
            await self._advance(functools.partial(self._transcriber.apply_draft, job, text))

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

    def _locked(self, step: Step) -> list[TranscriptUpdate]:
        with self._state:
            return step()

    async def _advance(self, step: Step, run: ModelRunner | None = None) -> None:
        updates = await (run or self._run_model)(self._locked, step)
        async with self._emitting:
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
            segment.speaker = await self._speakers.label_in(self._buffer, segment.start, segment.end)
        except Exception:  # a live label is a nicety: the final pass labels every segment again
            logger.warning("live speaker label failed (session %s)", self._session_id, exc_info=True)

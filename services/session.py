"""One recording session over one WebSocket: the protocol, the state machine, the live pump.

States and legal transitions (anything else is a `SessionStateError` sent as an `error`):

    CONNECTED --start/audio--> RECORDING --stop/limit/disconnect--> FINISHING --final--> DONE
    CONNECTED --stop/disconnect--> FINISHING

Policies (see README "Session lifecycle"):
- audio before `start` is allowed (16 kHz defaults apply); a second `start`, audio after `stop`
  and a second `stop` get an `error` and change nothing; exactly one `final` per session;
- a client that disconnects (or is closed for a protocol or size violation) before `stop` is
  treated as having pressed stop: the recording is finished in the background, so its
  transcript, summary and audit-log line are not lost; nothing is sent to the closed socket;
- a session that reaches MAX_SESSION_SECONDS of audio is stopped by the server, which says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.audio_intake import FrameRateLimiter, PcmDecoder
from services.errors import MeetingAssistantError, ProtocolError, SessionStateError
from services.live_transcriber import CommitJob, LiveTranscriber, TranscriptUpdate
from services.outbox import Outbox
from services.pipeline import MeetingPipeline
from services.protocol import StartMessage, error_message, parse_client_text, partial_message, status_message
from services.types import SAMPLE_RATE, Segment

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class SessionState(Enum):
    CONNECTED = "connected"
    RECORDING = "recording"
    FINISHING = "finishing"
    DONE = "done"


_TRANSITIONS = {
    SessionState.CONNECTED: {SessionState.RECORDING, SessionState.FINISHING},
    SessionState.RECORDING: {SessionState.FINISHING},
    SessionState.FINISHING: {SessionState.DONE},
    SessionState.DONE: set(),
}


@dataclass(frozen=True, slots=True)
class SessionLimits:
    partial_interval: float
    max_session_seconds: float
    max_message_bytes: int
    max_violations: int
    max_frames_per_second: float


class RecordingSession:
    """Drives one WebSocket from accept to close. Call `run()` once, after `accept()`."""

    def __init__(
        self,
        websocket: WebSocket,
        session_id: str,
        pipeline: MeetingPipeline,
        limits: SessionLimits,
    ) -> None:
        self.id = session_id
        self._ws = websocket
        self._pipeline = pipeline
        self._limits = limits
        self._metrics = pipeline.metrics
        self.state = SessionState.CONNECTED
        self._buffer = pipeline.new_buffer()
        self._transcriber: LiveTranscriber = pipeline.new_transcriber(self._buffer)
        self._speakers = pipeline.new_session_speakers(session_id)
        self._outbox = Outbox(on_drop=self._metrics.partials_dropped.inc)
        self._decoder = PcmDecoder(SAMPLE_RATE)
        self._title: str | None = None
        self._started_at = time.time()
        self._violations = 0
        self._rate_limiter = FrameRateLimiter(limits.max_frames_per_second)
        self._rate_warned_at = 0.0
        self._audio_arrived = asyncio.Event()
        self._advance_lock = asyncio.Lock()
        self._pump_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._stopped_at = 0.0
        self._close_code: int | None = None
        self.client_gone = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until the final is sent or the client goes; never raises."""
        sender = asyncio.create_task(self._send_loop(), name=f"send-{self.id}")
        self._pump_task = asyncio.create_task(self._pump(), name=f"pump-{self.id}")
        self._outbox.put(status_message("recording", self.id, 'Connected: send audio, then {"type": "stop"}.'))
        try:
            await self._receive_loop()
        finally:
            await self._close(sender)

    async def _receive_loop(self) -> None:
        done = asyncio.create_task(self._done.wait())
        try:
            while True:
                receive = asyncio.create_task(self._ws.receive())
                await asyncio.wait({receive, done}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    await _cancel(receive)
                    return
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    self.client_gone = True
                    return
                if not await self._dispatch(message):
                    return
        finally:
            await _cancel(done)

    async def _close(self, sender: asyncio.Task[None]) -> None:
        """Leave the socket per the session policy (module docstring)."""
        if self.state in (SessionState.CONNECTED, SessionState.RECORDING):
            self._stop("the connection closed before stop" if self._close_code is None else "closed by the server")
        if not self.client_gone and self._close_code is not None:
            with contextlib.suppress(TimeoutError):  # let the client read why it is being closed
                await asyncio.wait_for(self._outbox.drained(), 1.0)
        elif not self.client_gone:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sender), timeout=5.0)
        await _cancel(sender)
        if not self.client_gone:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self._ws.close(self._close_code or CLOSE_NORMAL)
        self.client_gone = True
        if self.state is not SessionState.DONE:
            self._outbox.close()  # the background job finishes; nobody is left to read its messages

    async def _dispatch(self, message: Mapping[str, Any]) -> bool:
        """Handle one frame; False when the socket must close."""
        try:
            if message.get("bytes") is not None:
                await self._throttle()
                return self._on_audio(message["bytes"])
            self._on_text(message.get("text") or "")
        except ProtocolError as exc:
            return self._violation(exc)
        return True

    # --- client frames ------------------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        parsed = parse_client_text(text)
        if isinstance(parsed, StartMessage):
            self._on_start(parsed)
        else:
            self._on_stop()

    def _on_start(self, start: StartMessage) -> None:
        if self.state is not SessionState.CONNECTED:
            raise SessionStateError(
                "already_started", "The session has already started; 'start' is only allowed before any audio."
            )
        self._decoder = PcmDecoder(start.sample_rate)
        self._title = start.title
        self._transition(SessionState.RECORDING)

    def _on_stop(self) -> None:
        if self.state in (SessionState.FINISHING, SessionState.DONE):
            raise SessionStateError("already_stopped", "The session is already finishing; the final message follows.")
        self._stop("stop received")

    def _on_audio(self, data: bytes) -> bool:
        if len(data) > self._limits.max_message_bytes:
            self._metrics.protocol_errors.labels(code="frame_too_big").inc()
            self._close_code = CLOSE_TOO_BIG
            return False
        if not data:
            return True
        if self.state in (SessionState.FINISHING, SessionState.DONE):
            raise SessionStateError(
                "audio_after_stop", "Audio after 'stop' is ignored: start a new session to record more."
            )
        if self.state is SessionState.CONNECTED:
            self._transition(SessionState.RECORDING)
        limit = int(self._limits.max_session_seconds * SAMPLE_RATE)
        self._buffer.append(self._decoder.decode(data)[: limit - self._buffer.samples])
        self._audio_arrived.set()
        if self._buffer.samples >= limit:
            self._outbox.put(
                status_message(
                    "recording",
                    self.id,
                    f"The maximum session length ({self._limits.max_session_seconds:.0f} s) was reached: "
                    "finishing the recording.",
                )
            )
            self._stop("maximum session length reached")
        return True

    async def _throttle(self) -> None:
        """Slow a flooding client down instead of dropping its audio.

        While this session waits, its frames stay in the socket and TCP flow control pushes back
        on the client; other sessions are not affected. The client is told once a second.
        """
        delay = self._rate_limiter.reserve()
        if delay <= 0:
            return
        now = time.monotonic()
        if now - self._rate_warned_at >= 1.0:
            self._rate_warned_at = now
            self._metrics.protocol_errors.labels(code="rate_limited").inc()
            self._outbox.put(
                error_message(
                    "rate_limited",
                    f"More than {self._limits.max_frames_per_second:.0f} audio frames per second: reading is slowed "
                    "down. Send 20-100 ms of audio per frame.",
                )
            )
        await asyncio.sleep(delay)

    def _violation(self, error: ProtocolError) -> bool:
        self._violations += 1
        self._metrics.protocol_errors.labels(code=error.code).inc()
        self._outbox.put(error_message(error.code, error.message))
        if self._violations >= self._limits.max_violations:
            self._outbox.put(error_message("too_many_errors", "Too many invalid messages: closing the connection."))
            self._close_code = CLOSE_POLICY
            return False
        return True

    def _transition(self, target: SessionState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise SessionStateError("invalid_state", f"Cannot go from {self.state.value} to {target.value}.")
        self.state = target

    # --- live transcription -------------------------------------------------------------------

    async def _pump(self) -> None:
        """Draft live text whenever enough new audio has arrived; start the careful passes it schedules."""
        interval = int(self._limits.partial_interval * SAMPLE_RATE)
        while self.state in (SessionState.CONNECTED, SessionState.RECORDING):
            await self._audio_arrived.wait()
            self._audio_arrived.clear()
            if self._buffer.samples - self._transcriber.processed_samples < interval:
                continue
            try:
                await self._advance(self._transcriber.advance)
                self._start_commit()
                if self._speakers is not None:
                    self._speakers.catch_up(self._buffer)
            except Exception:  # a failed draft must not end the recording; the final pass retries the audio
                logger.exception("live transcription step failed (session %s)", self.id)
                self._metrics.job_failures.labels(stage="asr_live").inc()
                await asyncio.sleep(self._limits.partial_interval)

    def _start_commit(self) -> None:
        """Run the careful pass the transcriber scheduled beside the drafts, which go on meanwhile."""
        if self._commit_task is not None and not self._commit_task.done():
            return
        job = self._transcriber.take_commit()
        if job is not None:
            self._commit_task = asyncio.create_task(self._commit(job), name=f"commit-{self.id}")

    async def _commit(self, job: CommitJob) -> None:
        segments: list[Segment] | None
        try:
            segments = await self._pipeline.run_model(self._transcriber.transcribe_commit, job)
        except Exception:  # the drafts shown stand in for the careful text: nothing said is lost
            logger.exception("careful transcription failed (session %s); keeping the drafts", self.id)
            self._metrics.job_failures.labels(stage="asr_live").inc()
            segments = None
        try:
            await self._advance(functools.partial(self._transcriber.apply_commit, job, segments))
        except Exception:  # never raises: _finish awaits this task
            logger.exception("committing a careful pass failed (session %s)", self.id)
            self._metrics.job_failures.labels(stage="asr_live").inc()

    async def _advance(self, step: Any) -> None:
        async with self._advance_lock:
            updates: list[TranscriptUpdate] = await self._pipeline.run_model(step)
            for update in updates:
                await self._label_live(update)
                lag = (self._buffer.samples - self._transcriber.processed_samples) / SAMPLE_RATE
                self._metrics.processing_lag.observe(lag)
                self._outbox.put(partial_message(update, lag))

    async def _label_live(self, update: TranscriptUpdate) -> None:
        segment = update.segment
        if self._speakers is None or not update.committed or not segment.text:
            return
        try:
            # decrypting up to a window of audio is model-sized work: off the event loop
            audio = await self._pipeline.run_model(
                self._buffer.read, int(segment.start * SAMPLE_RATE), int(segment.end * SAMPLE_RATE)
            )
            segment.speaker = await self._speakers.label(audio, segment.start, segment.end)
        except Exception:  # a live label is a nicety: the final pass labels every segment again
            logger.warning("live speaker label failed (session %s)", self.id, exc_info=True)

    # --- finishing ----------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        self._transition(SessionState.FINISHING)
        self._stopped_at = time.perf_counter()
        self._buffer.append(self._decoder.flush())
        self._audio_arrived.set()  # wake the pump so it sees the state and exits
        if self.client_gone and self._buffer.samples == 0:
            self._end()  # nothing was recorded and nobody is listening
            return
        logger.info("session %s stopping: %s (%.1f s of audio)", self.id, reason, self._buffer.samples / SAMPLE_RATE)
        self._outbox.put(status_message("queued", self.id, "Recording stopped: waiting for a free worker."))
        try:
            self._pipeline.submit(self.id, self._finish)
        except RuntimeError as exc:  # the server is shutting down and takes no new jobs
            logger.error("session %s could not be finished: %s", self.id, exc)
            self._outbox.put(
                error_message("shutting_down", "The server is restarting: this recording could not be finished.")
            )
            self._end()

    def _end(self) -> None:
        if self._commit_task is not None:
            self._commit_task.cancel()  # only still running when the session ends without finishing
        if self._speakers is not None:
            self._speakers.close()
        self._buffer.clear()
        self.state = SessionState.DONE
        self._outbox.close()
        self._done.set()

    async def _finish(self) -> None:
        self._outbox.put(status_message("transcribing", self.id, "Finishing the transcript."))
        if self._pump_task is not None:
            await self._pump_task  # let an in-flight live step finish: it shares the transcriber
        if self._commit_task is not None:
            await self._commit_task  # and the careful pass in flight (it never raises)
        speaker_turns = self._pipeline.start_diarization(self._speakers, self._buffer)
        errors: list[str] = []
        try:
            try:
                await self._advance(self._transcriber.finish)
            except MeetingAssistantError as exc:
                logger.warning("finishing the transcript failed (session %s): %s", self.id, exc)
                self._metrics.job_failures.labels(stage="asr_final").inc()
                errors.append(str(exc))
                self._outbox.put(error_message("transcription_failed", str(exc)))
            final = await self._pipeline.finish_meeting(
                session_id=self.id,
                title=self._title,
                started_at=self._started_at,
                buffer=self._buffer,
                segments=self._transcriber.committed,
                speaker_turns=speaker_turns,
                errors=errors,
                report=lambda status, text: self._outbox.put(status_message(status, self.id, text)),
            )
            final["metrics"]["stop_to_final_seconds"] = round(time.perf_counter() - self._stopped_at, 3)
            self._metrics.end_to_end_latency.observe(time.perf_counter() - self._stopped_at)
            self._outbox.put(status_message("done", self.id, "Done: the transcript and summary follow."))
            self._outbox.put(final)  # the terminal message
        finally:
            if speaker_turns is not None:
                await _cancel(speaker_turns)  # unused when there was no speech
            self._end()

    async def _send_loop(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                await self._ws.send_json(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.client_gone = True
                return


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task

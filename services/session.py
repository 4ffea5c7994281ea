"""One recording session over one WebSocket: the socket, the protocol and the frames.

Its states and their transitions are in `session_state.py`; the policies behind them in the
README ("Session lifecycle policy"). The live work is the pump's (`live_pump.py`), the after-stop
job the pipeline's (`pipeline.py`), a dropped socket's recording waits in `resume.py`, the
frame limits are the guard's (`client_guard.py`): this module only sends what they make.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette import status
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.admission import Busy, SessionLimits
from services.audio_intake import PcmDecoder
from services.client_guard import ClientGuard
from services.errors import ProtocolError, SessionStateError
from services.outbox import Outbox
from services.pipeline import MeetingPipeline
from services.protocol import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    StartMessage,
    notice,
    parse_client_text,
    partial_message,
    resumed_message,
    server_error,
)
from services.recording import FinishedRecording
from services.resume import ParkedRecording, ResumeRegistry
from services.session_state import LIVE, SessionState, check_transition
from services.tasks import cancel_and_wait
from services.types import SAMPLE_RATE, TranscriptUpdate
from services.ws_protocol import peer_gone

logger = logging.getLogger(__name__)


class RecordingSession:
    """Drives one WebSocket from accept to close. Call `run()` once, after `accept()`."""

    def __init__(
        self,
        websocket: WebSocket,
        session_id: str,
        pipeline: MeetingPipeline,
        limits: SessionLimits,
        resumes: ResumeRegistry | None = None,
        *,
        resume_only: Busy | None = None,
    ) -> None:
        self.id = session_id
        self._resume_only = resume_only  # admitted past the limit: refused so unless it resumes a parked recording
        self._resumes = resumes if resumes is not None else ResumeRegistry(0.0, lambda parked: None)  # none parked
        self.state = SessionState.CONNECTED
        self._ws = websocket
        self._pipeline = pipeline
        self._limits = limits
        self._metrics = pipeline.metrics
        self._outbox = Outbox(on_drop=self._metrics.partials_dropped.inc)
        self._parts = pipeline.open_session(session_id, self._emit)
        self._decoder = PcmDecoder(SAMPLE_RATE)
        self._title: str | None = None
        self._started_at = time.time()
        self._guard = ClientGuard(limits, self._metrics, self._outbox)
        self._opened_at = self._last_audio_at = time.monotonic()
        self._done = asyncio.Event()

    async def run(self) -> None:
        """Serve the socket until the final is sent or the client goes; never raises."""
        sender = asyncio.create_task(self._outbox.send_to(self._ws), name=f"send-{self.id}")
        self._parts.pump.start()
        self._resumes.attach(self.id, self._taken_over)
        self._outbox.put(notice("connected", self.id))
        close_code: int | None = status.WS_1011_INTERNAL_ERROR
        try:
            close_code = await self._receive_loop()
        finally:
            await self._leave(close_code, sender)
            if self.state is SessionState.DONE and self._parts.listed is not None:
                # Unfinished (the server is shutting down): let its row be written before the store closes.
                await asyncio.wait({self._parts.listed})

    # --- the socket ---------------------------------------------------------------------------

    async def _receive_loop(self) -> int | None:
        """Read frames until the final is queued (1000), the server closes (1008, 1009) or the client leaves (None)."""
        done = asyncio.create_task(self._done.wait())
        try:
            while True:
                receive = asyncio.create_task(self._ws.receive())
                await asyncio.wait({receive, done}, timeout=self._patience(), return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    await cancel_and_wait(receive)
                    if done.done():
                        return CLOSE_NORMAL
                    if (close_code := self._on_silence()) is not None:
                        return close_code
                    continue
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    return None
                if (close_code := await self._dispatch(message)) is not None:
                    return close_code
        finally:
            await cancel_and_wait(done)

    def _patience(self) -> float | None:
        """Seconds the socket may stay silent from now: the handshake, then the idle limit."""
        if self.state is SessionState.CONNECTED:
            return max(0.0, self._opened_at + self._limits.handshake_timeout - time.monotonic())
        if self.state is SessionState.RECORDING:
            return max(0.0, self._last_audio_at + self._limits.idle_timeout - time.monotonic())
        return None

    def _on_silence(self) -> int | None:
        """The client sent nothing for too long: close a silent socket, finish an idle recording."""
        if self.state is SessionState.CONNECTED:
            self._guard.tell("handshake_timeout", seconds=self._limits.handshake_timeout)
            return CLOSE_POLICY
        if self.state is SessionState.RECORDING:
            self._outbox.put(notice("idle", self.id, seconds=self._limits.idle_timeout))
            self._stop("idle")
        return None

    async def _leave(self, close_code: int | None, sender: asyncio.Task[None]) -> None:
        """Leave the socket per the session policy (module docstring)."""
        if self.state in LIVE:
            if self._parts.buffer.samples == 0 and close_code != CLOSE_NORMAL:
                self._transition(SessionState.DETACHED)
                self._end()  # closed before any audio: there is nothing to finish
            else:
                self._let_go(resumable=close_code is None)
        if self.state is SessionState.FINISHING and close_code != CLOSE_NORMAL:
            self._transition(SessionState.DETACHED)
            self._parts.detach()
        if close_code is not None:
            with contextlib.suppress(TimeoutError):
                if close_code == CLOSE_NORMAL:  # the final is queued: let the client read it
                    await asyncio.wait_for(asyncio.shield(sender), timeout=5.0)
                else:  # let the client read why it is being closed
                    await asyncio.wait_for(self._outbox.drained(), 1.0)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self._ws.close(close_code)
        await cancel_and_wait(sender)
        self._outbox.close()  # a detached meeting is finished in the background; nobody reads its messages

    def _emit(self, update: TranscriptUpdate, lag: float) -> None:
        self._outbox.put(partial_message(update, lag))

    # --- client frames ------------------------------------------------------------------------

    async def _dispatch(self, message: Mapping[str, Any]) -> int | None:
        """Handle one frame; a close code when the socket must close."""
        try:
            if (busy := self._resume_only) is not None:
                return await self._resume_or_refuse(message, busy)
            if message.get("bytes") is not None:
                await self._guard.pace(peer_gone(self._ws.scope))
                return self._on_audio(message["bytes"])
            if isinstance(parsed := parse_client_text(message.get("text") or ""), StartMessage):
                await self._on_start(parsed)
            else:
                self._on_stop()
        except ProtocolError as exc:
            return self._guard.violation(exc)
        return None

    async def _resume_or_refuse(self, message: Mapping[str, Any], busy: Busy) -> int | None:
        """Admitted past the limit as a recording waits here for its client: this socket must be that client,
        resuming it. Anything else gets `busy` and close 1013, before any audio is taken."""
        self._resume_only = None
        with contextlib.suppress(ProtocolError):  # not even a start: refused as busy all the same
            start = parse_client_text(message.get("text") or "")
            if isinstance(start, StartMessage) and start.resume is not None and self._resumes.holds(start.resume):
                await self._on_start(start)
                return None
        return self._guard.refuse(busy)

    async def _on_start(self, start: StartMessage) -> None:
        if self.state is not SessionState.CONNECTED:
            raise SessionStateError(
                "already_started", "The session has already started; 'start' is only allowed before any audio."
            )
        if start.resume is not None:
            await self._resume(start.resume, new_capture=start.new_capture)
        else:
            self._title = start.title
        self._decoder = PcmDecoder(start.sample_rate)
        self._transition(SessionState.RECORDING)

    async def _resume(self, session_id: str, *, new_capture: bool) -> None:
        """Carry on with a parked recording: its audio, transcript and speakers become this session's.
        `new_capture`: what the client sends next does not continue what it sent (`StartMessage`)."""
        parked = await self._resumes.claim_anywhere(session_id)
        if parked is None:
            raise ProtocolError("unknown_session", server_error("unknown_session", session_id=session_id)["message"])
        self._parts.close()  # the fresh parts this socket started with
        self._resumes.detach(self.id, self._taken_over)
        self.id, self._title, self._started_at, self._parts = session_id, parked.title, parked.started_at, parked.parts
        self._parts.attach(new_capture=new_capture)
        self._resumes.attach(self.id, self._taken_over)
        received = self._parts.buffer.samples / SAMPLE_RATE
        self._outbox.put(resumed_message(self.id, received))
        for update in self._parts.pump.listen(self._emit):  # what the client may have missed
            self._emit(update, 0.0)
        logger.info("session %s resumed at %.1f s of audio", self.id, received)

    def _on_stop(self) -> None:
        if self.state not in LIVE:
            raise SessionStateError("already_stopped", "The session is already finishing; the final message follows.")
        self._stop("stop received")

    def _on_audio(self, data: bytes) -> int | None:
        if (close_code := self._guard.oversized(data)) is not None:
            return close_code
        if not data:
            return None
        if self.state not in LIVE:
            self._guard.late_audio()
            return None
        if self.state is SessionState.CONNECTED:
            self._transition(SessionState.RECORDING)
        self._last_audio_at = time.monotonic()
        buffer = self._parts.buffer
        if buffer.samples == 0 and self._parts.listed is None:  # the meeting is stored from its first audio
            self._pipeline.list_meeting(self._parts, self.id, self._title, self._started_at)
        limit = int(self._limits.max_session_seconds * SAMPLE_RATE)
        buffer.append(self._decoder.decode(data)[: limit - buffer.samples])
        self._parts.pump.notify()
        if buffer.samples >= limit:
            self._outbox.put(notice("max_length", self.id, seconds=self._limits.max_session_seconds))
            self._stop("maximum session length reached")
        return None

    def _transition(self, target: SessionState) -> None:
        self.state = check_transition(self.state, target)

    # --- finishing ----------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        """The recording is over: hand it to the pipeline, which finishes it in the job queue."""
        self._transition(SessionState.FINISHING)
        stopped_at = time.perf_counter()
        self._parts.buffer.append(self._decoder.flush())
        self._parts.pump.stop()
        seconds = self._parts.buffer.samples / SAMPLE_RATE
        logger.info("session %s stopping: %s (%.1f s of audio)", self.id, reason, seconds)
        self._outbox.put(notice("queued", self.id))
        recording = FinishedRecording(self.id, self._title, self._started_at, stopped_at, self._parts)
        try:
            self._pipeline.submit(self.id, lambda: self._finish(recording))
        except RuntimeError as exc:  # the server is shutting down and takes no new jobs
            logger.error("session %s could not be finished: %s", self.id, exc)
            self._outbox.put(server_error("shutting_down"))
            self._end()

    async def _finish(self, recording: FinishedRecording) -> None:
        try:
            self._outbox.put(await self._pipeline.finish(recording, self._outbox.put))
        finally:
            self._end()

    def _let_go(self, *, resumable: bool) -> None:
        """Nobody reads this socket any more: park the recording for its client to resume
        (`resume.py`), or have the pipeline finish it unheard, behind live meetings."""
        self._transition(SessionState.DETACHED)
        self._parts.buffer.append(self._decoder.flush())
        self._parts.detach()
        if resumable and self._resumes.grace_seconds > 0:
            self._parts.pump.seal()
            self._resumes.park(ParkedRecording(self.id, self._title, self._started_at, self._parts))
        else:
            self._parts.pump.stop()
            seconds = self._parts.buffer.samples / SAMPLE_RATE
            logger.info("session %s stopping: the client is gone (%.1f s of audio)", self.id, seconds)
            self._pipeline.finish_unheard(self.id, self._title, self._started_at, self._parts)
        self._end(close_parts=False)  # the recording is the registry's or the pipeline's now

    def _taken_over(self) -> None:
        """A new socket resumes this recording before this one noticed its client is gone."""
        if self.state in LIVE:
            self._let_go(resumable=True)

    def _end(self, *, close_parts: bool = True) -> None:
        self._resumes.detach(self.id, self._taken_over)
        if close_parts:
            self._parts.close()
        self._transition(SessionState.DONE)
        self._outbox.close()
        self._done.set()

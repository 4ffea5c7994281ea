"""POST /api/meetings: upload a recording, answered 202 at once, finished by the live sessions' pipeline.

    POST /api/meetings   multipart/form-data: file (WAV, MP3, M4A, OGG, WebM, FLAC...), title?, language?
        202 {"id", "status": "queued"} + Location: /api/meetings/{id}; poll that (queued ->
            processing -> done | failed)
        400 no file field · 413 over MAX_UPLOAD_MB · 415 not audio · 503 not ready, store down, or
        MAX_BACKGROUND_AUDIO_SECONDS of background audio already waiting (with Retry-After)

An accepted upload is a session nobody watches: `pipeline.open_session`, detached at once (its
model work runs behind live meetings), its audio decoded into the session's sealed buffer, then
`pipeline.finish` as a background job, so transcript, speakers, summary, hooks and the store come
from exactly the code that finishes a live meeting. Decoding starts right after the 202 on the
inference threads at background priority; the spooled upload is closed (deleted) as soon as it is
decoded, so the recording is only held sealed, like live audio.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from observability import Metrics
from services.audio_buffer import SecureAudioBuffer
from services.audio_decode import DecodedAudio, decode_pcm16
from services.errors import BacklogFullError, NotAudioError, StoreError, UploadError
from services.meeting_store import MeetingStore, record_final, record_status
from services.meetings_api import require_api_key
from services.orchestrator import ModelRunner, Urgency
from services.pipeline import MeetingPipeline
from services.recording import FinishedRecording, SessionParts
from services.stored_meeting import MeetingSource, MeetingStatus
from services.types import TranscriptUpdate
from services.upload_form import UploadForm, UploadRefused, ready_services, receive_recording

logger = logging.getLogger(__name__)

router = APIRouter(tags=["meetings"], dependencies=[Depends(require_api_key)])
_decoding: set[asyncio.Task[None]] = set()


@router.post("/api/meetings", status_code=202)
async def upload_meeting(request: Request) -> JSONResponse:
    state = request.app.state.app_state
    try:
        services = ready_services(state)
        form = await receive_recording(request, state.settings, state.metrics)
    except UploadRefused as refusal:
        raise HTTPException(refusal.status_code, refusal.message, headers=refusal.headers) from None
    upload = MeetingUpload(
        meeting_id=uuid.uuid4().hex[:12],
        pipeline=services.pipeline,
        run_model_for=services.orchestrator.runner,
        store=services.store,
        metrics=state.metrics,
        max_seconds=state.settings.max_session_seconds,
    )
    try:
        title = form.text("title") or form.filename
        language = form.text("language", max_length=32)
        await upload.accept(form, title=title, language=language)
    except UploadError as exc:
        await form.aclose()
        state.metrics.uploads.labels(result="rejected_bad_request").inc()
        raise HTTPException(400, str(exc)) from exc
    except (BacklogFullError, StoreError) as exc:
        await form.aclose()
        raise HTTPException(503, str(exc), headers={"Retry-After": "60"}) from exc
    state.metrics.uploads.labels(result="accepted").inc()
    logger.info("upload %s accepted (%s bytes)", upload.meeting_id, form.file.size)
    return JSONResponse(
        {"id": upload.meeting_id, "status": MeetingStatus.QUEUED.value},
        status_code=202,
        headers={"Location": f"/api/meetings/{upload.meeting_id}"},
    )


class MeetingUpload:
    """One accepted upload, from the 202 to its stored meeting."""

    def __init__(
        self,
        *,
        meeting_id: str,
        pipeline: MeetingPipeline,
        run_model_for: Callable[[Urgency], ModelRunner],
        store: MeetingStore,
        metrics: Metrics,
        max_seconds: float,
    ) -> None:
        self.meeting_id = meeting_id
        self._pipeline = pipeline
        self._run_model_for = run_model_for
        self._store = store
        self._metrics = metrics
        self._max_seconds = max_seconds

    async def accept(self, form: UploadForm, *, title: str | None, language: str | None) -> None:
        """List the meeting as queued, queue its job and start decoding.

        Raises:
            StoreError: the meeting could not be listed (nobody could poll it).
            BacklogFullError: the background jobs hold MAX_BACKGROUND_AUDIO_SECONDS already (the listing is removed).
            RuntimeError: the server is shutting down (likewise).
        """
        created_at = time.time()
        parts = self._pipeline.open_session(self.meeting_id, _nobody_listens)
        parts.detach()
        self._pipeline.list_meeting(
            parts, self.meeting_id, title, created_at, source=MeetingSource.UPLOAD, language=language
        )
        if parts.listed is None or not await parts.listed:
            parts.close()
            raise StoreError("The meeting store is unavailable: the upload was not taken. Try again shortly.")
        recording = FinishedRecording(
            self.meeting_id, title, created_at, time.perf_counter(), parts, source=MeetingSource.UPLOAD
        )
        decoded: asyncio.Future[DecodedAudio] = asyncio.get_running_loop().create_future()
        try:
            self._pipeline.submit(self.meeting_id, lambda: self._process(recording, decoded), background=True)
        except (BacklogFullError, RuntimeError) as exc:
            parts.close()
            await self._unlist()
            if isinstance(exc, RuntimeError):
                raise BacklogFullError("The server is shutting down: upload the recording again shortly.") from exc
            raise
        # The job cannot start before this coroutine yields; the task below settles `decoded` for it.
        task = asyncio.create_task(self._decode(form, parts, decoded), name=f"decode-{self.meeting_id}")
        _decoding.add(task)  # the loop holds tasks weakly
        task.add_done_callback(_decoding.discard)

    async def _decode(self, form: UploadForm, parts: SessionParts, decoded: asyncio.Future[DecodedAudio]) -> None:
        run_model: ModelRunner = self._run_model_for(parts.urgency)  # background: behind live meetings
        try:
            decoded.set_result(await run_model(_decode_and_delete, form, parts.buffer, self._max_seconds))
            parts.audio_complete()  # the spool now holds the whole upload: a restart can finish it
        except Exception as exc:  # handed to the job, which records why the meeting failed
            decoded.set_exception(exc)

    async def _process(self, recording: FinishedRecording, decoded: asyncio.Future[DecodedAudio]) -> None:
        """The background job: wait for the audio, then finish it like a live meeting."""
        try:
            audio = await decoded
        except Exception as exc:  # not audio after all, damaged, out of memory: this meeting fails, nothing else
            recording.parts.close()
            await self._fail(recording, str(exc) if isinstance(exc, NotAudioError) else f"Decoding failed: {exc}")
            return
        if audio.truncated:
            logger.warning("upload %s: only the first %.0f s are transcribed", self.meeting_id, audio.seconds)
        final = await self._pipeline.finish(recording, lambda message: None)
        try:
            status = (await self._store.get(self.meeting_id)).status
        except StoreError:
            status = MeetingStatus.FAILED if final["errors"] and not final["segments"] else MeetingStatus.DONE
        result = "failed" if status is MeetingStatus.FAILED else "done"
        self._metrics.uploads.labels(result=result).inc()
        logger.info("upload %s %s: %.1f s of audio", self.meeting_id, result, audio.seconds)

    async def _fail(self, recording: FinishedRecording, error: str) -> None:
        logger.warning("upload %s failed: %s", self.meeting_id, error)
        self._metrics.uploads.labels(result="failed").inc()
        await record_status(self._store, self.meeting_id, MeetingStatus.FAILED)
        final = {"session_id": self.meeting_id, "segments": [], "errors": [error], "metrics": {"audio_seconds": 0.0}}
        await record_final(
            self._store,
            final,
            title=recording.title,
            created_at=recording.started_at,
            source=MeetingSource.UPLOAD,
            status=MeetingStatus.FAILED,
        )

    async def _unlist(self) -> None:
        try:
            await self._store.delete(self.meeting_id)
        except StoreError as exc:
            logger.warning("upload %s: refused but still listed: %s", self.meeting_id, exc)


def _decode_and_delete(form: UploadForm, buffer: SecureAudioBuffer, max_seconds: float) -> DecodedAudio:
    """Decode the spooled upload into the sealed buffer, then close (delete) the spool (blocking)."""
    try:
        return decode_pcm16(form.file.file, buffer.append, max_seconds=max_seconds)
    finally:
        form.close()


def _nobody_listens(update: TranscriptUpdate, lag: float) -> None:
    """An upload has no socket: its live updates go nowhere (the pump is never started anyway)."""

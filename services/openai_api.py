"""POST /v1/audio/transcriptions, compatible with OpenAI's, so its SDKs and tools work against this server.

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=API_KEY or "unused")
    client.audio.transcriptions.create(model="whisper-1", file=open("call.mp3", "rb"))

Multipart fields as OpenAI's: `file`, `model` (any name: the server's own ASR model answers),
`language` (echoed; the model's language is used), `prompt` (conditions the decoder),
`response_format` (json, text, srt, vtt, verbose_json), `temperature` (accepted and echoed;
decoding is beam search per ASR_BEAM_SIZE), `timestamp_granularities[]` (segment, word; with
verbose_json). Synchronous like OpenAI's: the answer is the transcript. The careful ASR path
(`recognizer.transcribe`, the one that commits live text) runs on the inference threads at
background priority, so live meetings go first. The result is also stored as a meeting (source
`upload`, no speakers or summary; its id is in the `X-Meeting-Id` header). Errors come in OpenAI's
shape `{"error": {"message", "type", "param", "code"}}`, so the SDK raises its usual exceptions.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.audio_decode import decode_float32
from services.errors import ASRError, NotAudioError, StoreError, UploadError
from services.exports import cue_time
from services.meeting_store import MeetingStore
from services.meetings_api import require_api_key
from services.orchestrator import Urgency
from services.priority_executor import Priority
from services.stored_meeting import FinishedMeeting, MeetingSource, MeetingStatus
from services.types import SAMPLE_RATE, Segment
from services.upload_form import UploadForm, UploadRefused, ready_services, receive_recording

logger = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_api_key)])


@router.post("/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    state = request.app.state.app_state
    try:
        services = ready_services(state)
        form = await receive_recording(request, state.settings, state.metrics)
    except UploadRefused as refusal:
        return openai_error(refusal.status_code, refusal.message, headers=refusal.headers)
    try:
        options = TranscriptionOptions.from_form(form)
    except UploadError as exc:
        await form.aclose()
        state.metrics.uploads.labels(result="rejected_bad_request").inc()
        return openai_error(400, str(exc))
    state.metrics.uploads.labels(result="accepted").inc()
    run_model = services.orchestrator.runner(Urgency(Priority.BACKGROUND))
    started = time.perf_counter()
    try:
        audio = await run_model(_decode_and_delete, form, state.settings.max_session_seconds)
        segments = await run_model(services.recognizer.transcribe, audio, 0.0, options.prompt or "")
    except (NotAudioError, ASRError) as exc:
        state.metrics.uploads.labels(result="failed").inc()
        logger.warning("transcription request failed: %s", exc)
        code = 415 if isinstance(exc, NotAudioError) else 500
        return openai_error(code, str(exc), error_type="invalid_request_error" if code == 415 else "server_error")
    state.metrics.uploads.labels(result="done").inc()
    duration = audio.size / SAMPLE_RATE
    meeting_id = uuid.uuid4().hex[:12]
    await _store(services.store, meeting_id, form.filename, segments, duration, time.perf_counter() - started)
    language = options.language or getattr(services.recognizer, "language", None) or "en"
    response = render(segments, options, duration=duration, language=language)
    response.headers["X-Meeting-Id"] = meeting_id
    return response


class TranscriptionOptions:
    """The form fields besides `file`, checked."""

    def __init__(
        self,
        *,
        response_format: str,
        language: str | None,
        prompt: str | None,
        temperature: float,
        granularities: tuple[str, ...],
    ) -> None:
        self.response_format = response_format
        self.language = language
        self.prompt = prompt
        self.temperature = temperature
        self.granularities = granularities
        """What verbose_json lists: segments (OpenAI's default), words, or both."""

    @classmethod
    def from_form(cls, form: UploadForm) -> TranscriptionOptions:
        """Raises: UploadError naming the field that is wrong."""
        response_format = form.text("response_format", max_length=20) or "json"
        if response_format not in RESPONSE_FORMATS:
            raise UploadError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}.")
        granularities = form.texts("timestamp_granularities[]") or ["segment"]
        if any(g not in GRANULARITIES for g in granularities):
            raise UploadError("timestamp_granularities[] takes 'segment' and/or 'word'.")
        try:
            temperature = float(form.text("temperature", max_length=20) or 0.0)
        except ValueError:
            temperature = math.nan
        if not 0.0 <= temperature <= 1.0:
            raise UploadError("temperature must be a number between 0 and 1.")
        form.text("model", max_length=100)  # any model name is accepted: the server's ASR model answers
        return cls(
            response_format=response_format,
            language=form.text("language", max_length=32),
            prompt=form.text("prompt", max_length=4000),
            temperature=temperature,
            granularities=tuple(granularities),
        )


def render(segments: list[Segment], options: TranscriptionOptions, *, duration: float, language: str) -> Response:
    """The answer in the requested `response_format`, shaped like OpenAI's."""
    spoken = [segment for segment in segments if segment.text.strip()]
    text = " ".join(segment.text.strip() for segment in spoken)
    if options.response_format == "text":
        return PlainTextResponse(text)
    if options.response_format in ("srt", "vtt"):
        return PlainTextResponse(_cues(spoken, vtt=options.response_format == "vtt"))
    if options.response_format == "json":
        return JSONResponse({"text": text, "usage": _usage(duration)})
    body: dict[str, Any] = {"task": "transcribe", "language": language, "duration": round(duration, 3), "text": text}
    if "segment" in options.granularities:
        body["segments"] = [
            {
                "id": index,
                "seek": int(segment.start * 100),  # Whisper's frame offset (10 ms frames) of the segment
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text,
                "tokens": [],
                "temperature": options.temperature,
            }
            for index, segment in enumerate(spoken)
        ]
    if "word" in options.granularities:
        body["words"] = [
            {"word": word.text.strip(), "start": round(word.start, 3), "end": round(word.end, 3)}
            for segment in spoken
            for word in segment.words
        ]
    body["usage"] = _usage(duration)
    return JSONResponse(body)


def _usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(duration)}


def _cues(segments: list[Segment], *, vtt: bool) -> str:
    separator = "." if vtt else ","
    cues = ["WEBVTT\n"] if vtt else []
    for index, segment in enumerate(segments, start=1):
        end = segment.end if segment.end > segment.start else segment.start + 1
        times = f"{cue_time(segment.start, separator)} --> {cue_time(end, separator)}"
        cues.append(f"{index}\n{times}\n{segment.text.strip()}\n")
    return "\n".join(cues)


def openai_error(
    status_code: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape (the SDK reads `error.message`)."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def _decode_and_delete(form: UploadForm, max_seconds: float) -> np.ndarray:
    """The upload as float32 audio; the spooled file is closed (deleted) at once (blocking)."""
    try:
        return decode_float32(form.file.file, max_seconds=max_seconds)
    finally:
        form.close()


async def _store(
    store: MeetingStore, meeting_id: str, filename: str | None, segments: list[Segment], duration: float, seconds: float
) -> None:
    """Keep the transcript as a meeting too (cheap: one row); a store failure is only logged."""
    result = FinishedMeeting(
        duration=duration,
        segments=[segment.to_wire() for segment in segments if segment.text.strip()],
        summary=None,
        provider=None,
        errors=[],
        metrics={
            "audio_seconds": round(duration, 3),
            "segments": len(segments),
            "transcribe_seconds": round(seconds, 3),
        },
    )
    try:
        await store.save_final(
            meeting_id,
            result,
            title=filename,
            created_at=time.time(),
            source=MeetingSource.UPLOAD,
            status=MeetingStatus.DONE,
        )
    except StoreError as exc:
        logger.error("transcription %s could not be stored: %s", meeting_id, exc)

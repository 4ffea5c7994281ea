"""The WebSocket wire format: parsing client text frames, building every server message, close codes.

Pydantic lives here, at the edge; the rest of the code gets typed messages or a `ProtocolError`
whose `code` and `message` go straight into an `error` frame.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette import status

from services.errors import ProtocolError
from services.types import MeetingRecord, TranscriptUpdate

CLOSE_NORMAL = status.WS_1000_NORMAL_CLOSURE
CLOSE_POLICY = status.WS_1008_POLICY_VIOLATION
CLOSE_TOO_BIG = status.WS_1009_MESSAGE_TOO_BIG
CLOSE_TRY_AGAIN_LATER = status.WS_1013_TRY_AGAIN_LATER

MAX_TEXT_FRAME_CHARS = 4096
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000


class StartMessage(BaseModel):
    """`{"type": "start", ...}`: optional, before any audio; every field optional."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["start"]
    sample_rate: int = Field(16_000, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    language: str | None = Field(None, max_length=16)
    title: str | None = Field(None, max_length=300)
    token: str | None = Field(None, max_length=512)
    resume: str | None = Field(None, min_length=1, max_length=64)
    """The `session_id` of a recording whose socket dropped: carry on with it."""
    new_capture: bool = False
    """With `resume`: the audio sent from here on is a new capture (a reloaded page), not the rest of
    what was sent before; the server hears it on its own instead of as the continuation of a phrase."""


class StopMessage(BaseModel):
    """`{"type": "stop"}`: the recording is over."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["stop"]


ClientMessage = StartMessage | StopMessage


def parse_client_text(text: str) -> ClientMessage:
    """Parse one client text frame.

    Raises:
        ProtocolError: too long, not JSON, not an object, an unknown `type`, or bad fields.
    """
    if len(text) > MAX_TEXT_FRAME_CHARS:
        raise ProtocolError("message_too_long", f"Text messages are limited to {MAX_TEXT_FRAME_CHARS} characters.")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"Text frames must be JSON objects ({exc.__class__.__name__}).") from exc
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "Text frames must be JSON objects with a 'type' field.")
    kind = data.get("type")
    model: type[ClientMessage]
    if kind == "start":
        model = StartMessage
    elif kind == "stop":
        model = StopMessage
    else:
        raise ProtocolError(
            "unknown_type",
            f"Unknown message type {str(kind)[:40]!r}: expected 'start' or 'stop' (audio goes in binary frames).",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ProtocolError("invalid_message", f"Bad '{kind}' message: {problems}.") from exc


def status_message(status: str, session_id: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "status", "status": status, "session_id": session_id, "message": message, **extra}


def error_message(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


_NOTICES = {
    "connected": ("recording", 'Connected: send audio, then {{"type": "stop"}}.'),
    "resumed": ("recording", "Resumed: send the audio from {received_seconds:.3f} s on."),
    "max_length": ("recording", "The maximum session length ({seconds:.0f} s) was reached: finishing the recording."),
    "idle": ("recording", "No audio for {seconds:g} s: finishing the recording."),
    "queued": ("queued", "Recording stopped: waiting for a free worker."),
    "transcribing": ("transcribing", "Finishing the transcript."),
    "diarizing": ("diarizing", "Telling the speakers apart."),
    "summarizing": ("summarizing", "Writing the summary."),
    "done": ("done", "Done: the transcript and summary follow."),
}

_ERRORS = {
    "busy": "The server is busy with other meetings (or restarting): try again in a minute.",
    "rate_limited": "More than {rate:.0f} audio frames per second: reading is slowed down. "
    "Send 20-100 ms of audio per frame.",
    "too_many_errors": "Too many invalid messages: closing the connection.",
    "audio_after_stop": "Audio after 'stop' is ignored: start a new session to record more.",
    "handshake_timeout": "Nothing arrived within {seconds:g} s of connecting: closing. "
    "Send 'start' or audio right after connecting.",
    "shutting_down": "The server is restarting: this recording could not be finished.",
    "unknown_session": "There is no recording {session_id!r} to resume (unknown, or already finished): "
    "send 'start' without 'resume' to begin a new one.",
}


def notice(kind: str, session_id: str, **values: Any) -> dict[str, Any]:
    """A `status` message the server sends on its own (`kind` is a key of `_NOTICES`)."""
    status, text = _NOTICES[kind]
    return status_message(status, session_id, text.format(**values))


def server_error(code: str, **values: Any) -> dict[str, Any]:
    """An `error` message for a condition the server detects (`code` is a key of `_ERRORS`)."""
    return error_message(code, _ERRORS[code].format(**values))


def partial_message(update: TranscriptUpdate, lag: float) -> dict[str, Any]:
    segment = update.segment
    return {
        "type": "partial_transcript",
        "segment_id": update.segment_id,
        "text": segment.text,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "committed": update.committed,
        "speaker": segment.speaker,
        "lag": round(lag, 3),
    }


def final_message(record: MeetingRecord, timings: dict[str, float]) -> dict[str, Any]:
    """The terminal `final` message of a session; `timings` are seconds by step name."""
    return {
        "type": "final",
        "session_id": record.session_id,
        "transcript": record.transcript,
        "segments": [segment.to_wire() for segment in record.segments],
        "summary": record.summary.to_wire(),
        "provider": record.provider,
        "errors": record.errors,
        "metrics": {
            "audio_seconds": round(record.duration, 3),
            "segments": len(record.segments),
            "speakers": len({segment.speaker for segment in record.segments if segment.speaker}),
            **{f"{name}_seconds": round(value, 3) for name, value in timings.items()},
        },
    }


def resumed_message(session_id: str, received_seconds: float) -> dict[str, Any]:
    """The answer to a `start` with `resume`: the client sends the audio after `received_seconds`."""
    return notice("resumed", session_id, received_seconds=received_seconds) | {
        "resumed": True,
        "received_seconds": round(received_seconds, 3),
    }

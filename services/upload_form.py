"""Taking an uploaded recording in: a multipart form read within MAX_UPLOAD_MB, checked to be audio.

    receive_recording(request, settings, metrics) -> UploadForm   or UploadRefused(400/413/415)

FastAPI's `UploadFile` parameters read the whole body before the route runs, whatever its size.
Here the body is streamed through Starlette's multipart parser with a byte budget: a declared
`Content-Length` over the limit is refused before a byte is read, and a body that grows past it
(chunked, or a lying header) is cut off there. The file part is spooled (the first MB in memory,
then an unnamed temporary file that no other process can open by name); `UploadForm.close()`
frees it. The callers decode it and close it at once, so the clear recording does not linger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from observability import Metrics
from services.audio_decode import probe_audio
from services.errors import NotAudioError, UploadError, UploadTooLargeError
from services.settings import Settings

logger = logging.getLogger(__name__)

FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the multipart boundaries and the small text fields beside the file."""
MAX_FIELDS = 32


@dataclass(slots=True)
class UploadForm:
    """A parsed upload: the spooled `file` and the text fields (repeated names keep every value)."""

    file: UploadFile
    form: FormData

    @property
    def filename(self) -> str | None:
        return self.file.filename

    def text(self, name: str, *, max_length: int = 500) -> str | None:
        """A text field, stripped; None when absent or blank.

        Raises:
            UploadError: the field is a file, or longer than `max_length`.
        """
        value = self.form.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > max_length:
            raise UploadError(f"The form field {name!r} must be text of at most {max_length} characters.")
        return value.strip() or None

    def texts(self, name: str) -> list[str]:
        """Every value of a repeated text field (`timestamp_granularities[]`)."""
        return [value.strip() for value in self.form.getlist(name) if isinstance(value, str) and value.strip()]

    def close(self) -> None:
        """Free the spooled file (blocking: call it in a worker thread)."""
        for _, value in self.form.multi_items():
            if isinstance(value, UploadFile):
                value.file.close()

    async def aclose(self) -> None:
        """Free the spooled file from the event loop."""
        await self.form.close()


async def read_upload_form(request: Request, *, max_bytes: int) -> UploadForm:
    """Parse a `multipart/form-data` request whose field `file` holds the recording.

    Raises:
        UploadTooLargeError: the file (or the body) is over `max_bytes`; reading stopped there.
        UploadError: not a multipart form, a malformed one, or no `file` field.
    """
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UploadError("Send the recording as multipart/form-data with the file in the field 'file'.")
    budget = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget:
        raise UploadTooLargeError(_too_big(max_bytes))
    parser = MultiPartParser(request.headers, _limited(request.stream(), budget, max_bytes), max_fields=MAX_FIELDS)
    try:
        form = await parser.parse()  # on any error the parser closes the files it spooled
    except MultiPartException as exc:
        raise UploadError(f"The multipart form could not be read: {exc}") from exc
    file = form.get("file")
    upload = UploadForm(file, form) if isinstance(file, UploadFile) else None
    if upload is None:
        await form.close()
        raise UploadError("The form has no file in the field 'file'.")
    if (upload.file.size or 0) > max_bytes:
        await form.close()
        raise UploadTooLargeError(_too_big(max_bytes))
    return upload


async def _limited(stream: AsyncIterator[bytes], budget: int, max_bytes: int) -> AsyncIterator[bytes]:
    """The request body, cut off with `UploadTooLargeError` once it passes `budget` bytes."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > budget:
            raise UploadTooLargeError(_too_big(max_bytes))
        yield chunk


def _too_big(max_bytes: int) -> str:
    return f"The upload is larger than MAX_UPLOAD_MB ({max_bytes / 1_000_000:g} MB): send a smaller file."


class UploadRefused(Exception):
    """An upload the routes answer with an HTTP error (each route in its own error shape)."""

    def __init__(self, status_code: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else None


def ready_services(state: Any) -> Any:
    """The app's `Services` while it takes work (`state` is app.AppState).

    Raises:
        UploadRefused: 503 while the server starts or stops.
    """
    if not state.accepting or state.services is None:
        raise UploadRefused(503, "The server is starting or stopping: try again in a minute.", retry_after=30)
    return state.services


async def receive_recording(request: Request, settings: Settings, metrics: Metrics) -> UploadForm:
    """Read the upload (within MAX_UPLOAD_MB) and check that it is audio; rejections are counted.

    Raises:
        UploadRefused: 413 too big, 415 not audio, 400 not a form with a `file`.
    """
    try:
        form = await read_upload_form(request, max_bytes=int(settings.max_upload_mb * 1_000_000))
    except UploadTooLargeError as exc:
        metrics.uploads.labels(result="rejected_too_big").inc()
        raise UploadRefused(413, str(exc)) from exc
    except UploadError as exc:
        metrics.uploads.labels(result="rejected_bad_request").inc()
        raise UploadRefused(400, str(exc)) from exc
    try:
        await asyncio.to_thread(probe_audio, form.file.file)
    except NotAudioError as exc:
        await form.aclose()
        metrics.uploads.labels(result="rejected_not_audio").inc()
        raise UploadRefused(415, str(exc)) from exc
    return form

"""HTTP routes of the stored meetings: list, get, rename, delete, transcript exports.

    GET    /api/meetings?limit=&before=          newest first, keyset-paged
    GET    /api/meetings/{id}                    the meeting (final's fields + id, title, status, ...)
    GET    /api/meetings/{id}/transcript.{fmt}   txt, md, json, srt, vtt as a download
    PATCH  /api/meetings/{id}                    {"title": ..., "speakers": {"SPEAKER_1": "Alice"}}
    DELETE /api/meetings/{id}                    204 (its spooled audio is deleted too)

The store is the one the app lifespan opened (`app.state.app_state.services.store`). With `API_KEY` set,
every route needs `Authorization: Bearer <API_KEY>` (or `?token=`, as `/ws` accepts, so a plain
download link works); the key is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.errors import MeetingNotFoundError, MeetingRequestError, StoreError
from services.exports import ExportFormat, export_meeting
from services.meeting_store import MeetingStore

logger = logging.getLogger(__name__)

MAX_PAGE = 200
MeetingId = Annotated[str, Path(min_length=1, max_length=64)]


class MeetingPatch(BaseModel):
    """The body of PATCH: a new title and/or names for speaker labels (blank: back to the default)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    speakers: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=100)]] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> MeetingPatch:
        if self.title is None and not self.speakers:
            raise ValueError('send "title" and/or "speakers" ({"SPEAKER_1": "Alice"})')
        return self


def require_api_key(request: Request) -> None:
    """401 unless the request carries the API key (when one is configured)."""
    api_key = request.app.state.app_state.settings.api_key
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
    if not hmac.compare_digest(token.encode(), api_key.get_secret_value().encode()):
        raise HTTPException(
            status_code=401,
            detail="This server needs its API key: send Authorization: Bearer <API_KEY>.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def get_store(request: Request) -> MeetingStore:
    services = request.app.state.app_state.services
    store: MeetingStore | None = services.store if services is not None else None
    if store is None:
        raise HTTPException(status_code=503, detail="The meeting store is not open yet: try again in a moment.")
    return store


Store = Annotated[MeetingStore, Depends(get_store)]


@contextmanager
def _store_errors(meeting_id: str | None = None) -> Iterator[None]:
    """Store errors as HTTP answers: unknown id 404, a bad request 422, a failing database 503."""
    try:
        yield
    except MeetingNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except MeetingRequestError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    except StoreError as exc:
        logger.error("meeting store request failed (meeting %s): %s", meeting_id, exc)
        raise HTTPException(status_code=503, detail="The meeting store is unavailable: try again shortly.") from exc


router = APIRouter(prefix="/api/meetings", tags=["meetings"], dependencies=[Depends(require_api_key)])


@router.get("")
async def list_meetings(
    store: Store,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    with _store_errors():
        page = await store.list_meetings(limit=limit, before=before)
    return JSONResponse(page.to_wire())


@router.get("/{meeting_id}")
async def get_meeting(store: Store, meeting_id: MeetingId) -> JSONResponse:
    with _store_errors(meeting_id):
        meeting = await store.get(meeting_id)
    return JSONResponse(meeting.to_wire())


@router.get("/{meeting_id}/transcript.{fmt}")
async def export_transcript(store: Store, meeting_id: MeetingId, fmt: ExportFormat) -> Response:
    with _store_errors(meeting_id):
        meeting = await store.get(meeting_id)
    export = export_meeting(meeting, fmt)
    return Response(
        export.content, media_type=export.media_type, headers={"Content-Disposition": export.content_disposition}
    )


@router.patch("/{meeting_id}")
async def rename_meeting(store: Store, meeting_id: MeetingId, patch: MeetingPatch) -> JSONResponse:
    with _store_errors(meeting_id):
        meeting = await store.rename(meeting_id, title=patch.title, speakers=patch.speakers)
    return JSONResponse(meeting.to_wire())


@router.delete("/{meeting_id}", status_code=204)
async def delete_meeting(request: Request, store: Store, meeting_id: MeetingId) -> Response:
    with _store_errors(meeting_id):
        if not await store.delete(meeting_id):
            raise MeetingNotFoundError(meeting_id)
    spools = request.app.state.app_state.services.spools
    if spools is not None:  # its audio goes with it
        await asyncio.to_thread(spools.delete, meeting_id)
    return Response(status_code=204)

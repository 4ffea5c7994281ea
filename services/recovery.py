"""Start-up recovery and audio retention: meetings a dead process left unfinished, audio nobody needs.

    AudioUpkeep(...).run()   in the background from the lifespan: recover, then sweep every SWEEP_SECONDS

Recovery: a spool file with no live owner (its `flock` is free) whose meeting is still
`recording`, `queued` or `processing` in the store (or not there at all) belonged to a process
that died. Its audio is rebuilt (`read_spool`) and finished by the same pipeline as a live meeting
(transcript, speakers, summary, hooks), as a background job behind live meetings, and stored as
`recovered`. An upload whose spool never got its COMPLETE record (the process died while decoding
it) is marked `failed`: upload it again. A spool sealed with another key is marked `failed` and
kept; restore the key and restart to recover it. With the default SQLite store, a meeting left
unfinished with no spool at all (the process died before its first second of audio was flushed)
is marked `failed`; with a shared `DATABASE_URL` such rows may be another process's live meetings
and are left alone.

Retention: the spool of a meeting stored finished is deleted at once when `AUDIO_RETENTION_DAYS`
is 0 (`AudioSpool.finished`), otherwise by the sweep once it is that many days old.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from observability import Metrics
from services.errors import BacklogFullError, MeetingNotFoundError, SpoolFormatError, SpoolKeyError, StoreError
from services.meeting_store import MeetingStore, record_final, record_status
from services.pipeline import MeetingPipeline
from services.recording import FinishedRecording
from services.spool import SpoolContents, lock_spool, read_spool
from services.spool_directory import SpoolDirectory
from services.stored_meeting import MeetingSource, MeetingStatus, StoredMeeting
from services.types import SAMPLE_RATE, TranscriptUpdate

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 600.0
UNFINISHED = frozenset({MeetingStatus.RECORDING, MeetingStatus.QUEUED, MeetingStatus.PROCESSING})
UNREADABLE = "Recovery: the audio spool cannot be read"
UPLOAD_CUT = "The server stopped while this upload was being decoded: upload the recording again."
NO_AUDIO = "The server stopped before any of this meeting's audio reached the disk: nothing could be recovered."


class AudioUpkeep:
    """Finishes what a dead process left in the spool, then keeps the spool within its retention."""

    def __init__(
        self,
        *,
        spools: SpoolDirectory,
        store: MeetingStore,
        pipeline: MeetingPipeline,
        metrics: Metrics,
        booted_at: float,
        owns_store: bool,
    ) -> None:
        """`owns_store`: the store is this process's own (SQLite in DATA_DIR), so a row left
        unfinished without a spool cannot belong to anybody else."""
        self._spools = spools
        self._store = store
        self._pipeline = pipeline
        self._metrics = metrics
        self._booted_at = booted_at
        self._owns_store = owns_store

    async def run(self) -> None:
        """Recover, then sweep every SWEEP_SECONDS until cancelled; a store outage only delays it."""
        try:
            await self.recover_all()
        except (StoreError, OSError) as exc:
            logger.error("start-up recovery stopped (the rest waits for the next start): %s", exc)
        while True:
            try:
                await self.sweep()
            except (StoreError, OSError) as exc:
                logger.warning("audio retention sweep failed, tried again later: %s", exc)
            await asyncio.sleep(SWEEP_SECONDS)

    async def recover_all(self) -> int:
        """Finish every meeting a dead process left unfinished, one at a time; how many were recovered."""
        recovered = 0
        spooled: set[str] = set()
        for path in await asyncio.to_thread(self._spools.files):
            spooled.add(path.stem)
            if not self._spools.is_open(path.stem):
                try:
                    recovered += await self._recover(path, path.stem)
                except StoreError as exc:
                    logger.error("recovery of meeting %s postponed to the next start: %s", path.stem, exc)
        if self._owns_store:
            await self._fail_lost(spooled)
        return recovered

    async def sweep(self) -> int:
        """Delete the spools of finished meetings older than AUDIO_RETENTION_DAYS; how many went."""
        cutoff = time.time() - self._spools.retention_days * 86400
        deleted = 0
        for path in await asyncio.to_thread(self._spools.files):
            if self._spools.is_open(path.stem) or _mtime(path) > cutoff:
                continue
            row = await self._row(path.stem)
            if row is None or row.status in UNFINISHED or _unreadable(row):
                continue  # kept: recovered at the next start, or waiting for its key
            deleted += await asyncio.to_thread(_delete_unowned, path)
        if deleted:
            logger.info("audio retention: deleted the audio of %d finished meeting(s)", deleted)
        return deleted

    async def _row(self, meeting_id: str) -> StoredMeeting | None:
        try:
            return await self._store.get(meeting_id)
        except MeetingNotFoundError:
            return None

    async def _recover(self, path: Path, meeting_id: str) -> bool:
        row = await self._row(meeting_id)
        if row is not None and not (row.status in UNFINISHED or _unreadable(row)):
            return False  # finished: only retention concerns it
        fd = await asyncio.to_thread(lock_spool, path)
        if fd is None:
            return False  # a live process owns it
        try:
            try:
                contents = await asyncio.to_thread(read_spool, path, self._spools.fernet)
            except (SpoolKeyError, SpoolFormatError, OSError) as exc:
                await self._fail(meeting_id, row, None, f"{UNREADABLE}: {exc}")
                return False
            source = row.source if row is not None else MeetingSource(contents.meta.source)
            if source is MeetingSource.UPLOAD and not contents.complete:
                await self._fail(meeting_id, row, contents, UPLOAD_CUT)
                await asyncio.to_thread(path.unlink, missing_ok=True)
                return False
            return await self._finish(path, meeting_id, row, contents, source)
        finally:
            os.close(fd)

    async def _finish(
        self, path: Path, meeting_id: str, row: StoredMeeting | None, contents: SpoolContents, source: MeetingSource
    ) -> bool:
        """Run the recovered audio through the after-stop pipeline, as a background job, and wait for it."""
        seconds = contents.pcm16.size / SAMPLE_RATE
        logger.info(
            "recovering meeting %s from its spool: %.1f s of audio%s",
            meeting_id,
            seconds,
            " (a torn last record was dropped)" if contents.dropped_tail else "",
        )
        parts = self._pipeline.open_session(meeting_id, _nobody_listens, spooled=False)
        parts.detach()
        await asyncio.to_thread(_fill, parts.buffer.append, contents.pcm16)
        title = row.title if row is not None else contents.meta.title
        created_at = row.created_at if row is not None else contents.meta.created_at
        recording = FinishedRecording(
            meeting_id, title, created_at, time.perf_counter(), parts, source=source, recovered=True
        )
        if row is not None:
            await record_status(self._store, meeting_id, MeetingStatus.PROCESSING)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def job() -> None:
            try:
                await self._pipeline.finish(recording, lambda message: None)
            finally:
                done.set_result(None)

        if not await self._submit(meeting_id, job, seconds):
            parts.close()
            return False
        await done
        stored = await self._row(meeting_id)
        if stored is None or stored.status is not MeetingStatus.RECOVERED:
            self._metrics.recoveries.labels(result="failed").inc()
            return False
        self._metrics.recoveries.labels(result="recovered").inc()
        await asyncio.to_thread(_retire, path, self._spools.retention_days)
        logger.info("meeting %s recovered (%.1f s of audio)", meeting_id, seconds)
        return True

    async def _submit(self, meeting_id: str, job: Callable[[], Awaitable[None]], seconds: float) -> bool:
        """Queue the job behind live meetings, waiting while the background backlog is full."""
        while True:
            try:
                self._pipeline.submit(meeting_id, job, background=True, audio_seconds=seconds)
                return True
            except BacklogFullError:
                await asyncio.sleep(5.0)
            except RuntimeError:
                logger.warning("meeting %s: the server is stopping; recovered at the next start", meeting_id)
                return False

    async def _fail(
        self,
        meeting_id: str,
        row: StoredMeeting | None,
        contents: SpoolContents | None,
        error: str,
        *,
        result: str = "failed",
    ) -> None:
        logger.error("meeting %s cannot be recovered: %s", meeting_id, error)
        self._metrics.recoveries.labels(result=result).inc()
        meta = contents.meta if contents is not None else None
        final = {"session_id": meeting_id, "segments": [], "errors": [error], "metrics": {"audio_seconds": 0.0}}
        await record_final(
            self._store,
            final,
            title=row.title if row is not None else (meta.title if meta else None),
            created_at=row.created_at if row is not None else (meta.created_at if meta else time.time()),
            source=row.source if row is not None else MeetingSource(meta.source if meta else "live"),
            status=MeetingStatus.FAILED,
        )

    async def _fail_lost(self, spooled: set[str]) -> None:
        """Rows left unfinished by a dead process that had no spool at all: say what happened."""
        before: str | None = None
        lost = []
        while True:
            page = await self._store.list_meetings(limit=200, before=before)
            lost += [
                row
                for row in page.meetings
                if row.status in UNFINISHED and row.created_at < self._booted_at and row.id not in spooled
            ]
            if page.next is None:
                break
            before = page.next
        for row in lost:
            if self._spools.is_open(row.id):
                continue
            error = UPLOAD_CUT if row.source is MeetingSource.UPLOAD else NO_AUDIO
            await self._fail(row.id, await self._row(row.id), None, error, result="audio_lost")


def _unreadable(row: StoredMeeting) -> bool:
    """A meeting failed because its spool was sealed with another key: retried at each start."""
    return row.status is MeetingStatus.FAILED and bool(row.errors) and row.errors[0].startswith(UNREADABLE)


def _fill(append: Callable[[np.ndarray], None], pcm16: np.ndarray) -> None:
    """Append the recovered audio a second at a time (each chunk is sealed in the buffer)."""
    for start in range(0, pcm16.size, SAMPLE_RATE):
        append(pcm16[start : start + SAMPLE_RATE])


def _delete_unowned(path: Path) -> bool:
    """Delete a spool file unless a live process holds it."""
    fd = lock_spool(path)
    if fd is None:
        return False
    path.unlink(missing_ok=True)
    os.close(fd)
    return True


def _retire(path: Path, retention_days: float) -> None:
    """The meeting is stored: its audio goes now (retention 0) or ages from now."""
    if retention_days == 0:
        path.unlink(missing_ok=True)
    else:
        os.utime(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _nobody_listens(update: TranscriptUpdate, lag: float) -> None:
    """A recovered meeting has no socket (its live pump never starts)."""

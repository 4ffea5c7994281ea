"""The meeting store on SQLAlchemy (async): SQLite by default, PostgreSQL for several processes.

One table, `meetings`; the list reads only its small columns through the (created_at, id) index,
newest first, with a keyset cursor, so a page costs the same with ten or a million meetings.
Every database error is translated once, here, into `StoreError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.errors import ConfigurationError, MeetingNotFoundError, MeetingRequestError, StoreError
from services.meeting_tables import LIST_COLUMNS, empty_row, meetings, stored_meeting, summary_row
from services.migrations import upgrade_to_head
from services.settings import Settings
from services.stored_meeting import (
    FinishedMeeting,
    MeetingPage,
    MeetingSource,
    MeetingStatus,
    StoredMeeting,
    speaker_labels,
)


def sqlite_url(data_dir: Path) -> str:
    """The default store: `meetings.db` in `data_dir`."""
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'meetings.db'}"


async def connect_meeting_store(settings: Settings) -> SqlMeetingStore:
    """The store the settings ask for: `DATABASE_URL`, else SQLite in `DATA_DIR` (created if missing).

    Use it as `async with await connect_meeting_store(settings) as store:` or close it with `aclose()`.
    Raises `ConfigurationError` naming the setting when the store cannot be opened (start-up stops).
    """
    if settings.database_url is not None:
        try:
            return await SqlMeetingStore.open(settings.database_url.get_secret_value())
        except StoreError as exc:
            raise ConfigurationError(f"DATABASE_URL: {exc}") from exc
    try:
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
        return await SqlMeetingStore.open(sqlite_url(settings.data_dir))
    except (OSError, StoreError) as exc:
        raise ConfigurationError(f"DATA_DIR {settings.data_dir}: {exc}") from exc


class SqlMeetingStore:
    """`MeetingStore` on any SQLAlchemy async engine. Open with `SqlMeetingStore.open(url)`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str) -> SqlMeetingStore:
        """Connect and bring the schema up to date. Raises `StoreError` naming the (password-free) URL."""
        try:
            engine = create_async_engine(url, **_engine_options(url))
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"DATABASE_URL cannot be used ({exc}); use e.g. postgresql+asyncpg://…") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to_head)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            shown = engine.url.render_as_string(hide_password=True)
            raise StoreError(f"cannot open the meeting store at {shown}: {exc}") from exc
        return cls(engine)

    async def __aenter__(self) -> SqlMeetingStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as connection:
                yield connection
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"meeting store failed: {exc.__class__.__name__}: {exc}") from exc

    async def create(
        self,
        meeting_id: str,
        *,
        title: str | None,
        created_at: float,
        source: MeetingSource = MeetingSource.LIVE,
        status: MeetingStatus = MeetingStatus.RECORDING,
        language: str | None = None,
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                meetings.insert().values(**empty_row(meeting_id, title, created_at, source, status), language=language)
            )

    async def set_status(self, meeting_id: str, status: MeetingStatus) -> None:
        async with self._transaction() as db:
            result = await db.execute(
                meetings.update()
                .where(meetings.c.id == meeting_id)
                .values(status=MeetingStatus(status).value, updated_at=time.time())
            )
        if result.rowcount == 0:
            raise MeetingNotFoundError(meeting_id)

    async def save_final(
        self,
        meeting_id: str,
        result: FinishedMeeting,
        *,
        title: str | None,
        created_at: float,
        source: MeetingSource = MeetingSource.LIVE,
        status: MeetingStatus = MeetingStatus.DONE,
    ) -> None:
        finished = {
            "status": MeetingStatus(status).value,
            "updated_at": time.time(),
            "duration": result.duration,
            "speakers": [{"label": label, "name": None} for label in speaker_labels(result.segments)],
            "segments": result.segments,
            "summary": result.summary,
            "provider": result.provider,
            "errors": result.errors,
            "metrics": result.metrics,
        }
        async with self._transaction() as db:
            row = (
                await db.execute(
                    sa.select(meetings.c.title, meetings.c.speakers)
                    .where(meetings.c.id == meeting_id)
                    .with_for_update()
                )
            ).one_or_none()
            if row is None:
                values = empty_row(meeting_id, title, created_at, source, status) | finished
                await db.execute(meetings.insert().values(**values))
                return
            chosen = {s["label"]: s["name"] for s in row.speakers}  # names given while it was recording
            finished["speakers"] = [{"label": s["label"], "name": chosen.get(s["label"])} for s in finished["speakers"]]
            await db.execute(
                meetings.update()
                .where(meetings.c.id == meeting_id)
                .values(title=row.title if row.title is not None else title, **finished)
            )

    async def get(self, meeting_id: str) -> StoredMeeting:
        async with self._transaction() as db:
            row = (await db.execute(sa.select(meetings).where(meetings.c.id == meeting_id))).one_or_none()
        if row is None:
            raise MeetingNotFoundError(meeting_id)
        return stored_meeting(row._mapping)

    async def list_meetings(self, *, limit: int = 50, before: str | None = None) -> MeetingPage:
        if limit < 1:
            raise MeetingRequestError(f"limit must be at least 1, not {limit}")
        query = sa.select(*LIST_COLUMNS)
        if before is not None:
            created_at, meeting_id = _decode_cursor(before)
            query = query.where(
                sa.or_(
                    meetings.c.created_at < created_at,
                    sa.and_(meetings.c.created_at == created_at, meetings.c.id < meeting_id),
                )
            )
        query = query.order_by(meetings.c.created_at.desc(), meetings.c.id.desc()).limit(limit + 1)
        async with self._transaction() as db:
            rows = (await db.execute(query)).all()
        page = [summary_row(row._mapping) for row in rows[:limit]]
        more = len(rows) > limit
        return MeetingPage(page, _encode_cursor(page[-1].created_at, page[-1].id) if more else None)

    async def rename(
        self, meeting_id: str, *, title: str | None = None, speakers: Mapping[str, str | None] | None = None
    ) -> StoredMeeting:
        async with self._transaction() as db:
            row = (
                await db.execute(sa.select(meetings.c.speakers).where(meetings.c.id == meeting_id).with_for_update())
            ).one_or_none()
            if row is None:
                raise MeetingNotFoundError(meeting_id)
            changes: dict[str, Any] = {"updated_at": time.time()}
            if title is not None:
                changes["title"] = title.strip() or None
            if speakers:
                changes["speakers"] = _renamed(row.speakers, speakers)
            await db.execute(meetings.update().where(meetings.c.id == meeting_id).values(**changes))
        return await self.get(meeting_id)

    async def delete(self, meeting_id: str) -> bool:
        async with self._transaction() as db:
            result = await db.execute(meetings.delete().where(meetings.c.id == meeting_id))
        return bool(result.rowcount)

    async def count_by_status(self) -> dict[MeetingStatus, int]:
        query = sa.select(meetings.c.status, sa.func.count()).group_by(meetings.c.status)
        async with self._transaction() as db:
            rows = (await db.execute(query)).all()
        counts = dict.fromkeys(MeetingStatus, 0)
        for status, count in rows:
            counts[MeetingStatus(status)] = int(count)
        return counts


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}  # wait for another process's write instead of failing at once
    return {"pool_pre_ping": True}  # a database restart must not break the next request


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the list be read while a meeting is being written (and by several processes).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _renamed(current: list[dict[str, Any]], names: Mapping[str, str | None]) -> list[dict[str, Any]]:
    known = {speaker["label"] for speaker in current}
    unknown = sorted(set(names) - known)
    if unknown:
        raise MeetingRequestError(
            f"unknown speaker label(s) {', '.join(unknown)}; this meeting has {', '.join(sorted(known)) or 'none'}"
        )
    return [
        {"label": s["label"], "name": ((names[s["label"]] or "").strip() or None) if s["label"] in names else s["name"]}
        for s in current
    ]


def _encode_cursor(created_at: float, meeting_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{meeting_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, meeting_id = raw.split("|", 1)
        return float(created_at), meeting_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise MeetingRequestError("before is not a cursor this server gave out (use the list's `next`)") from exc

"""The meeting store against real databases: SQLite (the default) and a throw-away PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from observability import Metrics
from services.errors import MeetingNotFoundError, MeetingRequestError, StoreError
from services.meeting_store import record_final, record_start, record_status, refresh_store_metrics
from services.meeting_tables import metadata
from services.sql_meeting_store import SqlMeetingStore, connect_meeting_store, sqlite_url
from services.stored_meeting import MeetingSource, MeetingStatus
from tests.pg_server import create_database
from tests.support import free_port, make_settings

pytestmark = pytest.mark.timeout(120)

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    admin_url = request.getfixturevalue("postgres_admin_url")
    return await create_database(admin_url, f"store_{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlMeetingStore]:
    async with await SqlMeetingStore.open(store_url) as opened:
        yield opened


@asynccontextmanager
async def database(url: str) -> AsyncIterator[AsyncEngine]:
    """A plain engine on the store's database, for what the store itself would never do."""
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


def final_message(session_id: str, *, speakers: tuple[str, ...] = ("SPEAKER_1", "SPEAKER_2")) -> dict[str, Any]:
    """A `final` message as the pipeline builds it (two speakers, a summary naming one of them)."""
    segments = [
        {"start": 0.5, "end": 2.0, "speaker": speakers[0], "text": " Let's review the budget."},
        {"start": 2.4, "end": 4.1, "speaker": speakers[1], "text": " I will send the numbers."},
        {"start": 4.5, "end": 6.0, "speaker": speakers[0], "text": " Thanks."},
    ]
    return {
        "type": "final",
        "session_id": session_id,
        "transcript": "\n".join(f"{s['speaker']}: {s['text'].strip()}" for s in segments),
        "segments": segments,
        "summary": {
            "summary": f"{speakers[1]} will send the numbers.",
            "action_items": [{"text": "Send the numbers", "owner": speakers[1], "due": None, "time": 2.4}],
            "decisions": [],
            "topics": ["budget"],
            "open_questions": [],
        },
        "provider": "offline",
        "errors": ["Slack: webhook timed out"],
        "metrics": {"audio_seconds": 6.25, "segments": 3, "speakers": 2, "summary_seconds": 0.01},
    }


async def test_a_live_meeting_is_listed_at_start_and_kept_whole_at_the_end(store: SqlMeetingStore) -> None:
    assert await record_start(store, "live1", title="Budget", created_at=T0)
    listed = (await store.list_meetings()).meetings
    assert [(m.id, m.status, m.source, m.title) for m in listed] == [
        ("live1", MeetingStatus.RECORDING, MeetingSource.LIVE, "Budget")
    ]
    assert await record_status(store, "live1", MeetingStatus.QUEUED)
    assert (await store.get("live1")).status is MeetingStatus.QUEUED

    final = final_message("live1")
    assert await record_final(store, final, title=None, created_at=T0 + 5)
    meeting = await store.get("live1")
    wire = meeting.to_wire()
    assert wire["status"] == "done" and wire["title"] == "Budget", "the title given at start is kept"
    assert wire["created_at"] == "2025-11-24T16:00:00.000Z", "created_at is when the meeting started"
    assert wire["duration"] == 6.25
    for key in ("transcript", "segments", "summary", "provider", "errors", "metrics"):
        assert wire[key] == final[key], key
    assert wire["speakers"] == {"SPEAKER_1": "Speaker 1", "SPEAKER_2": "Speaker 2"}
    assert final["errors"] == ["Slack: webhook timed out"], "a stored meeting adds no error"


async def test_a_final_with_no_row_yet_is_stored_whole(store: SqlMeetingStore) -> None:
    assert await record_final(store, final_message("up1"), title="Upload", created_at=T0, source=MeetingSource.UPLOAD)
    meeting = await store.get("up1")
    assert (meeting.title, meeting.status, meeting.source, meeting.created_at) == (
        "Upload",
        MeetingStatus.DONE,
        MeetingSource.UPLOAD,
        T0,
    )
    assert len(meeting.segments) == 3


async def test_the_list_is_newest_first_and_the_cursor_visits_every_meeting_once(store: SqlMeetingStore) -> None:
    ids = []
    for index in range(25):
        meeting_id = f"m{index:02d}"
        # every third pair shares a start time: the cursor must break ties by id, not skip or repeat
        await store.create(meeting_id, title=None, created_at=T0 + index // 2, status=MeetingStatus.QUEUED)
        ids.append(meeting_id)
    expected = sorted(ids, key=lambda i: (T0 + int(i[1:]) // 2, i), reverse=True)
    seen, cursor, pages = [], None, 0
    while True:
        page = await store.list_meetings(limit=10, before=cursor)
        seen += [m.id for m in page.meetings]
        pages += 1
        cursor = page.next
        if cursor is None:
            break
    assert seen == expected and pages == 3
    assert (await store.list_meetings(limit=25)).next is None


async def test_bad_list_requests_are_refused_clearly(store: SqlMeetingStore) -> None:
    with pytest.raises(MeetingRequestError, match="cursor"):
        await store.list_meetings(before="not a cursor!")
    with pytest.raises(MeetingRequestError, match="limit"):
        await store.list_meetings(limit=0)


async def test_renaming_changes_title_speakers_and_transcript(store: SqlMeetingStore) -> None:
    await record_final(store, final_message("r1"), title="Draft", created_at=T0)
    meeting = await store.rename("r1", title="  Budget review ", speakers={"SPEAKER_2": " Alice "})
    assert meeting.title == "Budget review"
    assert meeting.speakers == {"SPEAKER_1": "Speaker 1", "SPEAKER_2": "Alice"}
    assert meeting.transcript.splitlines()[1] == "Alice: I will send the numbers."
    assert meeting.transcript.splitlines()[0] == "SPEAKER_1: Let's review the budget.", "unrenamed labels stay"
    assert (await store.list_meetings()).meetings[0].speakers["SPEAKER_2"] == "Alice"

    with pytest.raises(MeetingRequestError, match="SPEAKER_9"):
        await store.rename("r1", speakers={"SPEAKER_9": "Bob"})
    assert (await store.get("r1")).speakers["SPEAKER_2"] == "Alice", "a refused rename changes nothing"
    restored = await store.rename("r1", speakers={"SPEAKER_2": ""})
    assert restored.speakers["SPEAKER_2"] == "Speaker 2", "a blank name restores the default"
    assert (await store.rename("r1", title="")).title is None


async def test_delete_removes_the_meeting_and_unknown_ids_are_not_found(store: SqlMeetingStore) -> None:
    await record_final(store, final_message("d1"), title=None, created_at=T0)
    assert await store.delete("d1") is True
    assert await store.delete("d1") is False
    with pytest.raises(MeetingNotFoundError):
        await store.get("d1")
    with pytest.raises(MeetingNotFoundError):
        await store.rename("d1", title="x")
    with pytest.raises(MeetingNotFoundError):
        await store.set_status("d1", MeetingStatus.DONE)
    assert (await store.list_meetings()).meetings == []
    assert not await record_status(store, "d1", MeetingStatus.PROCESSING), "a status for no meeting is only logged"


async def test_counts_by_status_feed_the_metric(store: SqlMeetingStore) -> None:
    for index, status in enumerate([MeetingStatus.RECORDING, MeetingStatus.DONE, MeetingStatus.DONE]):
        await store.create(f"c{index}", title=None, created_at=T0 + index, status=status)
    counts = await store.count_by_status()
    assert counts == {**dict.fromkeys(MeetingStatus, 0), MeetingStatus.RECORDING: 1, MeetingStatus.DONE: 2}
    metrics = Metrics()
    await refresh_store_metrics(store, metrics)
    text = metrics.render().decode()
    assert 'meeting_assistant_stored_meetings{status="done"} 2.0' in text
    assert 'meeting_assistant_stored_meetings{status="failed"} 0.0' in text


async def test_a_failing_store_never_loses_the_final_message(store: SqlMeetingStore, store_url: str) -> None:
    # Break the database under the open store, for real: the table is gone.
    async with database(store_url) as engine, engine.begin() as connection:
        await connection.execute(sa.text("DROP TABLE meetings"))
    final = final_message("f1")
    assert not await record_start(store, "f1", title=None, created_at=T0)
    assert not await record_final(store, final, title=None, created_at=T0)
    assert final["errors"][-1].startswith("The meeting could not be stored: meeting store failed")
    assert final["segments"] and final["summary"], "the final message itself is intact"
    with pytest.raises(StoreError):
        await store.list_meetings()
    metrics = Metrics()
    await refresh_store_metrics(store, metrics)  # logs, does not raise: /metrics still answers


async def test_migrations_match_the_tables_and_reopening_keeps_the_data(store_url: str) -> None:
    async with await SqlMeetingStore.open(store_url) as store:
        await record_final(store, final_message("k1"), title="Kept", created_at=T0)
    async with await SqlMeetingStore.open(store_url) as store:
        assert (await store.get("k1")).title == "Kept"

    def differences(connection: sa.Connection) -> list[Any]:
        return compare_metadata(MigrationContext.configure(connection), metadata)

    async with database(store_url) as engine, engine.connect() as connection:
        assert await connection.run_sync(differences) == []
        version = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == "0001"


async def test_processes_starting_together_migrate_once(postgres_admin_url: str) -> None:
    url = await create_database(postgres_admin_url, f"race_{uuid.uuid4().hex[:10]}")
    stores = await asyncio.gather(*(SqlMeetingStore.open(url) for _ in range(4)))
    try:
        await stores[0].create("x", title=None, created_at=T0)
        assert [m.id for m in (await stores[3].list_meetings()).meetings] == ["x"]
    finally:
        for store in stores:
            await store.aclose()


async def test_settings_choose_the_store(tmp_path: Path, postgres_admin_url: str) -> None:
    settings = make_settings(tmp_path, data_dir=tmp_path / "nested" / "data")
    async with await connect_meeting_store(settings) as store:
        await store.create("s1", title=None, created_at=T0)
    assert (tmp_path / "nested" / "data" / "meetings.db").is_file(), "DATA_DIR is created and holds meetings.db"

    url = await create_database(postgres_admin_url, f"settings_{uuid.uuid4().hex[:10]}")
    plain = url.replace("postgresql+asyncpg://", "postgresql://")  # the scheme people paste from psql
    async with await connect_meeting_store(make_settings(tmp_path, database_url=plain)) as store:
        await store.create("p1", title=None, created_at=T0)
        assert [m.id for m in (await store.list_meetings()).meetings] == ["p1"]


async def test_an_unreachable_database_fails_start_up_without_showing_the_password() -> None:
    url = f"postgresql+asyncpg://meet:hunter2@127.0.0.1:{free_port()}/meetings"
    with pytest.raises(StoreError, match="cannot open the meeting store") as caught:
        await SqlMeetingStore.open(url)
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)

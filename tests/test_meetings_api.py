"""/api/meetings over a real uvicorn server with httpx: auth, paging, rename, exports, delete, /metrics.

The server's own store is SQLite in its DATA_DIR; the tests put meetings there through a second
connection to the same database (as another process sharing it would), or, for one test, through
a real live session whose `final` is stored with `record_final`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import websockets

from services.meeting_store import record_final
from services.sql_meeting_store import SqlMeetingStore, sqlite_url
from services.stored_meeting import MeetingStatus
from tests.pg_server import create_database
from tests.support import load_wav, make_settings, receive_until, run_server, ws_url
from tests.test_meeting_store import T0, final_message

pytestmark = pytest.mark.timeout(180)

API_KEY = "store-s3cret"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp_path = tmp_path_factory.mktemp("meetings_api")
    with run_server(make_settings(tmp_path, api_key=API_KEY)) as base_url:
        yield base_url, tmp_path / "data"


@asynccontextmanager
async def client(base_url: str, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH if headers is None else headers) as http:
        yield http


async def seed(data_dir: Path, *finals: dict, title: str | None = "Budget review") -> None:
    async with await SqlMeetingStore.open(sqlite_url(data_dir)) as store:
        for index, final in enumerate(finals):
            await record_final(store, final, title=title, created_at=T0 + index)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


async def test_every_route_needs_the_api_key(server: tuple[str, Path]) -> None:
    base_url, data_dir = server
    meeting_id = new_id()
    await seed(data_dir, final_message(meeting_id))
    routes = [
        ("GET", "/api/meetings", None),
        ("GET", f"/api/meetings/{meeting_id}", None),
        ("GET", f"/api/meetings/{meeting_id}/transcript.txt", None),
        ("PATCH", f"/api/meetings/{meeting_id}", {"title": "hijacked"}),
        ("DELETE", f"/api/meetings/{meeting_id}", None),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        async with client(base_url, headers) as http:
            for method, path, body in routes:
                answer = await http.request(method, path, json=body)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.headers["www-authenticate"] == "Bearer"
                assert API_KEY not in answer.text
    async with client(base_url, {}) as http:
        by_query = await http.get(f"/api/meetings/{meeting_id}/transcript.txt", params={"token": API_KEY})
        assert by_query.status_code == 200, "?token= works like on /ws, so a plain download link works"
    async with client(base_url) as http:
        meeting = (await http.get(f"/api/meetings/{meeting_id}")).json()
    assert meeting["title"] == "Budget review", "nothing changed without the key"


async def test_list_pages_newest_first(server: tuple[str, Path]) -> None:
    base_url, data_dir = server
    async with client(base_url) as http:
        before = (await http.get("/api/meetings", params={"limit": 200})).json()["meetings"]
        ids = [new_id() for _ in range(5)]
        async with await SqlMeetingStore.open(sqlite_url(data_dir)) as store:
            for index, meeting_id in enumerate(ids):
                await store.create(meeting_id, title=f"m{index}", created_at=T0 + 1000 + index)
        first = (await http.get("/api/meetings", params={"limit": 3})).json()
        second = (await http.get("/api/meetings", params={"limit": 3, "before": first["next"]})).json()
    assert [m["id"] for m in first["meetings"]] == ids[::-1][:3]
    assert [m["id"] for m in second["meetings"]][:2] == ids[::-1][3:]
    assert len(second["meetings"]) == min(3, 2 + len(before))
    item = first["meetings"][0]
    assert item == {
        "id": ids[-1],
        "title": "m4",
        "status": "recording",
        "created_at": "2025-11-24T16:16:44.000Z",
        "duration": None,
        "speakers": {},
        "source": "live",
    }


async def test_bad_requests_get_clear_errors(server: tuple[str, Path]) -> None:
    base_url, data_dir = server
    meeting_id = new_id()
    await seed(data_dir, final_message(meeting_id))
    async with client(base_url) as http:
        for params in ({"limit": 0}, {"limit": 1000}, {"before": "garbage!"}):
            assert (await http.get("/api/meetings", params=params)).status_code == 422, params
        assert (await http.get(f"/api/meetings/{meeting_id}/transcript.docx")).status_code == 422
        for body in ({}, {"colour": "red"}, {"speakers": {"SPEAKER_9": "Bob"}}, {"title": 5}, {"title": "x" * 501}):
            answer = await http.patch(f"/api/meetings/{meeting_id}", json=body)
            assert answer.status_code == 422, body
        unknown = await http.patch(f"/api/meetings/{meeting_id}", json={"speakers": {"SPEAKER_9": "Bob"}})
        assert "SPEAKER_9" in unknown.json()["detail"] and "SPEAKER_1" in unknown.json()["detail"]
        not_json = await http.patch(
            f"/api/meetings/{meeting_id}", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        assert (await http.get(f"/api/meetings/{meeting_id}")).json()["title"] == "Budget review"


async def test_unknown_ids_are_404_everywhere(server: tuple[str, Path]) -> None:
    base_url, _ = server
    async with client(base_url) as http:
        for method, path, body in [
            ("GET", "/api/meetings/nosuchmeeting", None),
            ("GET", "/api/meetings/nosuchmeeting/transcript.md", None),
            ("PATCH", "/api/meetings/nosuchmeeting", {"title": "x"}),
            ("DELETE", "/api/meetings/nosuchmeeting", None),
        ]:
            answer = await http.request(method, path, json=body)
            assert answer.status_code == 404, (method, path)
            assert "nosuchmeeting" in answer.json()["detail"]


async def test_rename_then_every_export_uses_the_new_names(server: tuple[str, Path]) -> None:
    base_url, data_dir = server
    meeting_id = new_id()
    await seed(data_dir, final_message(meeting_id))
    async with client(base_url) as http:
        renamed = await http.patch(
            f"/api/meetings/{meeting_id}", json={"title": "Q3 Budget", "speakers": {"SPEAKER_2": "Alice"}}
        )
        assert renamed.status_code == 200
        assert renamed.json()["speakers"] == {"SPEAKER_1": "Speaker 1", "SPEAKER_2": "Alice"}
        exports = {}
        for fmt in ("txt", "md", "json", "srt", "vtt"):
            answer = await http.get(f"/api/meetings/{meeting_id}/transcript.{fmt}")
            assert answer.status_code == 200, fmt
            assert answer.headers["content-disposition"] == f'attachment; filename="q3-budget-2025-11-24-1600.{fmt}"'
            exports[fmt] = answer
    assert "[00:02] Alice: I will send the numbers." in exports["txt"].text
    assert exports["txt"].headers["content-type"] == "text/plain; charset=utf-8"
    assert "# Q3 Budget" in exports["md"].text and "**Alice** [00:02]" in exports["md"].text
    assert "Alice will send the numbers." in exports["md"].text, "the summary is relabelled too"
    document = json.loads(exports["json"].text)
    assert [s["speaker"] for s in document["segments"]] == ["Speaker 1", "Alice", "Speaker 1"]
    assert document["session_id"] == meeting_id and document["summary"]["action_items"][0]["owner"] == "Alice"
    assert "00:00:02,400 --> 00:00:04,100\nAlice: I will send the numbers." in exports["srt"].text
    assert exports["vtt"].text.startswith("WEBVTT\n")
    assert "00:00:02.400 --> 00:00:04.100\n<v Alice>I will send the numbers." in exports["vtt"].text
    assert exports["vtt"].headers["content-type"] == "text/vtt; charset=utf-8"


async def test_delete_then_404_and_gone_from_the_list(server: tuple[str, Path]) -> None:
    base_url, data_dir = server
    meeting_id = new_id()
    await seed(data_dir, final_message(meeting_id))
    async with client(base_url) as http:
        assert (await http.get(f"/api/meetings/{meeting_id}")).status_code == 200
        deleted = await http.delete(f"/api/meetings/{meeting_id}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert (await http.get(f"/api/meetings/{meeting_id}")).status_code == 404
        assert (await http.get(f"/api/meetings/{meeting_id}/transcript.srt")).status_code == 404
        listed = (await http.get("/api/meetings", params={"limit": 200})).json()["meetings"]
        assert meeting_id not in {m["id"] for m in listed}


async def test_metrics_count_stored_meetings_by_status(server: tuple[str, Path]) -> None:
    base_url, data_dir = server
    async with client(base_url) as http:
        async with await SqlMeetingStore.open(sqlite_url(data_dir)) as store:
            await store.create(new_id(), title=None, created_at=T0, status=MeetingStatus.FAILED)
            failed_before = (await store.count_by_status())[MeetingStatus.FAILED]
            text_before = (await http.get("/metrics")).text
            await store.create(new_id(), title=None, created_at=T0, status=MeetingStatus.FAILED)
        text_after = (await http.get("/metrics")).text
    assert f'meeting_assistant_stored_meetings{{status="failed"}} {float(failed_before)}' in text_before
    assert f'meeting_assistant_stored_meetings{{status="failed"}} {float(failed_before + 1)}' in text_after
    assert 'meeting_assistant_stored_meetings{status="recovered"} 0.0' in text_after


async def test_a_live_session_becomes_a_stored_meeting(server: tuple[str, Path]) -> None:
    base_url, _ = server
    pcm, rate = load_wav("one_voice.wav")
    start = {"type": "start", "sample_rate": rate, "title": "Quarterly numbers"}
    async with websockets.connect(ws_url(base_url, f"token={API_KEY}")) as ws:
        await ws.send(json.dumps(start))
        await ws.send(pcm[: 2 * rate].tobytes())
        await receive_until(ws, "status")
        meeting_id = None
        async with client(base_url) as http:
            async with asyncio.timeout(10):
                while meeting_id is None:  # listed from its first audio, while it records
                    listed = (await http.get("/api/meetings")).json()["meetings"]
                    meeting_id = next((m["id"] for m in listed if m["title"] == "Quarterly numbers"), None)
            assert (await http.get(f"/api/meetings/{meeting_id}")).json()["status"] == "recording"
        await ws.send(pcm[2 * rate :].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        final, _ = await receive_until(ws, "final")
    assert final["session_id"] == meeting_id
    async with client(base_url) as http:
        meeting = (await http.get(f"/api/meetings/{meeting_id}")).json()
        assert meeting["transcript"] == final["transcript"] and meeting["segments"] == final["segments"]
        assert meeting["summary"] == final["summary"] and meeting["status"] == "done"
        assert meeting["title"] == "Quarterly numbers" and meeting["source"] == "live"
        assert meeting["speakers"] == {"SPEAKER_1": "Speaker 1"}
        await http.patch(f"/api/meetings/{meeting_id}", json={"speakers": {"SPEAKER_1": "Dana"}})
        text = (await http.get(f"/api/meetings/{meeting_id}/transcript.txt")).text
    assert text.startswith("[00:0") and "] Dana: " in text and "quarterly" in text.lower()


async def test_the_api_serves_a_postgresql_store(tmp_path: Path, postgres_admin_url: str) -> None:
    url = await create_database(postgres_admin_url, f"api_{uuid.uuid4().hex[:10]}")
    meeting_id = new_id()
    async with await SqlMeetingStore.open(url) as store:
        await record_final(store, final_message(meeting_id), title="On PostgreSQL", created_at=T0)
    with run_server(make_settings(tmp_path, database_url=url)) as base_url:
        async with client(base_url, {}) as http:
            listed = (await http.get("/api/meetings")).json()
            assert [m["id"] for m in listed["meetings"]] == [meeting_id]
            assert (await http.patch(f"/api/meetings/{meeting_id}", json={"title": "Renamed"})).status_code == 200
            assert (await http.delete(f"/api/meetings/{meeting_id}")).status_code == 204
    async with await SqlMeetingStore.open(url) as store:
        assert (await store.list_meetings()).meetings == [], "the delete reached PostgreSQL"
    assert not (tmp_path / "data" / "meetings.db").exists(), "no SQLite file when DATABASE_URL is set"

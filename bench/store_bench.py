"""How fast the meeting list answers with 10,000 stored meetings (target: under 100 ms).

    python bench/store_bench.py                 # SQLite in a temp DATA_DIR
    python bench/store_bench.py --postgres      # also a throw-away PostgreSQL (Debian's postgresql)

Fills the store with N finished meetings (each with a transcript of `--segments` segments, so the
rows weigh what real ones do), then prints, per database: the first page of `GET /api/meetings`
through a real uvicorn server and httpx (median and p95 of repeated calls), the same page from the
store directly, a walk through all N with the cursor, the per-status count `/metrics` runs on
each scrape, and the first page again without the (created_at, id) index, to show what it buys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.meeting_tables import meetings  # noqa: E402
from services.meetings_api import router  # noqa: E402
from services.settings import load_settings  # noqa: E402
from services.sql_meeting_store import SqlMeetingStore, sqlite_url  # noqa: E402
from services.stored_meeting import MeetingStatus  # noqa: E402
from tests.pg_server import create_database, postgres_server  # noqa: E402
from tests.support import free_port  # noqa: E402

T0 = 1_700_000_000.0


def meeting_rows(count: int, segments: int) -> Iterator[dict[str, object]]:
    statuses = [MeetingStatus.DONE] * 8 + [MeetingStatus.FAILED, MeetingStatus.RECOVERED]
    for index in range(count):
        transcript = [
            {"start": s * 4.0, "end": s * 4.0 + 3.5, "speaker": f"SPEAKER_{s % 3 + 1}", "text": " word" * 12}
            for s in range(segments)
        ]
        yield {
            "id": f"bench{index:06d}",
            "title": f"Meeting {index}",
            "status": statuses[index % len(statuses)].value,
            "source": "live" if index % 4 else "upload",
            "created_at": T0 + index * 60.0,
            "updated_at": T0 + index * 60.0 + 30,
            "duration": segments * 4.0,
            "language": "en",
            "speakers": [{"label": f"SPEAKER_{n}", "name": None} for n in (1, 2, 3)],
            "segments": transcript,
            "summary": {"summary": "A summary. " * 20, "action_items": [], "decisions": [], "topics": []},
            "provider": "offline",
            "errors": [],
            "metrics": {"audio_seconds": segments * 4.0},
        }


async def fill(url: str, count: int, segments: int) -> None:
    await (await SqlMeetingStore.open(url)).aclose()  # migrations
    engine = create_async_engine(url)
    try:
        rows = list(meeting_rows(count, segments))
        async with engine.begin() as connection:
            for start in range(0, count, 1000):
                await connection.execute(meetings.insert(), rows[start : start + 1000])
    finally:
        await engine.dispose()


async def timed(call: Callable[[], Awaitable[object]], repeats: int) -> list[float]:
    await call()  # warm: connection pool, page cache
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[-1] if len(samples) >= 20 else max(samples)
    return f"median {statistics.median(samples):6.1f} ms   p95 {p95:6.1f} ms"


@contextlib.contextmanager
def api_server(url: str) -> Iterator[str]:
    """Only the meetings router on a real uvicorn server (no model to load), with its own store:
    database connections belong to the event loop that opened them, here the server's."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with await SqlMeetingStore.open(url) as store:
            app.state.meeting_store = store
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.settings = load_settings(_env_file=None)
    app.include_router(router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def measure(name: str, url: str, count: int, segments: int, repeats: int) -> None:
    began = time.perf_counter()
    await fill(url, count, segments)
    print(f"\n{name}: {count} meetings x {segments} segments stored in {time.perf_counter() - began:.1f} s")
    with api_server(url) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:

            async def first_page() -> None:
                answer = await http.get("/api/meetings", params={"limit": 50})
                assert answer.status_code == 200 and len(answer.json()["meetings"]) == 50

            print(f"  GET /api/meetings?limit=50 (HTTP)   {summary(await timed(first_page, repeats))}")
    async with await SqlMeetingStore.open(url) as store:
        first_page_direct = await timed(lambda: store.list_meetings(limit=50), repeats)
        print(f"  store.list_meetings(limit=50)       {summary(first_page_direct)}")

        async def walk() -> None:
            seen, cursor = 0, None
            while True:
                page = await store.list_meetings(limit=200, before=cursor)
                seen += len(page.meetings)
                if (cursor := page.next) is None:
                    break
            assert seen == count

        print(f"  walk all {count} (limit=200 pages)   {summary(await timed(walk, max(3, repeats // 10)))}")
        print(f"  count_by_status (/metrics)         {summary(await timed(store.count_by_status, repeats))}")
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.execute(sa.text("DROP INDEX ix_meetings_created_at_id"))
        await engine.dispose()
        without_index = await timed(lambda: store.list_meetings(limit=50), repeats)
        print(f"  list_meetings without the index     {summary(without_index)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=10_000)
    parser.add_argument("--segments", type=int, default=100, help="transcript segments per meeting")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--postgres", action="store_true", help="also measure a throw-away PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        await measure("SQLite", sqlite_url(Path(data_dir)), args.meetings, args.segments, args.repeats)
    if args.postgres:
        with postgres_server() as admin_url:
            url = await create_database(admin_url, "bench")
            await measure("PostgreSQL", url, args.meetings, args.segments, args.repeats)


if __name__ == "__main__":
    asyncio.run(main())

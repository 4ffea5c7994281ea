"""A meeting's after-stop hooks run once, whichever worker dies when (Redis mode).

Two in-process workers (each a real `MeetingPipeline` on fakes: scripted recogniser, offline
summary, a recording hook standing for Slack and the audit log) serve one meeting from a real
redis-server, as `python -m worker` does (`serve_meeting`, `JobConsumer`):

- worker 1 dies while its hooks run (its task is cancelled there, before its final is out); worker 2
  finishes the meeting again and publishes the final, but does not run the hooks a second time;
- a worker that published its final and died before retiring the job: the final and the "done"
  marker went out in one transaction, so the next worker only retires the job (no hooks, no final).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from observability import Metrics
from services.audio_buffer import AudioCipher
from services.capacity import CapacityPolicy, LoadMeter
from services.fake_recognizer import FakeRecognizer
from services.redis_backend import streams
from services.redis_backend.consumer import JobConsumer
from services.redis_backend.streams import MeetingJob
from services.redis_backend.worker_session import WorkerContext, serve_meeting
from services.sql_meeting_store import SqlMeetingStore, sqlite_url
from services.types import MeetingRecord
from tests.fakes.pipeline import RecordingHook, fake_pipeline, scripted_words
from tests.redis_server import redis_server
from tests.support import load_wav

pytestmark = pytest.mark.timeout(300)


class StuckHook(RecordingHook):
    """A hook whose call never returns (a Slack request in flight when the worker dies)."""

    async def run(self, record: MeetingRecord) -> None:
        await super().run(record)
        await asyncio.Event().wait()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    with redis_server() as url:
        client = streams.connect(url)
        await streams.ensure_group(client)
        yield client
        await client.aclose()


@contextlib.asynccontextmanager
async def _worker(redis: Redis, hook: RecordingHook, store: SqlMeetingStore) -> AsyncIterator[WorkerContext]:
    async with fake_pipeline(FakeRecognizer(scripted_words("one_voice")), hooks=[hook], store=store) as (pipeline, _):
        yield WorkerContext(redis=redis, pipeline=pipeline, cipher=AudioCipher(None), abandon_after=60.0)


async def _record_meeting(redis: Redis, session_id: str) -> MeetingJob:
    """The gateway's side: the meeting's audio, its stop marker and its job."""
    pcm, _ = load_wav("one_voice.wav")
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(pcm), 16_000):
            chunk = pcm[start : start + 16_000]
            pipe.xadd(streams.audio_key(session_id), {streams.CHUNK: chunk.tobytes(), streams.SAMPLES: str(len(chunk))})
        pipe.xadd(streams.audio_key(session_id), {streams.END: b"stop", streams.STOPPED_AT: b"0"})
        await pipe.execute()
    job = MeetingJob(session_id, "Standup", 1_700_000_000.0)
    await redis.xadd(streams.JOBS, job.to_fields())
    return job


async def _finals(redis: Redis, session_id: str) -> list[tuple[int, dict[str, object]]]:
    entries = await redis.xrange(streams.results_key(session_id))
    return [
        (int(fields[streams.EPOCH]), json.loads(fields[streams.BODY]))
        for _, fields in entries
        if fields[streams.KIND] == streams.FINAL
    ]


@pytest.fixture
async def store() -> AsyncIterator[SqlMeetingStore]:
    with tempfile.TemporaryDirectory() as folder:
        async with await SqlMeetingStore.open(sqlite_url(Path(folder))) as opened:
            yield opened


async def test_a_worker_dying_in_its_hooks_leaves_them_run_once(redis: Redis, store: SqlMeetingStore) -> None:
    job = await _record_meeting(redis, "m1")
    first_hook, second_hook = StuckHook(), RecordingHook()
    async with _worker(redis, first_hook, store) as first:
        serving = asyncio.create_task(serve_meeting(job, first, epoch=1))
        await asyncio.wait_for(first_hook.arrived.wait(), 120)
        serving.cancel()  # the worker dies with its hooks in flight
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    assert await _finals(redis, "m1") == [] and not await redis.exists(streams.done_key("m1"))

    async with _worker(redis, second_hook, store) as second:
        await serve_meeting(job, second, epoch=2)  # the takeover finishes the meeting again

    assert len(first_hook.records) == 1 and second_hook.records == [], "the hooks ran once"
    [(epoch, final)] = await _finals(redis, "m1")
    assert epoch == 2 and final["type"] == "final" and final["transcript"]
    assert await redis.get(streams.done_key("m1")) == b"2", "marked done with its final"
    assert (await store.get("m1")).status.value == "done"


async def test_a_finished_meeting_whose_worker_died_before_retiring_it_is_only_retired(
    redis: Redis, store: SqlMeetingStore
) -> None:
    job = await _record_meeting(redis, "m2")
    await redis.xreadgroup(streams.GROUP, "dead-worker", {streams.JOBS: ">"}, count=1)  # pending under it
    hook = RecordingHook()
    async with _worker(redis, RecordingHook(), store) as first:
        await serve_meeting(job, first, epoch=1)  # its final is out; then it dies: no retire
    assert len(await _finals(redis, "m2")) == 1

    stopping = asyncio.Event()
    async with _worker(redis, hook, store) as context:
        consumer = JobConsumer(
            context,
            name="next-worker",
            max_sessions=2,
            lease_seconds=0.4,
            metrics=Metrics(),
            meter=LoadMeter(CapacityPolicy(max_sessions=2), Metrics()),
        )
        running = asyncio.create_task(consumer.run(stopping))
        async with asyncio.timeout(60):
            while True:  # claimed once idle a lease long, then retired
                if not await redis.xlen(streams.JOBS):
                    break
                await asyncio.sleep(0.1)
        stopping.set()
        await running

    assert hook.records == [] and len(await _finals(redis, "m2")) == 1, "nothing was done again"
    assert (await redis.xpending(streams.JOBS, streams.GROUP))["pending"] == 0
    assert not await redis.exists(streams.audio_key("m2"))

"""The gateway's relay against a real redis-server, without models: what it writes (sealed audio,
one job, the stop marker) and how it reads results back (older epochs and repeats dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from services.audio_buffer import AudioCipher
from services.redis_backend import streams
from services.redis_backend.relay import RemotePump
from services.redis_backend.relay_buffer import RelayBuffer
from services.redis_backend.reservations import RESERVATIONS, Reservations
from services.redis_backend.streams import MeetingJob
from services.redis_backend.worker_session import ResultPublisher
from services.types import Segment, TranscriptUpdate
from tests.redis_server import redis_server


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    with redis_server() as url:
        client = streams.connect(url)
        yield client
        await client.aclose()


def _update(segment_id: int, text: str) -> TranscriptUpdate:
    return TranscriptUpdate(segment_id, Segment(float(segment_id), segment_id + 1.0, text), committed=True)


async def test_relay_writes_sealed_audio_one_job_and_the_stop_marker(redis: Redis) -> None:
    key = Fernet.generate_key().decode()
    buffer = RelayBuffer(AudioCipher(key))
    reservations = Reservations(redis)
    pump = RemotePump(redis, "s1", buffer, lambda update, lag: None, reservations)
    pump.job = MeetingJob("s1", "Weekly", 1_700_000_000.0)
    pcm = (np.arange(16_000 * 25) % 2000 - 1000).astype(np.int16)  # 25 s: split into entries of 10 s
    buffer.append(pcm)
    pump.notify()
    finishing = asyncio.create_task(pump.finish(lambda message: None))
    async with asyncio.timeout(30):
        while True:
            entries = await redis.xrange(streams.audio_key("s1"))
            if entries and streams.END in entries[-1][1]:
                break
            await asyncio.sleep(0.05)
    chunks = [fields for _, fields in entries if streams.CHUNK in fields]
    clear = b"".join(Fernet(key.encode()).decrypt(fields[streams.CHUNK]) for fields in chunks)
    assert [int(fields[streams.SAMPLES]) for fields in chunks] == [160_000, 160_000, 80_000]
    assert clear == pcm.tobytes() and pcm.tobytes()[:64] not in b"".join(f[streams.CHUNK] for f in chunks)
    assert entries[-1][1][streams.END] == b"stop"
    jobs = await redis.xrange(streams.JOBS)
    assert [MeetingJob.from_fields(fields) for _, fields in jobs] == [pump.job]
    assert await redis.zscore(RESERVATIONS, "s1") is not None, "a queued job holds a worker slot"
    await ResultPublisher(redis, "s1", 1).close(streams.FINAL, {"type": "final", "session_id": "s1"})
    assert (await finishing)["session_id"] == "s1"
    assert reservations.held == set(), "a worker's result: its report counts the meeting now"
    await pump.aclose()


async def test_relay_marks_where_the_client_left_and_came_back_with_a_new_capture(redis: Redis) -> None:
    """The worker reads, in the audio's order: the audio before the drop, the client's leaving (commit what is
    open), its coming back with a new capture (hear it on its own), the new audio. A gateway hands a parked
    recording over only once the leaving is in Redis too (`flushed`)."""
    buffer = RelayBuffer(AudioCipher(None))
    pump = RemotePump(redis, "s3", buffer, lambda update, lag: None, Reservations(redis))
    pump.job = MeetingJob("s3", "Reloaded", 1_700_000_000.0)
    buffer.append(np.ones(16_000, dtype=np.int16))
    pump.notify()
    pump.seal()
    assert await pump.flushed() == 16_000
    kinds = [next(iter(fields)) for _, fields in await redis.xrange(streams.audio_key("s3"))]
    assert kinds == [streams.CHUNK, streams.LEFT], "the leaving is in Redis before the recording is offered"
    pump.hear_afresh()
    buffer.append(np.ones(8_000, dtype=np.int16))
    pump.notify()
    await pump.flushed()
    fields = [fields for _, fields in await redis.xrange(streams.audio_key("s3"))]
    assert [next(iter(f)) for f in fields] == [streams.CHUNK, streams.LEFT, streams.AFRESH, streams.CHUNK]
    assert int(fields[-1][streams.SAMPLES]) == 8_000
    await pump.aclose()


async def test_results_of_an_older_epoch_and_repeats_are_dropped(redis: Redis) -> None:
    shown: list[tuple[int, str]] = []
    buffer = RelayBuffer(AudioCipher(None))
    pump = RemotePump(
        redis, "s2", buffer, lambda u, lag: shown.append((u.segment_id, u.segment.text)), Reservations(redis)
    )
    buffer.append(np.ones(1600, dtype=np.int16))
    pump.notify()  # queues the job and starts reading results

    first = ResultPublisher(redis, "s2", 1)  # the worker that dies
    first.update(_update(0, "good morning"), 0.1)
    await first.close()
    second = ResultPublisher(redis, "s2", 2)  # the one that took over: transcribes it all again
    second.update(_update(0, "good morning"), 0.3)  # unchanged: not sent twice
    second.update(_update(1, "the launch plan"), 0.2)
    await second.close()
    late = ResultPublisher(redis, "s2", 1)  # the first one, still talking after it lost the meeting
    late.update(_update(2, "stale words"), 0.0)
    await late.close()
    statuses: list[dict[str, object]] = []
    finishing = asyncio.create_task(pump.finish(statuses.append))
    await asyncio.sleep(0.5)
    last = ResultPublisher(redis, "s2", 2)
    last.send({"type": "status", "status": "transcribing"})
    await last.close(streams.FINAL, {"type": "final", "session_id": "s2"})
    async with asyncio.timeout(30):
        final = await finishing
    assert final["session_id"] == "s2"
    assert shown == [(0, "good morning"), (1, "the launch plan")]
    assert statuses == [{"type": "status", "status": "transcribing"}]
    assert [(update.segment_id, update.segment.text) for update in pump.listen(lambda u, lag: None)] == shown
    await pump.aclose()


async def test_a_session_closed_before_its_audio_gives_its_worker_slot_back(redis: Redis) -> None:
    reservations = Reservations(redis)
    assert await reservations.reserve("s3", checked=False)  # admitted (no worker publishes room here)
    pump = RemotePump(redis, "s3", RelayBuffer(AudioCipher(None)), lambda u, lag: None, reservations)
    pump.cancel()  # the client left before sending audio
    await reservations.aclose()
    assert await redis.zscore(RESERVATIONS, "s3") is None and not await redis.exists(streams.JOBS)


async def test_only_the_relay_that_stopped_the_meeting_removes_its_results(redis: Redis) -> None:
    """A relay the session moved away from (its client resumed on another gateway) still reads the
    results until its grace ends: it must leave the stream to the relay that sent the stop."""
    reservations = Reservations(redis)
    left_behind = RemotePump(redis, "s4", RelayBuffer(AudioCipher(None)), lambda u, lag: None, reservations)
    await left_behind.adopt(0)  # reading the results, as the relay on the old gateway still does
    await ResultPublisher(redis, "s4", 1).close(streams.FINAL, {"type": "final", "session_id": "s4"})
    async with asyncio.timeout(30):
        await left_behind.final
        assert left_behind._reader is not None
        await left_behind._reader  # its reading is over
        assert await redis.exists(streams.results_key("s4")), "left for the relay that stopped the meeting"
        moved = RemotePump(redis, "s4", RelayBuffer(AudioCipher(None)), lambda u, lag: None, reservations)
        await moved.adopt(0)
        assert (await moved.finish(lambda message: None))["session_id"] == "s4"
        await moved.aclose()
    assert not await redis.exists(streams.results_key("s4")), "removed by the relay that stopped it"
    await left_behind.aclose()

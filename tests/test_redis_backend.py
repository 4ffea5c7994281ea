"""ORCHESTRATOR_BACKEND=redis end to end: a real redis-server, a `uvicorn app:app` gateway and a
`python -m worker` worker as subprocesses sharing one SQLite meeting store; a real WebSocket
client streams scripted speech at real-time pace and an upload is posted. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from services.errors import ConfigurationError
from services.redis_backend import streams
from services.settings import load_settings
from tests.redis_server import (
    LiveMeeting,
    cluster_env,
    gateway,
    lost_turns,
    nothing_left,
    recall,
    redis_server,
    script_words,
    worker,
)
from tests.support import FIXTURES, free_port, load_wav, ws_url

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Cluster:
    base_url: str
    redis_url: str
    worker_port: int
    key: str
    logs: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("redis_cluster")
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        env = cluster_env(tmp, redis_url, f"sqlite+aiosqlite:///{tmp / 'meetings.db'}")
        worker_port, _ = stack.enter_context(worker(env, tmp / "worker.log"))
        base_url, _ = stack.enter_context(gateway(env, tmp / "gateway.log"))
        yield Cluster(base_url, redis_url, worker_port, env["AUDIO_ENCRYPTION_KEY"], tmp)


async def _sealed_chunk(redis_url: str, meeting: LiveMeeting) -> bytes:
    """The first audio entry Redis holds for the meeting, read while it records."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(120):
            while True:
                if meeting.session_id is not None:
                    entries = await redis.xrange(streams.audio_key(meeting.session_id), count=1)
                    if entries:
                        return entries[0][1][streams.CHUNK]
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


async def test_a_meeting_is_transcribed_live_by_a_worker_and_nothing_stays_in_redis(cluster: Cluster) -> None:
    pcm, rate = load_wav("meeting_two_voices.wav")
    meeting = LiveMeeting(ws_url(cluster.base_url), pcm, rate)
    streaming = asyncio.create_task(meeting.run())
    sealed = await _sealed_chunk(cluster.redis_url, meeting)
    final = await streaming

    clear = Fernet(cluster.key.encode()).decrypt(sealed)  # stored sealed with the shared key
    assert sealed[:2] == b"gA" and clear == pcm[: len(clear) // 2].tobytes() and len(clear) >= 3200
    assert meeting.stop_sent_at is not None
    live = meeting.partials()
    assert any(m["committed"] for m in live if m["received_at"] < meeting.stop_sent_at), "committed text while live"
    assert recall(final["transcript"], script_words("meeting_two_voices")) >= 0.7, final["transcript"]
    assert not lost_turns(final["transcript"], "meeting_two_voices"), final["transcript"]
    assert final["session_id"] == meeting.session_id and final["errors"] == []
    statuses = [m["status"] for m in meeting.messages if m["type"] == "status"]
    assert statuses[-4:] == ["transcribing", "diarizing", "summarizing", "done"]

    await nothing_left(cluster.redis_url)
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        stored = (await http.get(f"/api/meetings/{meeting.session_id}")).json()
        worker_metrics = (await http.get(f"http://127.0.0.1:{cluster.worker_port}/metrics")).text
    assert stored["status"] == "done" and stored["source"] == "live"  # stored by the worker, read by the gateway
    assert 'meeting_assistant_jobs_total{stage="asr_final"} 1.0' in worker_metrics
    assert "meeting_assistant_session_takeovers_total 0.0" in worker_metrics


async def test_an_upload_is_finished_by_a_worker(cluster: Cluster) -> None:
    audio = (FIXTURES / "one_voice.wav").read_bytes()
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=60) as http:
        answer = await http.post("/api/meetings", files={"file": ("one_voice.wav", audio, "audio/wav")})
        assert answer.status_code == 202, answer.text
        meeting_id = answer.json()["id"]
        deadline = time.monotonic() + 300
        while (meeting := (await http.get(f"/api/meetings/{meeting_id}")).json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, f"upload not finished: {meeting['status']}"
            await asyncio.sleep(0.5)
    assert meeting["status"] == "done" and meeting["source"] == "upload", meeting["errors"]
    text = " ".join(segment["text"] for segment in meeting["segments"])
    assert recall(text, script_words("one_voice")) >= 0.7 and not lost_turns(text, "one_voice"), text
    await nothing_left(cluster.redis_url)


def test_redis_mode_needs_a_redis_url() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        load_settings(_env_file=None, orchestrator_backend="redis")
    with pytest.raises(ConfigurationError, match="REDIS_URL: .*redis://"):
        load_settings(_env_file=None, orchestrator_backend="redis", redis_url="http://localhost:6379")
    assert load_settings(_env_file=None).orchestrator_backend == "asyncio"


async def test_an_unreachable_redis_stops_start_up_naming_redis_url() -> None:
    from services.redis_backend.gateway import connect_checked

    settings = load_settings(
        _env_file=None, orchestrator_backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    with pytest.raises(ConfigurationError, match="REDIS_URL: the Redis server cannot be reached"):
        await connect_checked(settings)

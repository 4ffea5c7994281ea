"""A dropped socket resumes through any gateway (Redis mode), as real processes: one redis-server,
one `python -m worker`, two `uvicorn app:app` gateways, one SQLite store, a real WebSocket client.

The client records on gateway 1, loses its socket and resumes on gateway 2, which holds none of
the session: the recording moves there (services/redis_backend/resumes.py) and one final covers
the whole meeting, stored once, its hooks run once; gateway 1, whose grace runs out later, leaves
it alone. Then the same when gateway 1 has not noticed that the first socket is dead: gateway 2
asks it to let go, and the first socket is closed. Last, two gateways' registries in this process
on a real redis-server: a recording moved away and back has one owner at a time, and one whose
grace ran out where it was parked is finished there and moved nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from observability import Metrics
from services.audio_buffer import AudioCipher
from services.redis_backend import gateway as gateway_module
from services.redis_backend import streams
from services.redis_backend.gateway import RemotePipeline
from services.redis_backend.relay import RemotePump
from services.redis_backend.resumes import RemoteResumes
from services.resume import ParkedRecording
from services.sql_meeting_store import SqlMeetingStore, sqlite_url
from tests.redis_server import (
    cluster_env,
    gateway,
    lost_turns,
    nothing_left,
    recall,
    redis_server,
    script_words,
    worker,
)
from tests.support import load_wav, make_settings, straddles, ws_url

pytestmark = pytest.mark.timeout(900)

GRACE_SECONDS = 8


@dataclass(frozen=True)
class Cluster:
    gateways: tuple[str, str]
    redis_url: str
    logs: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("redis_resume")
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        env = cluster_env(
            tmp, redis_url, f"sqlite+aiosqlite:///{tmp / 'meetings.db'}", RESUME_GRACE_SECONDS=str(GRACE_SECONDS)
        )
        stack.enter_context(worker(env, tmp / "worker.log"))
        first, _ = stack.enter_context(gateway(env, tmp / "gateway_1.log"))
        second, _ = stack.enter_context(gateway(env, tmp / "gateway_2.log"))
        yield Cluster((first, second), redis_url, tmp)


async def _until_message(
    ws: Any, check: Any, limit: float = 120.0, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    async with asyncio.timeout(limit):
        while True:
            message = json.loads(await ws.recv())
            if seen is not None:
                seen.append(message)
            if check(message):
                return message


@contextlib.asynccontextmanager
async def _recording(base_url: str, pcm: np.ndarray) -> AsyncIterator[tuple[Any, str]]:
    """A client that started a meeting, sent `pcm` and saw a partial (a worker holds the meeting)."""
    ws = await websockets.connect(ws_url(base_url), max_size=None)
    try:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16_000, "title": "Moved"}))
        hello = await _until_message(ws, lambda m: m.get("session_id"))
        await ws.send(pcm.tobytes())
        await _until_message(ws, lambda m: m["type"] == "partial_transcript")
        yield ws, hello["session_id"]
    finally:
        ws.transport.abort()


async def _resume_and_finish(
    base_url: str,
    session_id: str,
    pcm: np.ndarray,
    seen: list[dict[str, Any]] | None = None,
    *,
    new_capture: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resume `session_id` on `base_url`, send the rest of `pcm`, stop: the answer and the final
    (and every message after the answer in `seen`)."""
    async with websockets.connect(ws_url(base_url), max_size=None) as ws:
        start = {"type": "start", "sample_rate": 16_000, "resume": session_id, "new_capture": new_capture}
        await ws.send(json.dumps(start))
        answer = await _until_message(ws, lambda m: m.get("resumed") or m["type"] == "error")
        assert answer.get("resumed"), answer
        await ws.send(pcm[int(answer["received_seconds"] * 16_000) :].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        final = await _until_message(ws, lambda m: m["type"] == "final", limit=300, seen=seen)
    return answer, final


def _check_final(final: dict[str, Any], pcm: np.ndarray, session_id: str) -> None:
    assert final["session_id"] == session_id
    assert abs(final["metrics"]["audio_seconds"] - len(pcm) / 16_000) < 0.05, "one final for the whole meeting"
    assert recall(final["transcript"], script_words("meeting_two_voices")) >= 0.7, final["transcript"]
    assert not lost_turns(final["transcript"], "meeting_two_voices"), final["transcript"]


async def _let_go_logged(log: Path, session_id: str) -> None:
    """Wait until gateway 1's grace ran out and it found the recording moved (it leaves it alone)."""
    async with asyncio.timeout(GRACE_SECONDS + 60):
        while True:
            if f"session {session_id}: resumed on another gateway" in await asyncio.to_thread(log.read_text):
                return
            await asyncio.sleep(0.2)


async def test_a_dropped_socket_resumes_on_another_gateway(cluster: Cluster) -> None:
    pcm, _ = load_wav("meeting_two_voices.wav")
    cut = 10 * 16_000
    async with _recording(cluster.gateways[0], pcm[:cut]) as (_, session_id):
        pass  # the network goes: gateway 1 parks the recording
    seen: list[dict[str, Any]] = []
    answer, final = await _resume_and_finish(cluster.gateways[1], session_id, pcm, seen)

    assert answer["session_id"] == session_id and answer["received_seconds"] == pytest.approx(10.0, abs=0.01)
    _check_final(final, pcm, session_id)
    committed = [m for m in seen if m["type"] == "partial_transcript" and m["committed"] and m["text"]]
    assert not any(straddles(m, 10.0) for m in committed), f"the worker committed at the drop: {committed}"
    await _let_go_logged(cluster.logs / "gateway_1.log", session_id)
    await nothing_left(cluster.redis_url)  # gateway 1 wrote no stop or cancel marker of its own
    async with httpx.AsyncClient(timeout=30) as http:
        listed = (await http.get(f"{cluster.gateways[0]}/api/meetings")).json()["meetings"]
    assert [m["status"] for m in listed if m["id"] == session_id] == ["done"]
    lines = (await asyncio.to_thread((cluster.logs / "meetings.jsonl").read_text)).splitlines()
    assert [json.loads(line)["title"] for line in lines if session_id in line] == ["Moved"], "hooks ran once"


async def test_a_reloaded_page_resumes_on_another_gateway_with_a_new_capture(cluster: Cluster) -> None:
    """The page reloaded mid-phrase ("... the launch plan for the new") and records the meeting again from its
    start: the worker hears the new capture on its own (`streams.AFRESH`). Heard with the second before the
    drop, the old audio's "new" came out as a word of its own before "Good morning"."""
    pcm, _ = load_wav("meeting_two_voices.wav")
    cut = int(4.2 * 16_000)
    async with _recording(cluster.gateways[0], pcm[:cut]) as (_, session_id):
        pass
    seen: list[dict[str, Any]] = []
    answer, final = await _resume_and_finish(
        cluster.gateways[1], session_id, np.concatenate([pcm[:cut], pcm]), seen, new_capture=True
    )

    assert answer["received_seconds"] == pytest.approx(4.2, abs=0.01)
    after = [m for m in final["segments"] if m["start"] >= 4.2 - 0.1]
    assert after and after[0]["text"].lower().startswith("good morning"), final["segments"]
    assert final["transcript"].lower().count("good morning") == 2, final["transcript"]
    await nothing_left(cluster.redis_url)


async def test_a_gateway_that_has_not_noticed_the_drop_lets_the_recording_go(cluster: Cluster) -> None:
    pcm, _ = load_wav("meeting_two_voices.wav")
    cut = 8 * 16_000
    async with _recording(cluster.gateways[0], pcm[:cut]) as (old_socket, session_id):
        # the first socket stays open, as a dead network leaves it until the pings time out
        answer, final = await _resume_and_finish(cluster.gateways[1], session_id, pcm)
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(60):
                async for _ in old_socket:
                    pass
        assert old_socket.close_code is not None, "gateway 1 let the first socket go"

    assert answer["received_seconds"] == pytest.approx(8.0, abs=0.01)
    _check_final(final, pcm, session_id)
    await nothing_left(cluster.redis_url)


# --- who owns a moved recording: two gateways' registries in this process, a real redis-server ---


@dataclass
class Gateway:
    pipeline: RemotePipeline
    resumes: RemoteResumes
    finished: list[str]


@contextlib.asynccontextmanager
async def _gateways(tmp_path: Path, grace: float) -> AsyncIterator[tuple[Gateway, Gateway]]:
    with redis_server() as url, tempfile.TemporaryDirectory() as folder:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(await SqlMeetingStore.open(sqlite_url(Path(folder))))
            made = []
            for _ in range(2):
                redis = streams.connect(url)
                stack.push_async_callback(redis.aclose)
                settings = make_settings(tmp_path, orchestrator_backend="redis", redis_url=url)
                pipeline = RemotePipeline(
                    metrics=Metrics(), redis=redis, store=store, cipher=AudioCipher(None), settings=settings
                )
                finished: list[str] = []

                def finish(parked: ParkedRecording, done: list[str] = finished) -> None:
                    done.append(parked.session_id)
                    stack.push_async_callback(_pump(parked).aclose)

                resumes = RemoteResumes(grace, finish, pipeline)
                stack.push_async_callback(resumes.aclose)
                made.append(Gateway(pipeline, resumes, finished))
            yield made[0], made[1]


async def _parked_recording(gateway: Gateway, session_id: str) -> ParkedRecording:
    """A recording with 2 s of audio relayed to Redis, parked: its client is gone."""
    parts = gateway.pipeline.open_session(session_id, lambda update, lag: None)
    parts.buffer.append(np.ones(2 * 16_000, dtype=np.int16))
    assert isinstance(parts.pump, RemotePump)
    assert await parts.pump.flushed() == 2 * 16_000
    parked = ParkedRecording(session_id, "Moved", 1_700_000_000.0, parts)
    gateway.resumes.park(parked)
    return parked


def _pump(parked: ParkedRecording) -> RemotePump:
    assert isinstance(parked.parts.pump, RemotePump)
    return parked.parts.pump


async def test_a_recording_moved_away_and_back_has_one_owner_at_a_time(tmp_path: Path) -> None:
    async with _gateways(tmp_path, grace=30.0) as (first, second):
        parked = await _parked_recording(first, "m1")
        moved = await second.resumes.claim_anywhere("m1")  # the client resumed on the second gateway
        assert moved is not None and moved.parts.buffer.samples == 2 * 16_000 and moved.title == "Moved"
        second.resumes.attach("m1", lambda: second.resumes.park(moved))  # its socket serves it now

        back = await first.resumes.claim_anywhere("m1")  # and then, once more, on the first one
        assert back is not None and back.parts is not moved.parts, "moved back by the second gateway"
        assert not _pump(parked).open, "the relay it left here is closed (the second's, when its grace runs out)"
        assert await second.resumes.claim_anywhere("unknown") is None
        await _pump(back).aclose()
    assert first.finished == second.finished == [], "nobody finished a recording its client carried on with"


async def test_a_recording_whose_grace_ran_out_is_not_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "HANDOFF_WAIT_SECONDS", 1.0)
    async with _gateways(tmp_path, grace=0.2) as (first, second):
        await _parked_recording(first, "m2")
        async with asyncio.timeout(30):
            while True:  # the grace runs out
                if first.finished:
                    break
                await asyncio.sleep(0.05)
        assert await second.resumes.claim_anywhere("m2") is None, "finished where it was: unknown elsewhere"
    assert first.finished == ["m2"] and second.finished == []

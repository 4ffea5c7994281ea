"""The scale-out promise, as real processes: two gateways, two workers, one Redis, one PostgreSQL.

Two meetings stream at real-time pace, one through each gateway; both are taken by worker A.
Worker B is started beforehand but frozen (SIGSTOP, after its blocking read has timed out) so
that both meetings land on A even on a loaded machine where starting a worker takes a minute;
it is thawed (SIGCONT) and then A is killed with SIGKILL mid-meeting. B must
take both meetings over from their stored audio: the participants keep getting partials, both
finals have every scripted turn (key words as a run without a kill has them: bench/redis_failover_bench.py
scores 0.79 to 0.90 without one), both meetings are stored, and no job stays pending. B carries
the committed transcript over: no segment a participant holds as committed is sent again (or
changed), and the final's segments do not overlap (committed audio transcribed twice would).
The pause the participants saw and stop -> final are printed (figures: bench/redis_failover_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from redis.asyncio import Redis

from services.redis_backend import streams
from tests.pg_server import create_database
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
from tests.support import load_wav, ws_url

pytestmark = pytest.mark.timeout(1200)

SCRIPTS = (("meeting_two_voices", "meeting_three_voices"), ("meeting_four_voices", "meeting_two_voices"))
KILL_AFTER_SECONDS = 20.0
"""Audio both meetings have sent when worker A is killed (about 53 s each in all)."""


def meeting_audio(names: tuple[str, ...]) -> tuple[np.ndarray, int]:
    parts = [load_wav(f"{name}.wav") for name in names]
    assert {rate for _, rate in parts} == {16_000}
    return np.concatenate([pcm for pcm, _ in parts]), 16_000


async def _until(check: Callable[[], Awaitable[bool]], limit: float) -> None:
    async with asyncio.timeout(limit):
        while True:
            if await check():
                return
            await asyncio.sleep(0.2)


async def _leases(redis_url: str, meetings: list[LiveMeeting]) -> list[bytes | None]:
    redis = Redis.from_url(redis_url)
    try:
        return [await redis.get(streams.lease_key(m.session_id or "")) for m in meetings]
    finally:
        await redis.aclose()


async def test_a_worker_killed_mid_meeting_loses_no_word(tmp_path: Path, postgres_admin_url: str) -> None:
    database_url = await create_database(postgres_admin_url, "takeover")
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        env = cluster_env(tmp_path, redis_url, database_url)
        _, worker_a = stack.enter_context(worker(env, tmp_path / "worker_a.log"))
        worker_b_port, worker_b = stack.enter_context(worker(env, tmp_path / "worker_b.log"))
        stack.callback(os.kill, worker_b.pid, signal.SIGCONT)  # never left frozen
        os.kill(worker_b.pid, signal.SIGSTOP)
        await asyncio.sleep(3)  # its pending XREADGROUP (1 s block) has returned empty
        gateways = [stack.enter_context(gateway(env, tmp_path / f"gateway_{i}.log"))[0] for i in (1, 2)]
        meetings = []
        for base_url, names in zip(gateways, SCRIPTS, strict=True):
            pcm, rate = meeting_audio(names)
            meetings.append(LiveMeeting(ws_url(base_url), pcm, rate))
        streaming = [asyncio.create_task(m.run()) for m in meetings]

        async def both_held_by_a() -> bool:
            if not all(m.session_id for m in meetings):
                return False
            holders = await _leases(redis_url, meetings)
            return all(h is not None and h.endswith(f"-{worker_a.pid}".encode()) for h in holders)

        async def kill_time() -> bool:
            return all(m.sent_seconds >= KILL_AFTER_SECONDS for m in meetings)

        await _until(both_held_by_a, 120)
        await _until(kill_time, 180)
        assert all(m.partials() for m in meetings), "worker A was transcribing both meetings"
        os.kill(worker_b.pid, signal.SIGCONT)
        os.kill(worker_a.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        finals = await asyncio.gather(*streaming)

        for meeting, final, names in zip(meetings, finals, SCRIPTS, strict=True):
            assert meeting.stop_sent_at is not None
            committed_before = {
                m["segment_id"] for m in meeting.partials() if m["committed"] and m["received_at"] < killed_at
            }
            assert committed_before, "worker A had committed text before it died"
            resent = [m for m in meeting.partials(after=killed_at) if m["segment_id"] in committed_before]
            assert not resent, f"committed segments sent again after the takeover: {resent}"
            spans = sorted((s["start"], s["end"]) for s in final["segments"])
            overlaps = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1] - 0.5]
            assert not overlaps, f"audio transcribed twice: {overlaps}"
            resumed = meeting.partials(after=killed_at)
            assert any(m["received_at"] < meeting.stop_sent_at for m in resumed), "live partials after the kill"
            score = recall(final["transcript"], script_words(*names))
            assert score >= 0.7 and not lost_turns(final["transcript"], *names), (score, final["transcript"])
            pause = resumed[0]["received_at"] - killed_at
            stop_to_final = final["received_at"] - meeting.stop_sent_at
            print(f"{meeting.session_id}: pause {pause:.1f} s, stop->final {stop_to_final:.1f} s, recall {score:.2f}")

        await nothing_left(redis_url)
        async with httpx.AsyncClient(timeout=30) as http:
            metrics = (await http.get(f"http://127.0.0.1:{worker_b_port}/metrics")).text
            for meeting, other_gateway in zip(meetings, reversed(gateways), strict=True):
                stored = (await http.get(f"{other_gateway}/api/meetings/{meeting.session_id}")).json()
                assert stored["status"] == "done" and stored["segments"], stored
        assert "meeting_assistant_session_takeovers_total 2.0" in metrics
        assert worker_a.wait(timeout=10) == -signal.SIGKILL


async def test_a_worker_stopped_with_sigterm_hands_its_meeting_over(tmp_path: Path) -> None:
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        env = cluster_env(tmp_path, redis_url, f"sqlite+aiosqlite:///{tmp_path / 'meetings.db'}")
        _, worker_a = stack.enter_context(worker(env, tmp_path / "worker_a.log"))
        worker_b_port, worker_b = stack.enter_context(worker(env, tmp_path / "worker_b.log"))
        stack.callback(os.kill, worker_b.pid, signal.SIGCONT)
        os.kill(worker_b.pid, signal.SIGSTOP)
        await asyncio.sleep(3)
        base_url, _ = stack.enter_context(gateway(env, tmp_path / "gateway.log"))
        pcm, rate = load_wav("meeting_two_voices.wav")
        meeting = LiveMeeting(ws_url(base_url), pcm, rate)
        streaming = asyncio.create_task(meeting.run())

        async def held_by_a_for_a_while() -> bool:
            [holder] = await _leases(redis_url, [meeting]) if meeting.session_id else [None]
            return holder is not None and holder.endswith(f"-{worker_a.pid}".encode()) and meeting.sent_seconds >= 8

        await _until(held_by_a_for_a_while, 120)
        os.kill(worker_b.pid, signal.SIGCONT)
        worker_a.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker_a.wait, 120) == 0, "a clean exit"
        final = await streaming

        score = recall(final["transcript"], script_words("meeting_two_voices"))
        assert score >= 0.7 and not lost_turns(final["transcript"], "meeting_two_voices"), (score, final["transcript"])
        await nothing_left(redis_url)
        async with httpx.AsyncClient(timeout=30) as http:
            metrics = (await http.get(f"http://127.0.0.1:{worker_b_port}/metrics")).text
        assert "meeting_assistant_session_takeovers_total 1.0" in metrics

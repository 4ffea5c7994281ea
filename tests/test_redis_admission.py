"""Admission by load in Redis mode: workers publish their headroom, gateways admit by it.

First against a real redis-server with the worker's and gateway's parts in this process (a load
meter fed with injected readings, as tests/test_capacity.py feeds it): what a worker publishes, that
a report expires when its worker stops refreshing it, and how a gateway counts the meetings on their
way to a worker. Then as real processes: a `uvicorn app:app` gateway and a `python -m worker` with
room for one meeting (WORKER_MAX_SESSIONS=1: a room that does not move with the CPU cost this busy
machine happens to measure); two gateways asked for that one slot at the same moment admit one
meeting; /ready, /health and a second meeting's `busy` + 1013 follow the worker's report, and a
frozen worker stops counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from observability import Metrics
from services.capacity import CapacityPolicy, LoadMeter
from services.live_load import Reading
from services.redis_backend import fleet, streams
from services.redis_backend.fleet import FleetLoad, WorkerLoad, read_reports
from services.redis_backend.reservations import Reservations
from services.redis_backend.streams import MeetingJob
from tests.redis_server import LiveMeeting, cluster_env, gateway, recall, redis_server, script_words, worker
from tests.support import load_wav, ws_url

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    with redis_server() as url:
        client = streams.connect(url)
        await streams.ensure_group(client)
        yield client
        await client.aclose()


def _meter(session_cpu: float = 0.6) -> LoadMeter:
    return LoadMeter(CapacityPolicy(max_sessions=4, cores=2.0, cpu_target=0.9, session_cpu=session_cpu), Metrics())


async def test_workers_publish_their_headroom_and_a_silent_one_stops_counting(redis: Redis) -> None:
    held = {"a": 1, "b": 0}
    roomy, full = _meter(), _meter(session_cpu=1.0)  # 3 fit (1 held) / 1 fits (0 held, then overloaded)
    now = time.monotonic()
    for at in (now - 1.0, now - 0.5, now):  # b's meetings fall behind: its lag guard closes
        full.update(Reading(at=at, cpu_seconds=at * 1.8, audio_seconds=at * 2.0, lag=5.0))
    a = WorkerLoad(redis, "a", roomy, lambda: held["a"])
    b = WorkerLoad(redis, "b", full, lambda: held["b"])
    await a.publish()
    await b.publish()
    reports = await read_reports(redis)
    assert (reports["a"].remaining, reports["a"].active, reports["a"].overloaded) == (2, 1, False)
    assert (reports["b"].remaining, reports["b"].overloaded) == (0, True)
    assert await b.may_take_new() is False, "b leaves new jobs to a, which has room"
    assert await a.may_take_new() is True

    gateway_view = FleetLoad(redis, CapacityPolicy(max_sessions=16), Metrics())
    await gateway_view.refresh()
    assert gateway_view.capacity(active=0) == 2 and not gateway_view.overloaded()
    reservations = Reservations(redis)
    assert await reservations.reserve("s8")  # admitted, no audio sent yet
    assert await reservations.reserve("s9", checked=False)  # queued (as its first audio queues it)
    await redis.xadd(streams.JOBS, MeetingJob("s9", None, 0.0).to_fields())  # no worker read it yet
    await gateway_view.refresh()
    assert gateway_view.capacity(active=2) == 0
    body = gateway_view.describe(active=2)
    assert body["waiting_jobs"] == 1 and body["reserved_sessions"] == 2 and body["live_workers"] == 2

    await a.withdraw()  # a stops; b's report lapses (its worker froze)
    await asyncio.sleep(fleet.REPORT_TTL_SECONDS + 0.2)
    await gateway_view.refresh()
    assert gateway_view.reports == {} and gateway_view.capacity(active=0) == 0
    assert await redis.smembers(streams.WORKERS) == set(), "the silent worker is pruned"
    assert await b.may_take_new() is True, "with nobody else to take them, b takes admitted meetings"


async def _until(check: Callable[[], Awaitable[bool]], limit: float, what: str) -> None:
    try:
        async with asyncio.timeout(limit):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {limit:g} s: {what}") from None


async def _ready(http: httpx.AsyncClient, base_url: str) -> tuple[int, dict[str, object]]:
    answer = await http.get(f"{base_url}/ready")
    return answer.status_code, answer.json()


async def _refused(base_url: str) -> tuple[dict[str, object], int | None]:
    """Open a socket as a client would; the first message and the close code."""
    async with websockets.connect(ws_url(base_url)) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        return first, ws.close_code


async def _race(base_urls: list[str]) -> list[str]:
    """Open a socket on each gateway at once and hold them all open until each got its first message:
    what each got (`status`: admitted, `busy`: refused). The sessions never send audio."""
    async with contextlib.AsyncExitStack() as stack:
        sockets = await asyncio.gather(*(stack.enter_async_context(websockets.connect(ws_url(u))) for u in base_urls))
        firsts = [json.loads(m) for m in await asyncio.gather(*(asyncio.wait_for(ws.recv(), 30) for ws in sockets))]
    return [first.get("code") or first["type"] for first in firsts]


async def test_a_gateway_admits_by_the_live_workers_headroom(tmp_path: Path) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        with redis_server() as redis_url, contextlib.ExitStack() as stack:
            env = cluster_env(
                tmp_path,
                redis_url,
                f"sqlite+aiosqlite:///{tmp_path / 'meetings.db'}",
                WORKER_MAX_SESSIONS="1",
                ADMISSION_RETRY_SECONDS="20",
            )
            base_url, _ = stack.enter_context(gateway(env, tmp_path / "gateway.log"))

            status, body = await _ready(http, base_url)
            assert (status, body["capacity"]) == (503, 0), "no worker yet: nothing can be served"
            first, code = await _refused(base_url)
            assert (first["code"], first["retry_after"], code) == ("busy", 20, 1013)

            _, worker_process = stack.enter_context(worker(env, tmp_path / "worker.log"))
            stack.callback(os.kill, worker_process.pid, signal.SIGCONT)  # never left frozen

            async def ready() -> bool:
                return (await _ready(http, base_url))[0] == 200

            async def full() -> bool:
                return (await _ready(http, base_url))[0] == 503

            await _until(ready, 30, "the worker's report makes the gateway ready")
            capacity = (await http.get(f"{base_url}/health")).json()["capacity"]
            assert capacity["remaining"] == 1 and capacity["backend"] == "redis"
            assert [(w["remaining"], w["active"]) for w in capacity["workers"]] == [(1, 0)]

            other_url, _ = stack.enter_context(gateway(env, tmp_path / "gateway_2.log"))
            assert sorted(await _race([base_url, other_url])) == ["busy", "status"], "one slot, one meeting"
            await _until(ready, 30, "the slot of a meeting closed before its audio is free again")

            pcm, rate = load_wav("meeting_two_voices.wav")
            meeting = LiveMeeting(ws_url(base_url), pcm, rate)
            streaming = asyncio.create_task(meeting.run())
            await _until(full, 30, "the admitted meeting is counted at once, before a worker took it")

            async def held_by_the_worker() -> bool:
                capacity = (await http.get(f"{base_url}/health")).json()["capacity"]
                return [w["active"] for w in capacity["workers"]] == [1] and capacity["reserved_sessions"] == 0

            await _until(held_by_the_worker, 60, "the worker reports the meeting it took")
            assert not streaming.done()
            capacity = (await http.get(f"{base_url}/health")).json()["capacity"]
            assert capacity["remaining"] == 0 and [w["remaining"] for w in capacity["workers"]] == [0]
            first, code = await _refused(base_url)
            assert (first["code"], code) == ("busy", 1013) and first["retry_after"] == 20
            assert "try again in 20 s" in str(first["message"])
            assert not streaming.done(), "refused while the admitted meeting was being served"

            final = await streaming  # the admitted meeting is served in full
            assert recall(final["transcript"], script_words("meeting_two_voices")) >= 0.7, final["transcript"]
            await _until(ready, 30, "the worker has room again once the meeting is finished")

            os.kill(worker_process.pid, signal.SIGSTOP)  # as good as dead: its report lapses
            await _until(full, fleet.REPORT_TTL_SECONDS + 10, "a frozen worker no longer counts")
            assert (await http.get(f"{base_url}/health")).json()["capacity"]["live_workers"] == 0
            os.kill(worker_process.pid, signal.SIGCONT)
            await _until(ready, 30, "a worker that comes back counts again")
            name = "meeting_assistant_sessions_refused_total{"
            refused = [
                line
                for url in (base_url, other_url)
                for line in (await http.get(f"{url}/metrics")).text.splitlines()
                if line.startswith(name) and line.split('"')[1] in ("capacity", "overloaded")
            ]
            counted = sum(float(line.split()[-1]) for line in refused)
            assert counted == 3, refused  # no room / falling behind: two here, the lost race on either gateway

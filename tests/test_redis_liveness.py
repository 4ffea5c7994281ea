"""A dead worker is known by its missing connections (services/redis_backend/liveness.py).

A real redis-server and a real process standing in for a worker: it names its connection, reads a
job and takes the meeting's lease (a minute long), as `python -m worker` does, and is SIGKILLed.
Its job is then found orphaned (the kernel closed its socket; no lease has lapsed) and its lease can
be taken at once; a worker that still has its connection is never taken for gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.redis_backend import streams
from services.redis_backend.lease import Lease
from services.redis_backend.liveness import GONE_SECONDS, OrphanFinder
from services.redis_backend.streams import MeetingJob
from tests.redis_server import ROOT, redis_server

pytestmark = pytest.mark.timeout(120)

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from services.redis_backend import streams

    async def main():
        redis = streams.connect(sys.argv[1], client_name=sys.argv[2])
        await redis.xreadgroup(streams.GROUP, sys.argv[2], {streams.JOBS: ">"}, count=1)
        await redis.set(streams.lease_key(sys.argv[3]), sys.argv[2], px=60_000)
        print("holding", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    with redis_server() as url:
        yield url


@contextlib.asynccontextmanager
async def _holding_worker(redis_url: str, name: str, session_id: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process that holds `session_id`'s job and lease, as a worker does; killed on the way out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, redis_url, name, session_id, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 60) == b"holding\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_killed_workers_job_is_found_at_once_and_its_lease_taken(redis_url: str) -> None:
    redis = streams.connect(redis_url, client_name="survivor")
    alive = streams.connect(redis_url, client_name="alive-worker")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(redis.aclose)
        stack.push_async_callback(alive.aclose)
        await streams.ensure_group(redis)
        await redis.xadd(streams.JOBS, MeetingJob("m1", None, 0.0).to_fields())
        dead = await stack.enter_async_context(_holding_worker(redis_url, "dead-worker", "m1"))
        await redis.xadd(streams.JOBS, MeetingJob("m2", None, 0.0).to_fields())
        await alive.xreadgroup(streams.GROUP, "alive-worker", {streams.JOBS: ">"}, count=1)
        await alive.set(streams.lease_key("m2"), "alive-worker", px=60_000)
        finder = OrphanFinder(redis, "survivor")
        assert await finder.find() == [], "both holders are connected"

        dead.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(dead.wait(), 30) == -signal.SIGKILL
        found: list[tuple[bytes, str]] = []
        async with asyncio.timeout(30):
            while not found:
                await asyncio.sleep(GONE_SECONDS / 4)
                found = await finder.find()

        [(entry_id, holder)] = found
        assert holder == "dead-worker" and await redis.xrange(streams.JOBS, entry_id, entry_id)
        assert await redis.pttl(streams.lease_key("m1")) > 30_000, "taken long before its lease would lapse"
        assert await Lease(redis, "m1", "survivor", 5.0).acquire(replacing="dead-worker")
        assert await redis.get(streams.lease_key("m1")) == b"survivor"
        assert not await Lease(redis, "m2", "survivor", 5.0).acquire(replacing="dead-worker")
        assert not await Lease(redis, "m2", "survivor", 5.0).acquire(), "a living worker's lease stays its own"


async def test_where_client_list_is_refused_only_leases_decide(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await redis.execute_command("ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all", "-client")
        limited = Redis.from_url(redis_url, username="worker", password="pw")
        await streams.ensure_group(limited)
        finder = OrphanFinder(limited, "survivor")
        assert await finder.find() == [] and not finder.enabled
        await limited.aclose()
    finally:
        await redis.aclose()

"""Admission across gateways (services/redis_backend/reservations.py) against a real redis-server.

Each gateway here is what a `uvicorn app:app` gateway holds: its own Redis connection, its
`FleetLoad` snapshot and its `Reservations`. A worker publishes its headroom with the worker's own
`WorkerLoad`. The race the snapshots cannot settle (every snapshot says one slot is left) is
settled in Redis: exactly as many meetings are admitted as there are slots, a worker taking a
meeting moves it from its reservation to its report in one step, and the reservation of a gateway
that died lapses while a living gateway's is renewed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from observability import Metrics
from services.capacity import CapacityPolicy, LoadMeter
from services.redis_backend import streams
from services.redis_backend.fleet import FleetLoad, WorkerLoad
from services.redis_backend.reservations import RESERVATIONS, Reservations, live_reservations
from services.tasks import cancel_and_wait
from tests.redis_server import redis_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
async def worker_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = streams.connect(redis_url)
    yield client
    await client.aclose()


@dataclass
class Gateway:
    redis: Redis
    fleet: FleetLoad
    reservations: Reservations


@pytest.fixture
async def gateways(redis_url: str) -> AsyncIterator[list[Gateway]]:
    made = []
    for _ in range(6):
        client = streams.connect(redis_url)  # one connection pool per gateway, as separate processes have
        await streams.ensure_group(client)
        fleet = FleetLoad(client, CapacityPolicy(max_sessions=16), Metrics())
        made.append(Gateway(client, fleet, Reservations(client)))
    yield made
    for gateway in made:
        await gateway.redis.aclose()


async def _worker(redis: Redis, held: dict[str, int], slots: int) -> WorkerLoad:
    """A worker with room for `slots` meetings (WORKER_MAX_SESSIONS, no load measured yet)."""
    policy = CapacityPolicy(max_sessions=slots, cores=8.0, cpu_target=0.9, session_cpu=0.1)
    load = WorkerLoad(redis, "w1", LoadMeter(policy, Metrics()), lambda: held["n"])
    await load.publish()
    return load


async def test_gateways_racing_for_the_last_slots_admit_exactly_as_many_as_there_are(
    worker_redis: Redis, gateways: list[Gateway]
) -> None:
    held = {"n": 0}
    worker = await _worker(worker_redis, held, slots=2)
    for gateway in gateways:
        await gateway.fleet.refresh()
    assert [g.fleet.capacity(active=0) for g in gateways] == [2] * 6, "every snapshot says two slots are free"

    contenders = [(g, f"s{i}-{n}") for n in range(3) for i, g in enumerate(gateways)]
    admitted = await asyncio.gather(*(g.reservations.reserve(sid) for g, sid in contenders))

    assert sum(admitted) == 2, admitted
    assert await live_reservations(gateways[0].redis) == 2
    await gateways[0].fleet.refresh()
    assert gateways[0].fleet.capacity(active=0) == 0 and gateways[0].fleet.describe(0)["reserved_sessions"] == 2
    winners = [sid for (_, sid), won in zip(contenders, admitted, strict=True) if won]

    held["n"] = 1  # the worker takes the first winner's meeting: its report counts it, its reservation goes
    await worker.publish(taken=winners[0])
    assert await live_reservations(gateways[0].redis) == 1
    assert not await gateways[1].reservations.reserve("late"), "still full: the meeting moved, it was not freed"

    held["n"] = 0  # that meeting is over
    await worker.publish()
    assert await gateways[1].reservations.reserve("next"), "its slot is free again"


async def test_a_session_that_ends_before_a_worker_took_it_frees_its_slot(
    worker_redis: Redis, gateways: list[Gateway]
) -> None:
    await _worker(worker_redis, {"n": 0}, slots=1)
    first, second = gateways[0].reservations, gateways[1].reservations
    assert await first.reserve("s1") and not await second.reserve("s2")
    first.release("s1")  # closed before any audio
    await first.aclose()
    assert await second.reserve("s2")
    assert await gateways[2].reservations.reserve("upload", checked=False), "an upload is queued whatever the load"
    assert await live_reservations(gateways[0].redis) == 2


async def test_a_dead_gateways_reservation_lapses_and_a_living_ones_is_renewed(
    worker_redis: Redis, gateways: list[Gateway]
) -> None:
    worker = await _worker(worker_redis, {"n": 0}, slots=2)
    living = Reservations(gateways[0].redis, ttl=2.0)
    dead = Reservations(gateways[1].redis, ttl=2.0)  # its process is gone: nothing renews what it holds
    renewing, reporting = asyncio.create_task(living.run()), asyncio.create_task(worker.run())
    try:
        assert await living.reserve("kept") and await dead.reserve("orphan")
        assert not await gateways[2].reservations.reserve("third")
        before = await gateways[0].redis.zscore(RESERVATIONS, "kept")
        await asyncio.sleep(3.5)  # past the dead one's TTL; the living one renewed every 2/3 s
        assert await gateways[0].redis.zscore(RESERVATIONS, "kept") > before
        assert await live_reservations(gateways[0].redis) == 1, "the dead gateway's slot is free again"
        assert await gateways[2].reservations.reserve("third")
        assert not await gateways[3].reservations.reserve("fourth"), "the living gateway's slot is still held"
    finally:
        await cancel_and_wait(renewing)
        await cancel_and_wait(reporting)

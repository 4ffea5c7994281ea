"""Admission by load in Redis mode: each worker publishes its headroom, the gateways add it up.

A gateway runs no models, so its own CPU says nothing about the workers'. Each worker runs the same
`LoadMeter` as the single process (`services/capacity.py`) over its own meetings and publishes a
report every `REPORT_SECONDS` (`WorkerLoad`): a hash at `load_key(name)` with a TTL of
`REPORT_TTL_SECONDS` (sessions that still fit, sessions held, the measurements), and its name in
`WORKERS`. A worker that dies stops refreshing it: the report expires and the worker no longer
counts. A gateway (`FleetLoad`) reads the reports every `POLL_SECONDS` for `/ready`, `/health` and
a first cheap refusal; the admission itself is decided in Redis, atomically across gateways, by a
reservation (`reservations.py`): the live workers' remaining sessions less the meetings admitted
or queued that no report counts yet. A worker that takes a meeting removes its reservation in the
same transaction as the report that counts it. Refused clients get `busy` with `retry_after` and
close 1013, as in the single process.

A worker without headroom leaves new jobs to the workers that have some (`may_take_new`); when none
has, it takes them anyway: a gateway admitted them, and a worker that frees up serves them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from observability import Metrics
from services.capacity import CapacityPolicy, LoadMeter
from services.redis_backend import streams
from services.redis_backend.reservations import RESERVATIONS, live_reservations
from services.settings import Settings
from services.tasks import raise_if_cancelled

logger = logging.getLogger(__name__)

REPORT_SECONDS = 1.0
REPORT_TTL_SECONDS = 3.0
"""A report not refreshed for this long is gone: its worker died or froze."""
POLL_SECONDS = 0.5


def worker_policy(settings: Settings) -> CapacityPolicy:
    """A worker's meter: admission by load over its own CPU, up to WORKER_MAX_SESSIONS."""
    policy = CapacityPolicy.from_settings(settings)
    return dataclasses.replace(policy, by_load=settings.admission_by_load, max_sessions=settings.worker_max_sessions)


def gateway_policy(settings: Settings) -> CapacityPolicy:
    """A gateway's admission: MAX_SESSIONS here, and by the workers' reports when ADMISSION_BY_LOAD."""
    return dataclasses.replace(CapacityPolicy.from_settings(settings), by_load=settings.admission_by_load)


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One worker's headroom as it published it."""

    remaining: int
    active: int
    overloaded: bool
    session_cpu: float
    utilisation: float
    lag: float
    queue_wait: float

    def to_fields(self) -> dict[str, str]:
        fields = dataclasses.asdict(self)
        fields["overloaded"] = int(self.overloaded)
        return {name: str(value) for name, value in fields.items()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> LoadReport:
        """Raises:
        ValueError: not a report (a field missing or not a number).
        """
        try:
            number = {key.decode(): float(value) for key, value in fields.items()}
            return cls(
                remaining=int(number["remaining"]),
                active=int(number["active"]),
                overloaded=bool(number["overloaded"]),
                session_cpu=number["session_cpu"],
                utilisation=number["utilisation"],
                lag=number["lag"],
                queue_wait=number["queue_wait"],
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a load report: {exc}") from exc

    def describe(self, worker: str) -> dict[str, object]:
        return {
            "worker": worker,
            "remaining": self.remaining,
            "active": self.active,
            "overloaded": self.overloaded,
            "session_cpu": round(self.session_cpu, 3),
            "utilisation": round(self.utilisation, 3),
            "live_lag_seconds": round(self.lag, 2),
            "queue_wait_seconds": round(self.queue_wait, 3),
        }


async def read_reports(redis: Redis) -> dict[str, LoadReport]:
    """The live workers' reports by worker name; the names whose report expired are pruned."""
    names = sorted(name.decode() for name in await redis.smembers(streams.WORKERS))
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(streams.load_key(name))
        replies = await pipe.execute()
    reports, gone = {}, []
    for name, fields in zip(names, replies, strict=True):
        if not fields:
            gone.append(name)
            continue
        try:
            reports[name] = LoadReport.from_fields(fields)
        except ValueError as exc:
            logger.warning("worker %s: %s", name, exc)
    if gone:
        await redis.srem(streams.WORKERS, *gone)
    return reports


class WorkerLoad:
    """A worker's side: publish its meter's answer, and say whether to take a new meeting."""

    def __init__(self, redis: Redis, name: str, meter: LoadMeter, active: Callable[[], int]) -> None:
        self._redis = redis
        self.name = name
        self._meter = meter
        self._active = active

    def report(self) -> LoadReport:
        meter, active = self._meter, self._active()
        return LoadReport(
            remaining=meter.capacity(active),
            active=active,
            overloaded=meter.overloaded(),
            session_cpu=meter.session_cost,
            utilisation=meter.utilisation,
            lag=meter.lag,
            queue_wait=meter.queue_wait,
        )

    async def publish(self, *, taken: str | None = None) -> None:
        """Refresh the report now; right after taking meeting `taken`, its reservation goes in the
        same transaction (the meeting is counted by the report from then on, never twice or not at all)."""
        key = streams.load_key(self.name)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=self.report().to_fields())  # type: ignore[arg-type]
                pipe.pexpire(key, int(REPORT_TTL_SECONDS * 1000))
                pipe.sadd(streams.WORKERS, self.name)
                if taken is not None:
                    pipe.zrem(RESERVATIONS, taken)
                await pipe.execute()
        except RedisError as exc:  # the report lapses; the gateways stop counting this worker meanwhile
            logger.warning("publishing this worker's load failed: %s", exc)

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            await self.publish()
            await asyncio.sleep(REPORT_SECONDS)

    async def withdraw(self) -> None:
        """Stopping: gateways stop counting this worker at once."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(streams.load_key(self.name))
                pipe.srem(streams.WORKERS, self.name)
                await pipe.execute()
        except RedisError as exc:  # it expires by itself
            logger.warning("withdrawing this worker's load report failed: %s", exc)

    async def may_take_new(self) -> bool:
        """Whether to read a new job: with headroom, or when no other live worker has any."""
        if self.report().remaining > 0:
            return True
        try:
            reports = await read_reports(self._redis)
        except RedisError:
            return True
        return not any(report.remaining > 0 for name, report in reports.items() if name != self.name)


class FleetLoad:
    """A gateway's view of the workers' headroom, refreshed every `POLL_SECONDS`: `/ready`, `/health`
    and a first refusal without a round trip (the reservation in Redis decides the rest).

    It has the surface of the single process's `LoadMeter` that admission and `/health` use
    (`policy`, `capacity`, `overloaded`, `describe`).
    """

    def __init__(self, redis: Redis, policy: CapacityPolicy, metrics: Metrics) -> None:
        self._redis = redis
        self.policy = policy
        self._metrics = metrics
        self.reports: dict[str, LoadReport] = {}
        self.waiting = 0  # jobs no worker has read yet
        self.reserved = 0  # meetings admitted or queued that no report counts yet (every gateway's)
        self._read_at: float | None = None  # when the last good snapshot's reads began (monotonic)

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            await self.refresh()
            await asyncio.sleep(POLL_SECONDS)

    async def refresh(self) -> None:
        started = time.monotonic()
        try:
            reports = await read_reports(self._redis)
            waiting = await _waiting_jobs(self._redis)
            reserved = await live_reservations(self._redis)
        except RedisError as exc:
            logger.warning("reading the workers' load failed: %s", exc)
            if self._read_at is not None and started - self._read_at > REPORT_TTL_SECONDS:
                self.reports, self.waiting = {}, 0  # as old as a lapsed report: count no worker
            return
        self.reports, self.waiting, self.reserved, self._read_at = reports, waiting, reserved, started

    def room(self) -> int:
        """Meetings the live workers can still take, less those already on their way to one."""
        return sum(report.remaining for report in self.reports.values()) - self.reserved

    def capacity(self, active: int, now: float | None = None) -> int:
        room = self.policy.max_sessions - active
        if self.policy.by_load:
            room = min(room, self.room())
        remaining = max(0, room)
        self._metrics.capacity_sessions.set(remaining)
        return remaining

    def overloaded(self, now: float | None = None) -> bool:
        """Every live worker's lag guard is closed (its meetings fall behind)."""
        return self.policy.by_load and bool(self.reports) and all(r.overloaded for r in self.reports.values())

    def describe(self, active: int) -> dict[str, object]:
        """The capacity block of /health and /ready in Redis mode."""
        return {
            "remaining": self.capacity(active),
            "by_load": self.policy.by_load,
            "backend": "redis",
            "live_workers": len(self.reports),
            "waiting_jobs": self.waiting,
            "reserved_sessions": self.reserved,
            "overloaded": self.overloaded(),
            "workers": [report.describe(name) for name, report in sorted(self.reports.items())],
        }


async def _waiting_jobs(redis: Redis) -> int:
    for group in await redis.xinfo_groups(streams.JOBS):
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else str(name)) == streams.GROUP:
            return int(group.get("lag") or 0)
    return 0

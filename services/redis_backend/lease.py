"""Which worker holds a meeting: a key with a TTL, renewed while its holder lives.

`acquire()` takes a free lease (SET NX PX), or the lease of a worker known to be gone
(`liveness.py`). `hold()` renews it every third of its TTL and resets the job's idle time in the
consumer group (XCLAIM JUSTID), so other workers' XAUTOCLAIM leaves a living holder's job alone. A
renewal that finds the lease taken by another worker ends `hold()`: this worker stalled past its
TTL (or was taken for gone) and the meeting has moved on without it.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.redis_backend import streams
from services.tasks import raise_if_cancelled

logger = logging.getLogger(__name__)

# Renew only a lease that is still ours; take it back if it lapsed and nobody else took it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 or 0 end
return 0
"""
# Take a free lease, or one whose holder is gone (`liveness.py`) though its TTL still runs.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """Another worker holds the meeting now."""


class Lease:
    """One worker's hold on one meeting."""

    def __init__(self, redis: Redis, session_id: str, holder: str, seconds: float) -> None:
        self._redis = redis
        self._key = streams.lease_key(session_id)
        self._holder = holder.encode()
        self._ms = int(seconds * 1000)
        self._session_id = session_id

    async def acquire(self, *, replacing: str | None = None) -> bool:
        """Take the lease if it is free, or held by `replacing` (a worker known to be gone)."""
        if replacing is None:
            return bool(await self._redis.set(self._key, self._holder, nx=True, px=self._ms))
        return bool(await self._redis.eval(_TAKE, 1, self._key, self._holder, replacing, self._ms))

    async def hold(self, entry_id: bytes, consumer: str) -> None:
        """Renew until cancelled.

        Raises:
            LeaseLost: another worker took the meeting.
        """
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self._ms / 3000)
            try:
                renewed = await self._redis.eval(_RENEW, 1, self._key, self._holder, self._ms)
                if renewed:
                    await self._redis.xclaim(streams.JOBS, streams.GROUP, consumer, 0, [entry_id], justid=True)
            except RedisError as exc:  # Redis away for a moment: the TTL covers a few misses
                logger.warning("session %s: renewing the lease failed: %s", self._session_id, exc)
                continue
            if not renewed:
                raise LeaseLost(self._session_id)

    async def release(self) -> None:
        try:
            await self._redis.eval(_RELEASE, 1, self._key, self._holder)
        except RedisError as exc:  # it expires by itself
            logger.warning("session %s: releasing the lease failed: %s", self._session_id, exc)

"""Admission across gateways: a meeting's slot on the workers is reserved in Redis, atomically.

Each gateway reads the workers' load reports (`fleet.py`) every half second; two gateways deciding
from their own snapshots could both admit the last slot. So the decision is made in Redis, by one
script no other client can interleave with (`_RESERVE`): it sums the `remaining` of the live workers'
reports, subtracts the live reservations (meetings admitted that no worker's report counts yet) and
adds a reservation only when room is left.

A reservation is a member of the sorted set `RESERVATIONS` (the session id), scored with its expiry
on Redis' clock (milliseconds). It ends when:

- a worker takes the meeting: removed in the same transaction as the worker's report that counts it
  (`fleet.WorkerLoad.publish(taken=...)`), so the meeting is counted once at every moment;
- the session ends before a worker took it (closed before audio, a socket that resumed another
  session): its gateway removes it;
- its gateway dies: nobody renews it (every `ttl / 3`), and it expires after `ttl`.

Every job takes a reservation when it is queued (uploads too, without the check: an upload is
accepted with 202 whatever the load), so a job waiting for a worker is counted by its reservation.
The workers' names and load keys are read inside the script: that needs one Redis, not a cluster.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.redis_backend import streams
from services.tasks import raise_if_cancelled

logger = logging.getLogger(__name__)

RESERVATIONS = "ma:reservations"
RESERVATION_SECONDS = 10.0
"""A reservation nobody renews lapses after this long (its gateway died)."""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""
# KEYS: reservations, workers. ARGV: session id, ttl ms, load key prefix, "1" to reserve unchecked.
_RESERVE = (
    _NOW
    + """
if ARGV[4] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local room = 0
  for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local remaining = redis.call('HGET', ARGV[3] .. name, 'remaining')
    if remaining then room = room + tonumber(remaining) end
  end
  if room - redis.call('ZCARD', KEYS[1]) <= 0 then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)
# KEYS: reservations. ARGV: ttl ms, then the session ids to renew (only those still reserved).
_RENEW = (
    _NOW
    + """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return redis.call('ZCARD', KEYS[1])
"""
)
_LOAD_PREFIX = streams.load_key("")


async def live_reservations(redis: Redis) -> int:
    """Meetings admitted (or queued) that no worker's report counts yet; the lapsed ones are dropped."""
    return int(await redis.eval(_RENEW, 1, RESERVATIONS, 0))


class Reservations:
    """One gateway's reservations: taken atomically, renewed while held, released or forgotten."""

    def __init__(self, redis: Redis, ttl: float = RESERVATION_SECONDS) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl * 1000)
        self.held: set[str] = set()
        """Session ids this gateway reserved that no worker has taken yet."""
        self._releasing: set[asyncio.Task[None]] = set()

    async def reserve(self, session_id: str, *, checked: bool = True) -> bool:
        """Reserve a slot for `session_id` if the live workers have room for one more (`checked`),
        or whatever the load (`checked=False`: a job being queued). True when reserved.

        Raises:
            RedisError: Redis cannot be reached (the caller decides: refuse, or retry).
        """
        args = (session_id, self._ttl_ms, _LOAD_PREFIX, "0" if checked else "1")
        reserved = bool(await self._redis.eval(_RESERVE, 2, RESERVATIONS, streams.WORKERS, *args))
        if reserved:
            self.held.add(session_id)
        return reserved

    def forget(self, session_id: str) -> None:
        """A worker took the meeting (and removed the reservation with its report): stop renewing it."""
        self.held.discard(session_id)

    def release(self, session_id: str) -> None:
        """The session ended before a worker took it: free its slot now (in the background)."""
        if session_id not in self.held:
            return
        self.held.discard(session_id)
        task = asyncio.create_task(self._remove(session_id), name=f"release-{session_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _remove(self, session_id: str) -> None:
        try:
            await self._redis.zrem(RESERVATIONS, session_id)
        except RedisError as exc:  # it lapses by itself within the TTL
            logger.warning("session %s: releasing its reservation failed: %s", session_id, exc)

    async def renew(self) -> None:
        """Push the expiry of every reservation still held a TTL ahead (one round trip)."""
        if self.held:
            await self._redis.eval(_RENEW, 1, RESERVATIONS, self._ttl_ms, *sorted(self.held))

    async def run(self) -> None:
        """Renew every third of the TTL until cancelled."""
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self.renew()
            except RedisError as exc:  # Redis away for a moment: the TTL covers a few misses
                logger.warning("renewing %d reservation(s) failed: %s", len(self.held), exc)

    async def aclose(self) -> None:
        """Release what is still held (the gateway stops) and wait for the releases."""
        for session_id in list(self.held):
            self.release(session_id)
        if self._releasing:
            await asyncio.wait(set(self._releasing))

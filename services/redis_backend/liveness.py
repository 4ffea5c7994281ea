"""Which workers are gone: every worker names its Redis connections, and a dead one has none left.

A worker killed mid-meeting (SIGKILL, out of memory) stops renewing its leases, and another worker
takes its meetings over once a lease lapses: up to `WORKER_LEASE_SECONDS` (5 s) after the death,
which was most of the pause participants saw. But the kernel closes a dead process's sockets at
once, and Redis drops those connections as soon as it reads the close. Every worker's connections
carry its consumer name (`CLIENT SETNAME`, `streams.connect(client_name=...)`), so a pending job
whose consumer has no connection left belongs to a worker that is gone, and `OrphanFinder` hands
it over at once, lease or not. A worker that stopped with SIGTERM handed its meetings back and
left too: the same. A machine that vanished without closing its sockets keeps them open until TCP
gives up; the lease covers that case, as before.

A consumer counts as gone only when every look for `GONE_SECONDS` found it without a connection,
so a worker that is reconnecting (its retries are a second apart) is not taken for dead; and if it
lives after all, its next renewal finds the lease taken and it lets the meeting go (`lease.py`). Where `CLIENT LIST` is
not allowed (some managed Redis services), only the leases decide.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.redis_backend import streams

logger = logging.getLogger(__name__)

PENDING_PAGE = 1000
"""Pending jobs looked at per look: far more meetings than a fleet serves at once."""
GONE_SECONDS = 1.0
"""A consumer without a connection this long (at every look) is gone."""


class OrphanFinder:
    """Finds the pending jobs of consumers (other than `me`) that have no connection to Redis."""

    def __init__(self, redis: Redis, me: str) -> None:
        self._redis = redis
        self._me = me
        self._unseen_since: dict[tuple[bytes, str], float] = {}  # (job, consumer) -> first look without it
        self.enabled = True
        """False once Redis refused `CLIENT LIST`: the leases alone decide then."""

    async def find(self) -> list[tuple[bytes, str]]:
        """(job entry id, its consumer) for every job whose consumer had no connection at any look
        for `GONE_SECONDS`.

        Raises:
            RedisError: Redis cannot be reached (try again at the next look).
        """
        if not self.enabled:
            return []
        pending = await self._redis.xpending_range(streams.JOBS, streams.GROUP, min="-", max="+", count=PENDING_PAGE)
        connected = await self._connected()
        if connected is None:
            return []
        looked_at = time.monotonic()
        alone = {(entry["message_id"], _text(entry["consumer"])) for entry in pending}
        alone = {(entry_id, name) for entry_id, name in alone if name != self._me and name not in connected}
        self._unseen_since = {key: self._unseen_since.get(key, looked_at) for key in alone}
        return sorted(key for key, since in self._unseen_since.items() if looked_at - since >= GONE_SECONDS)

    async def _connected(self) -> set[str] | None:
        """The names of the connections Redis holds; None when it will not say."""
        try:
            clients = await self._redis.client_list()
        except ResponseError as exc:  # CLIENT disabled or not allowed to this user
            logger.warning("CLIENT LIST refused (%s): a dead worker's meetings wait for their leases", exc)
            self.enabled = False
            return None
        return {str(client["name"]) for client in clients if client.get("name")}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

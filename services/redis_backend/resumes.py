"""Resuming a dropped socket through any gateway (Redis mode): the recording moves to the gateway
its client reconnected to, so a load balancer needs no sticky sessions.

In one process a dropped recording waits in the `ResumeRegistry` for its client. Behind a load
balancer the client may come back on another gateway. The recording's audio and job are in Redis
already, so only its relay moves: the gateway holding it offers it, once all of its audio is in
Redis, as the one entry of the list `handoff:{id}` (title, start, samples written); the gateway the
client resumed on pops that entry (BLPOP) and carries on with a relay of its own from there
(`RemotePipeline.adopt`). The holder may not have noticed yet that its socket is dead: the new
gateway first adds a let-go request to the meeting's results stream, which the holder's relay
reads at once, and the holder parks the recording as for a dropped socket, which offers it.

Whoever pops the entry owns the recording. The holder pops it too before it finishes the
recording when the grace runs out, and before it carries on there when the client came back to it;
exactly one of them gets it, and a holder that finds the entry gone closes its relay without a word
to Redis (the recording lives on elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from services.redis_backend import streams
from services.redis_backend.gateway import RemotePipeline
from services.redis_backend.relay import RemotePump
from services.resume import ParkedRecording, ResumeRegistry

logger = logging.getLogger(__name__)

OFFER_MARGIN_SECONDS = 60.0
"""An offer outlives the grace this long (a holder that died with it leaves nothing behind)."""


class RemoteResumes(ResumeRegistry):
    """A gateway's parked recordings, offered to every gateway."""

    def __init__(
        self, grace_seconds: float, expire: Callable[[ParkedRecording], None], pipeline: RemotePipeline
    ) -> None:
        super().__init__(grace_seconds, self._expire_unless_moved)
        self._finish = expire
        self._pipeline = pipeline
        self._redis = pipeline.redis
        self._offers: dict[str, asyncio.Task[bool]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        pipeline.asked_to_let_go = self._asked_to_let_go

    def park(self, parked: ParkedRecording) -> None:
        super().park(parked)
        offer = asyncio.create_task(self._offer(parked), name=f"offer-{parked.session_id}")
        self._offers[parked.session_id] = offer

    async def claim_anywhere(self, session_id: str) -> ParkedRecording | None:
        """The recording, from this gateway if it waits here (and no other took it), else moved here."""
        parked = self.claim(session_id)
        if parked is not None and await self._take_back(parked):
            return parked
        return await self._pipeline.adopt(session_id)

    async def aclose(self) -> None:
        self.expire_all()
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def _asked_to_let_go(self, session_id: str) -> None:
        """Another gateway's client resumed `session_id`: if a socket here still serves it, park it."""
        if (let_go := self._attached.pop(session_id, None)) is not None:
            logger.info("session %s resumed on another gateway; letting it go", session_id)
            let_go()

    async def _offer(self, parked: ParkedRecording) -> bool:
        """Offer the recording to any gateway once all its audio is in Redis; False if Redis failed."""
        samples = await _pump(parked).flushed()
        body = {"title": parked.title, "started_at": parked.started_at, "samples": samples}
        key = streams.handoff_key(parked.session_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps(body))
                pipe.pexpire(key, int((self.grace_seconds + OFFER_MARGIN_SECONDS) * 1000))
                await pipe.execute()
        except RedisError as exc:  # only this gateway can resume it then
            logger.warning("session %s: offering it to the other gateways failed: %s", parked.session_id, exc)
            return False
        return True

    async def _take_back(self, parked: ParkedRecording) -> bool:
        """Withdraw the offer: this gateway carries on with the recording. False when another gateway
        took it meanwhile (this relay is closed, silently)."""
        offer = self._offers.pop(parked.session_id, None)
        if offer is None or not await offer:
            return True  # never offered: nobody else can have it
        try:
            if await self._redis.lpop(streams.handoff_key(parked.session_id)) is not None:
                return True
        except RedisError as exc:  # cannot tell: keep it here rather than lose it
            logger.warning("session %s: withdrawing its offer failed: %s", parked.session_id, exc)
            return True
        logger.info("session %s: resumed on another gateway", parked.session_id)
        await _pump(parked).aclose()
        return False

    def _expire_unless_moved(self, parked: ParkedRecording) -> None:
        task = asyncio.create_task(self._finish_unless_moved(parked), name=f"expire-{parked.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_unless_moved(self, parked: ParkedRecording) -> None:
        if await self._take_back(parked):
            self._finish(parked)


def _pump(parked: ParkedRecording) -> RemotePump:
    pump = parked.parts.pump
    if not isinstance(pump, RemotePump):
        raise TypeError("a gateway's recordings are relayed")
    return pump

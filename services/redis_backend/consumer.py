"""A worker's hand on the jobs stream: take meetings, hold them, hand them back or retire them.

New jobs come with `XREADGROUP` (group `workers`), at most `WORKER_MAX_SESSIONS` at a time, and
while the load meter says one more fits (or no other live worker has room: `fleet.py`). Every
`CLAIM_SECONDS`, the jobs of a worker that is gone are taken over and served here from their
stored audio: at once when its connections to Redis are gone (`liveness.py`), else once idle
longer than a lease (`XAUTOCLAIM`: its lease lapsed); those whose lease is still held by a living
worker (one that renewed late) are left alone. A served meeting is retired once its final is
published: marked done, acknowledged and deleted from the jobs stream, its streams removed, so
nothing stays pending. On shutdown the meetings held are handed back (leases released, jobs left
pending) and another worker takes them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from observability import Metrics
from services.capacity import LoadMeter
from services.redis_backend import streams
from services.redis_backend.fleet import WorkerLoad
from services.redis_backend.lease import Lease
from services.redis_backend.liveness import OrphanFinder
from services.redis_backend.streams import MeetingJob
from services.redis_backend.worker_session import WorkerContext, serve_meeting
from services.tasks import cancel_and_wait, raise_if_cancelled

logger = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
RETRY_SECONDS = 1.0
CLAIM_SECONDS = 0.5
"""How often a worker looks for meetings to take over (at most a quarter lease)."""
NO_ROOM_WAIT_SECONDS = 0.5


class JobConsumer:
    """Serves meetings from the jobs stream until `stopping` is set."""

    def __init__(
        self,
        context: WorkerContext,
        *,
        name: str,
        max_sessions: int,
        lease_seconds: float,
        metrics: Metrics,
        meter: LoadMeter,
    ) -> None:
        self._context = context
        self._redis = context.redis
        self.name = name
        self._max = max_sessions
        self._lease_seconds = lease_seconds
        self._metrics = metrics
        self._active: dict[bytes, asyncio.Task[None]] = {}  # job entry id -> its meeting
        self._slot_freed = asyncio.Event()
        self.load = WorkerLoad(self._redis, name, meter, lambda: len(self._active))
        self._orphans = OrphanFinder(self._redis, name)

    @property
    def free_slots(self) -> int:
        return self._max - len(self._active)

    async def run(self, stopping: asyncio.Event) -> None:
        await streams.ensure_group(self._redis)
        claimer = asyncio.create_task(self._claim_loop(), name="claim-loop")
        reporter = asyncio.create_task(self.load.run(), name="load-report")
        logger.info("worker %s taking meetings (up to %d at a time)", self.name, self._max)
        try:
            while not stopping.is_set():
                raise_if_cancelled()
                if self.free_slots <= 0:
                    self._slot_freed.clear()
                    await _wait(self._slot_freed, READ_BLOCK_MS / 1000)
                    continue
                if not await self.load.may_take_new():  # another worker has room: leave new jobs to it
                    await asyncio.sleep(NO_ROOM_WAIT_SECONDS)
                    continue
                try:
                    reply = await self._redis.xreadgroup(
                        streams.GROUP, self.name, {streams.JOBS: ">"}, count=1, block=READ_BLOCK_MS
                    )
                except RedisError as exc:
                    logger.warning("reading the jobs stream failed, retrying: %s", exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        self._take(entry_id, fields, taken_over=False)
        finally:
            await cancel_and_wait(reporter)
            await self.load.withdraw()
            await cancel_and_wait(claimer)
            await self._hand_back()

    async def _claim_loop(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(min(CLAIM_SECONDS, self._lease_seconds / 4))
            try:
                await self._publish_depth()
                if self.free_slots > 0:
                    await self._claim_orphans()
                if self.free_slots > 0:
                    await self._claim_lapsed()
            except RedisError as exc:
                logger.warning("claiming the jobs of a stopped worker failed: %s", exc)

    async def _claim_orphans(self) -> None:
        """Take over the jobs of workers whose connections are gone (dead), without waiting for
        their leases. XCLAIM's minimum idle time makes a second worker's claim of the same job,
        made after the first, a no-op."""
        for entry_id, holder in await self._orphans.find():
            if self.free_slots <= 0 or entry_id in self._active:
                continue
            claimed = await self._redis.xclaim(
                streams.JOBS, streams.GROUP, self.name, int(CLAIM_SECONDS * 1000), [entry_id]
            )
            for claimed_id, fields in claimed:
                logger.warning("job %s: its worker %s has no connection to Redis left", claimed_id, holder)
                self._take(claimed_id, fields, taken_over=True, replacing=holder)

    async def _claim_lapsed(self) -> None:
        """Take over the jobs idle longer than a lease (their worker stopped renewing)."""
        reply = await self._redis.xautoclaim(
            streams.JOBS, streams.GROUP, self.name, int(self._lease_seconds * 1000), count=self.free_slots
        )
        for entry_id, fields in reply[1]:
            if entry_id not in self._active:
                self._take(entry_id, fields, taken_over=True)

    async def _publish_depth(self) -> None:
        """Jobs no worker has read yet, as the queue depth of the `redis` backend."""
        for group in await self._redis.xinfo_groups(streams.JOBS):
            if _text(group.get("name")) == streams.GROUP:
                self._metrics.queue_depth.labels(backend="redis").set(int(group.get("lag") or 0))
        self._metrics.active_sessions.set(len(self._active))

    def _take(
        self, entry_id: bytes, fields: dict[bytes, bytes] | None, *, taken_over: bool, replacing: str | None = None
    ) -> None:
        try:
            job = MeetingJob.from_fields(fields or {})
        except ValueError as exc:
            logger.error("job %s is dropped: %s", entry_id, exc)
            task = asyncio.create_task(self._retire(entry_id, None))
        else:
            serving = self._serve(entry_id, job, taken_over, replacing)
            task = asyncio.create_task(serving, name=f"meeting-{job.session_id}")
        self._active[entry_id] = task
        task.add_done_callback(lambda _: self._release(entry_id))

    def _release(self, entry_id: bytes) -> None:
        self._active.pop(entry_id, None)
        self._metrics.active_sessions.set(len(self._active))
        self._slot_freed.set()

    async def _serve(self, entry_id: bytes, job: MeetingJob, taken_over: bool, replacing: str | None) -> None:
        sid = job.session_id
        try:
            if await self._redis.exists(streams.done_key(sid)):  # finished; its worker died before retiring it
                await self._retire(entry_id, job)
                return
            lease = Lease(self._redis, sid, self.name, self._lease_seconds)
            if not await lease.acquire(replacing=replacing):
                return  # its holder lives: the job stays pending under it
            epoch = int(await self._redis.incr(streams.epoch_key(sid)))
            await self._redis.expire(streams.epoch_key(sid), streams.STREAM_TTL_SECONDS)
        except RedisError as exc:
            logger.warning("session %s: taking it failed (it stays pending): %s", sid, exc)
            return
        await self.load.publish(taken=sid)  # counted by this report from now on, no longer by its reservation
        if taken_over:
            self._metrics.session_takeovers.inc()
            logger.warning("session %s taken over from a worker that stopped (epoch %d)", sid, epoch)
        else:
            logger.info("session %s taken (epoch %d)", sid, epoch)
        await self._hold(entry_id, job, lease, epoch)

    async def _hold(self, entry_id: bytes, job: MeetingJob, lease: Lease, epoch: int) -> None:
        meeting = asyncio.create_task(serve_meeting(job, self._context, epoch), name=f"serve-{job.session_id}")
        holder = asyncio.create_task(lease.hold(entry_id, self.name), name=f"lease-{job.session_id}")
        try:
            await asyncio.wait({meeting, holder}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled: this worker is stopping and hands the meeting back
            await cancel_and_wait(holder)
            let_go = not meeting.done()
            if let_go:
                await cancel_and_wait(meeting)
                await lease.release()
        if let_go:  # the lease was lost: this worker stalled past it and another one took over
            logger.warning("session %s: another worker took it over; this one lets go", job.session_id)
            return
        await self._retire(entry_id, job)
        await lease.release()

    async def _retire(self, entry_id: bytes, job: MeetingJob | None) -> None:
        """The meeting is finished: nothing of it stays pending or stored in Redis."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if job is not None:
                    sid = job.session_id
                    pipe.set(streams.done_key(sid), b"1", ex=streams.DONE_TTL_SECONDS)
                    pipe.delete(streams.audio_key(sid), streams.epoch_key(sid), streams.hooks_key(sid))
                    pipe.expire(streams.results_key(sid), streams.RESULTS_TTL_SECONDS)
                pipe.xack(streams.JOBS, streams.GROUP, entry_id)
                pipe.xdel(streams.JOBS, entry_id)
                await pipe.execute()
        except RedisError as exc:  # it is taken again later and found done
            logger.warning("retiring job %s failed: %s", entry_id, exc)

    async def _hand_back(self) -> None:
        """Stopping: the meetings held go back to the group for another worker."""
        if self._active:
            logger.info("handing %d meeting(s) back to the other workers", len(self._active))
        for task in list(self._active.values()):
            await cancel_and_wait(task)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

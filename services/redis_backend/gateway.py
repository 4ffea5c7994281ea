"""`RemotePipeline`: the gateway's pipeline in Redis mode, with `MeetingPipeline`'s surface.

Sessions, resumes and uploads use it exactly as they use the in-process pipeline: `open_session`
gives parts whose buffer and pump relay to Redis (`relay.py`), `list_meeting` stores the meeting
(the gateway owns the listing; the worker stores the final), `submit` runs the after-stop wait as
a task of this gateway, and `finish` sends the stop marker and returns the worker's final.
`reserve` takes a new meeting's worker slot in Redis, atomically across gateways (`reservations.py`);
`adopt` moves a session another gateway held here, when its client resumes here (`resumes.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from observability import Metrics
from services.admission import Busy
from services.audio_buffer import AudioCipher
from services.errors import ConfigurationError
from services.live_pump import Emit
from services.meeting_store import MeetingStore, record_start
from services.orchestrator import DRAIN_SECONDS, Urgency
from services.protocol import final_message
from services.recording import FinishedRecording, SessionParts
from services.redis_backend import streams
from services.redis_backend.fleet import FleetLoad, gateway_policy
from services.redis_backend.relay import RemoteMeetingError, RemotePump
from services.redis_backend.relay_buffer import RelayBuffer
from services.redis_backend.reservations import Reservations
from services.redis_backend.streams import MeetingJob
from services.resume import ParkedRecording
from services.settings import Settings
from services.stored_meeting import MeetingSource, MeetingStatus
from services.tasks import cancel_and_wait
from services.types import SAMPLE_RATE, MeetingRecord, MeetingSummary

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]

HANDOFF_WAIT_SECONDS = 5.0
"""How long a resume on this gateway waits for the gateway holding the session to hand it over."""


class RemotePipeline:
    """Builds each session's relaying parts and waits for each meeting's final from its worker."""

    def __init__(
        self, *, metrics: Metrics, redis: Redis, store: MeetingStore, cipher: AudioCipher, settings: Settings
    ) -> None:
        self.metrics = metrics
        self._redis = redis
        self._store = store
        self._cipher = cipher
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self.fleet = FleetLoad(redis, gateway_policy(settings), metrics)
        """The workers' headroom, which admission asks in Redis mode (`fleet.py`)."""
        self.reservations = Reservations(redis)
        """This gateway's meetings that hold a worker slot no worker has taken yet."""
        self.asked_to_let_go: Callable[[str], None] = lambda session_id: None
        """Another gateway's client resumed this session (`resumes.py` parks it, to be offered there)."""

    @property
    def redis(self) -> Redis:
        return self._redis

    def open_session(self, session_id: str, emit: Emit) -> SessionParts:
        buffer = RelayBuffer(self._cipher)
        let_go = functools.partial(self._let_go, session_id)
        pump = RemotePump(self._redis, session_id, buffer, emit, self.reservations, let_go)
        return SessionParts(buffer, pump, None, Urgency())  # type: ignore[arg-type]  # same surface

    def _let_go(self, session_id: str) -> None:
        self.asked_to_let_go(session_id)

    async def adopt(self, session_id: str) -> ParkedRecording | None:
        """The recording `session_id` that another gateway held, moved here (its client resumed here);
        None when no gateway offers it within `HANDOFF_WAIT_SECONDS` (unknown, finished, or its gateway
        died: then the worker finishes it with the audio it has)."""
        try:
            if not await self._redis.exists(streams.audio_key(session_id), streams.handoff_key(session_id)):
                return None  # unknown (or finished): no gateway relays it
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(streams.results_key(session_id), {streams.KIND: streams.LET_GO})
                pipe.expire(streams.results_key(session_id), streams.STREAM_TTL_SECONDS)
                await pipe.execute()
            offer = await self._redis.blpop([streams.handoff_key(session_id)], timeout=HANDOFF_WAIT_SECONDS)
            if offer is None:
                return None
            body = json.loads(offer[1])
            parts = self.open_session(session_id, lambda update, lag: None)
            await _pump(parts).adopt(int(body["samples"]))
        except (RedisError, ValueError, KeyError) as exc:
            logger.warning("session %s: taking it over from another gateway failed: %s", session_id, exc)
            return None
        logger.info("session %s moved here from another gateway", session_id)
        return ParkedRecording(session_id, body.get("title"), float(body["started_at"]), parts)

    async def reserve(self, session_id: str) -> Busy | None:
        """Take one of the live workers' slots for a new meeting, atomically across gateways; why not
        when none is left (or Redis cannot be asked). Without ADMISSION_BY_LOAD nothing is reserved."""
        policy = self.fleet.policy
        if not policy.by_load:
            return None
        try:
            if await self.reservations.reserve(session_id):
                return None
        except RedisError as exc:
            logger.warning("session %s: reserving a worker slot failed: %s", session_id, exc)
        return Busy("overloaded" if self.fleet.overloaded() else "capacity", policy.retry_after)

    def list_meeting(
        self,
        parts: SessionParts,
        session_id: str,
        title: str | None,
        started_at: float,
        *,
        source: MeetingSource = MeetingSource.LIVE,
        language: str | None = None,
    ) -> None:
        """List the meeting (as `MeetingPipeline.list_meeting`) and note what its worker stores it as."""
        _pump(parts).job = MeetingJob(session_id, title, started_at, source, language)
        status = MeetingStatus.RECORDING if source is MeetingSource.LIVE else MeetingStatus.QUEUED
        parts.listed = asyncio.create_task(
            record_start(
                self._store, session_id, title=title, created_at=started_at, source=source, status=status,
                language=language,
            )
        )  # fmt: skip

    def submit(
        self,
        session_id: str,
        run: Callable[[], Awaitable[None]],
        *,
        background: bool = False,
        audio_seconds: float = 0.0,
    ) -> None:
        """Run the wait for a meeting's final here (the work itself is a worker's).

        Raises:
            RuntimeError: the gateway is shutting down and takes no new jobs.
        """
        if not self._accepting:
            raise RuntimeError("the gateway is shutting down; no new meetings are finished")
        self.metrics.jobs_total.labels(stage="meeting").inc()
        task = asyncio.create_task(self._run(session_id, run), name=f"await-final-{session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, session_id: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        except Exception:  # one meeting's failure must not touch the others
            logger.exception("waiting for the final failed (session %s)", session_id)
            self.metrics.job_failures.labels(stage="meeting").inc()

    def finish_unheard(self, session_id: str, title: str | None, started_at: float, parts: SessionParts) -> None:
        """Have a worker finish a recording whose client left for good. Never raises."""
        recording = FinishedRecording(session_id, title, started_at, time.perf_counter(), parts)
        parts.detach()
        try:
            self.submit(session_id, lambda: self.finish(recording, _nobody), background=True)
        except RuntimeError as exc:
            logger.error("session %s (client gone) is not finished: %s", session_id, exc)
            parts.close()

    async def finish(self, recording: FinishedRecording, send: Send) -> dict[str, Any]:
        """Send the stop marker and return the worker's `final` (a failed one when the worker failed)."""
        pump = _pump(recording.parts)
        try:
            final = await pump.finish(send)
        except RemoteMeetingError as exc:
            logger.error("session %s: the worker could not finish it: %s", recording.session_id, exc)
            self.metrics.job_failures.labels(stage="meeting").inc()
            final = _failed_final(recording, str(exc))
        finally:
            await pump.aclose()
        if recording.source is MeetingSource.LIVE:
            self.metrics.end_to_end_latency.observe(time.perf_counter() - recording.stopped_at)
        return final

    async def drain(self) -> None:
        """Take no new meetings; wait (bounded) for the finals of those already stopped."""
        self._accepting = False
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
            if pending:
                logger.warning("%d meeting(s) still finishing on workers at shutdown", len(pending))
                for task in pending:
                    task.cancel()


async def open_remote_pipeline(
    settings: Settings, metrics: Metrics, store: MeetingStore, cipher: AudioCipher, stack: AsyncExitStack
) -> RemotePipeline:
    """Connect to `REDIS_URL` (start-up stops with a clear error when it cannot) and build the pipeline."""
    redis = await connect_checked(settings)
    stack.push_async_callback(redis.aclose)
    pipeline = RemotePipeline(metrics=metrics, redis=redis, store=store, cipher=cipher, settings=settings)
    stack.push_async_callback(pipeline.reservations.aclose)  # after the drain: what no worker took is freed
    stack.push_async_callback(pipeline.drain)
    await pipeline.fleet.refresh()  # the first admission already knows the workers
    stack.push_async_callback(cancel_and_wait, asyncio.create_task(pipeline.fleet.run(), name="fleet-load"))
    renewing = asyncio.create_task(pipeline.reservations.run(), name="reservations")
    stack.push_async_callback(cancel_and_wait, renewing)
    return pipeline


async def connect_checked(settings: Settings, client_name: str | None = None) -> Redis:
    """A Redis client that answered a PING, with the jobs group in place (connections named
    `client_name`: a worker's, see `liveness.py`).

    Raises:
        ConfigurationError: `REDIS_URL` is unset or the server cannot be reached.
    """
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is required with ORCHESTRATOR_BACKEND=redis")
    redis = streams.connect(settings.redis_url.get_secret_value(), client_name)
    try:
        await redis.ping()
        await streams.ensure_group(redis)
    except (RedisError, OSError) as exc:
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()
        raise ConfigurationError(f"REDIS_URL: the Redis server cannot be reached ({type(exc).__name__})") from exc
    return redis


def _pump(parts: SessionParts) -> RemotePump:
    pump = parts.pump
    if not isinstance(pump, RemotePump):
        raise TypeError("a RemotePipeline finishes only the sessions it opened")
    return pump


def _failed_final(recording: FinishedRecording, error: str) -> dict[str, Any]:
    record = MeetingRecord(
        session_id=recording.session_id,
        title=recording.title,
        started_at=recording.started_at,
        duration=recording.parts.buffer.samples / SAMPLE_RATE,
        segments=[],
        summary=MeetingSummary(summary=""),
        provider="none",
        errors=[f"The meeting could not be finished: {error}"],
    )
    return final_message(record, {})


def _nobody(message: dict[str, Any]) -> None:
    """Where the messages of a meeting whose client left go."""

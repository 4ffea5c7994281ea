"""The inference orchestrator: a thread pool for model work and a job queue for finishing meetings.

- `run_model(fn, *args)` runs blocking model code (Whisper, VAD, embeddings, decrypting audio) on
  the inference threads, never on the event loop. It is the one door to them: every component
  that needs it is handed a `ModelRunner`, either this method (live priority) or a session's
  `runner(urgency)`, whose priority drops to background when nobody is watching that session.
  Among waiting calls the most urgent runs first (`PriorityExecutor`): careful passes and finals,
  then drafts (`runner(urgency, draft=True)`), then background work.
- `load` (a `LoadMeter`, `services/capacity.py`) is read every `TICK_SECONDS` from the process's CPU
  time, the live pumps (`load.live`, a `LiveLoad`) and the executor's queue wait: it thins drafts under
  load and tells admission how many more meetings fit.
- `submit(job)` queues a whole after-stop job (tail commit, diarisation, summary, hooks).
  `INFERENCE_WORKERS` asyncio workers run them, each taking up to `INFERENCE_BATCH_SIZE` jobs at a
  time, live jobs first; background jobs (clients that left, uploads) hold at most all workers but
  one, and together they may hold at most `max_background_audio` seconds of audio (`BacklogFullError`
  past that, so the memory they hold is bounded). The
  depth is exported as `meeting_assistant_inference_queue_depth{backend=ORCHESTRATOR_BACKEND}`.
- `drain()` stops taking jobs and lets the queued ones finish (bounded by a timeout); `aclose()`
  stops the workers and the threads. The app lifespan drains before it closes the components the
  jobs use, and closes after.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

from observability import Metrics
from services.capacity import TICK_SECONDS, CapacityPolicy, LoadMeter
from services.errors import BacklogFullError
from services.priority_executor import Priority, PriorityExecutor

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DRAIN_SECONDS = 60.0
"""How long shutdown waits for queued meetings to finish."""


class ModelRunner(Protocol):
    """Runs blocking model code off the event loop: `await run_model(fn, *args)`."""

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


@dataclass(slots=True)
class Urgency:
    """The current priority of one session's model work (lowered when its client leaves)."""

    level: Priority = Priority.LIVE


@dataclass(frozen=True, slots=True)
class InferenceJob:
    """A unit of after-stop work: `run()` does everything and handles its own errors."""

    session_id: str
    run: Callable[[], Awaitable[None]]
    priority: Priority = Priority.LIVE
    audio_seconds: float = 0.0
    """The recording it finishes: background jobs are bounded by the audio they hold."""


class Orchestrator:
    """Owns the inference threads and the job workers; started and stopped by the app lifespan."""

    def __init__(
        self,
        *,
        workers: int,
        batch_size: int,
        metrics: Metrics,
        max_background_audio: float = 7200.0,
        load: LoadMeter | None = None,
    ) -> None:
        self._workers = workers
        self._batch_size = batch_size
        self._metrics = metrics
        self._depth = metrics.queue_depth.labels(backend=metrics.backend_label)
        # One thread per job worker plus one, so live drafts always find a thread.
        self._executor = PriorityExecutor(workers + 1)
        self._queues: dict[Priority, deque[InferenceJob]] = {Priority.LIVE: deque(), Priority.BACKGROUND: deque()}
        self.load = load or LoadMeter(CapacityPolicy(by_load=False))
        self._background_slots = max(1, workers - 1)  # one worker stays free for a live meeting's final
        self._max_background_audio = max_background_audio
        self._background_audio = 0.0
        self._running_background = 0
        self._unfinished = 0
        self._work_changed = asyncio.Event()  # a job came, or one ended (a background slot may be free)
        self._all_done = asyncio.Event()
        self._all_done.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False

    @property
    def worker_count(self) -> int:
        return self._workers

    @property
    def queue_depth(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    @property
    def running(self) -> bool:
        return self._accepting and all(not task.done() for task in self._tasks)

    async def start(self) -> None:
        self._accepting = True
        self._tasks = [asyncio.create_task(self._worker(i), name=f"inference-worker-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._measure(), name="load-meter"))

    async def _measure(self) -> None:
        """Feed the load meter a reading every `TICK_SECONDS` (cheap: counters and a few attributes)."""
        while True:
            try:
                self.load.update(
                    self.load.live.read(
                        interval=self.load.draft_interval,
                        queue_wait=self._executor.take_live_wait(),
                        at=time.monotonic(),
                        cpu_seconds=time.process_time(),
                    )
                )
            except Exception:  # the meter must never stop the orchestrator (`running` watches this task)
                logger.exception("load meter update failed")
            await asyncio.sleep(TICK_SECONDS)

    async def run_model(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking model code on the inference threads at live priority and await its result."""
        return await self._run(Priority.LIVE, functools.partial(fn, *args, **kwargs))

    def runner(self, urgency: Urgency, *, draft: bool = False) -> ModelRunner:
        """A `ModelRunner` whose calls take `urgency.level` as it stands when each call is made.

        `draft`: tentative live drafts, which wait behind careful passes and finals while the
        session is live (`Priority.DRAFT`).
        """

        async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
            level = Priority.DRAFT if draft and urgency.level is Priority.LIVE else urgency.level
            return await self._run(level, functools.partial(fn, *args, **kwargs))

        return run

    async def _run(self, priority: Priority, call: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(priority, call))

    def submit(self, job: InferenceJob) -> None:
        """Queue an after-stop job.

        Raises:
            RuntimeError: the orchestrator is shutting down.
            BacklogFullError: a background job that would take the background audio past its bound.
        """
        if not self._accepting:
            raise RuntimeError("the inference orchestrator is shutting down; no new jobs are taken")
        if job.priority is Priority.BACKGROUND:
            if self._background_audio and self._background_audio + job.audio_seconds > self._max_background_audio:
                self._metrics.background_jobs_dropped.inc()
                raise BacklogFullError(
                    f"background jobs already hold {self._background_audio:.0f} s of audio "
                    f"(MAX_BACKGROUND_AUDIO_SECONDS={self._max_background_audio:g}): this one is not taken"
                )
            self._background_audio += job.audio_seconds
        self._queues[job.priority].append(job)
        self._unfinished += 1
        self._all_done.clear()
        self._publish()
        self._work_changed.set()

    @property
    def _background_load(self) -> int:
        return len(self._queues[Priority.BACKGROUND]) + self._running_background

    def _publish(self) -> None:
        self._depth.set(self.queue_depth)
        self._metrics.background_jobs.set(self._background_load)

    async def _worker(self, index: int) -> None:
        while True:
            batch = await self._take()
            try:
                await asyncio.gather(*(self._run_job(job) for job in batch))
            finally:
                for job in batch:
                    if job.priority is Priority.BACKGROUND:
                        self._running_background -= 1
                        self._background_audio -= job.audio_seconds
                    self._unfinished -= 1
                if self._unfinished == 0:
                    self._all_done.set()
                self._publish()
                self._work_changed.set()

    async def _take(self) -> list[InferenceJob]:
        """Up to `batch_size` jobs of one priority: live first, background while a slot is free."""
        while True:
            live, background = self._queues[Priority.LIVE], self._queues[Priority.BACKGROUND]
            if live:
                batch = [live.popleft() for _ in range(min(self._batch_size, len(live)))]
                self._publish()
                return batch
            free = self._background_slots - self._running_background
            if background and free > 0:
                batch = [background.popleft() for _ in range(min(self._batch_size, free, len(background)))]
                self._running_background += len(batch)
                self._publish()
                return batch
            self._work_changed.clear()  # checked and cleared with no await between: no wake-up is lost
            await self._work_changed.wait()

    async def _run_job(self, job: InferenceJob) -> None:
        try:
            await job.run()
        except Exception:  # a job's failure must never kill the worker that runs the next one
            logger.exception("inference job failed (session %s)", job.session_id)
            self._metrics.job_failures.labels(stage="meeting").inc()

    async def drain(self) -> None:
        """Stop taking jobs and let the queued ones finish (up to `DRAIN_SECONDS`)."""
        self._accepting = False
        try:
            await asyncio.wait_for(self._all_done.wait(), DRAIN_SECONDS)
        except TimeoutError:
            logger.warning(
                "inference queue not drained after %.0f s; %d job(s) dropped", DRAIN_SECONDS, self.queue_depth
            )

    async def aclose(self) -> None:
        """Stop the workers (call `drain()` first to finish queued jobs) and free the threads."""
        self._accepting = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._executor.shutdown)

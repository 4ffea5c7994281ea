"""The inference orchestrator: a dedicated thread pool for model work and an asyncio job queue.

- `run_model(fn, *args)` runs blocking model code (Whisper, VAD, embeddings) on the inference
  executor, never on the event loop. Live drafts call it directly: they are latency-critical and
  each session has at most one in flight.
- `submit(job)` queues a whole post-recording job (finish the transcript, diarise, summarise,
  run hooks). `INFERENCE_WORKERS` asyncio workers drain the queue, each taking up to
  `INFERENCE_BATCH_SIZE` jobs at a time; the queue depth is exported as
  `meeting_assistant_inference_queue_depth{backend=ORCHESTRATOR_BACKEND}`.
- `aclose()` stops taking jobs, lets the queued ones finish (bounded by a drain timeout), then
  shuts the executor down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from observability import Metrics

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InferenceJob:
    """A unit of post-recording work: `run()` does everything and handles its own errors."""

    session_id: str
    run: Callable[[], Awaitable[None]]


class Orchestrator:
    """Owns the inference executor and the job workers; started and stopped by the app lifespan."""

    def __init__(self, *, workers: int, batch_size: int, metrics: Metrics) -> None:
        self._workers = workers
        self._batch_size = batch_size
        self._metrics = metrics
        self._depth = metrics.queue_depth.labels(backend=metrics.backend_label)
        # One thread per worker for jobs plus one so live drafts are not starved by long jobs.
        self.executor = ThreadPoolExecutor(max_workers=workers + 1, thread_name_prefix="inference")
        self._queue: asyncio.Queue[InferenceJob] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False

    @property
    def worker_count(self) -> int:
        return self._workers

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        return self._accepting and all(not task.done() for task in self._tasks)

    async def start(self) -> None:
        self._accepting = True
        self._tasks = [asyncio.create_task(self._worker(i), name=f"inference-worker-{i}") for i in range(self._workers)]

    async def run_model(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking model code on the inference executor and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def submit(self, job: InferenceJob) -> None:
        """Queue a post-recording job.

        Raises:
            RuntimeError: the orchestrator is shutting down.
        """
        if not self._accepting:
            raise RuntimeError("the inference orchestrator is shutting down; no new jobs are taken")
        self._queue.put_nowait(job)
        self._depth.set(self._queue.qsize())

    async def _worker(self, index: int) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._depth.set(self._queue.qsize())
            try:
                await asyncio.gather(*(self._run(job) for job in batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run(self, job: InferenceJob) -> None:
        try:
            await job.run()
        except Exception:  # a job's failure must never kill the worker that runs the next one
            logger.exception("inference job failed (session %s)", job.session_id)
            self._metrics.job_failures.labels(stage="meeting").inc()

    async def aclose(self, drain_timeout: float = 60.0) -> None:
        """Finish queued jobs (up to `drain_timeout` seconds), stop the workers, free the threads."""
        self._accepting = False
        try:
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        except TimeoutError:
            logger.warning(
                "inference queue not drained after %.0f s; %d job(s) dropped", drain_timeout, self.queue_depth
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.executor.shutdown(wait=True, cancel_futures=True)

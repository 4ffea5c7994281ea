"""The inference worker process (`python -m worker`): the models, the jobs stream, /metrics.

It opens the same services as the single-process server (`app.open_services(gateway=False)`:
ASR, VAD, the orchestrator's threads, diariser, LLM chain, hooks, the shared meeting store) and
serves meetings from Redis (`consumer.py`) until SIGTERM or SIGINT, when it hands the meetings
it holds back to the other workers. Its metrics are served on `WORKER_METRICS_PORT`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from contextlib import AsyncExitStack

from prometheus_client import start_http_server

from observability import Metrics
from services.audio_buffer import AudioCipher
from services.capacity import LoadMeter
from services.pipeline import MeetingPipeline
from services.redis_backend.consumer import JobConsumer
from services.redis_backend.fleet import worker_policy
from services.redis_backend.gateway import connect_checked
from services.redis_backend.worker_session import WorkerContext
from services.settings import Settings

logger = logging.getLogger("meeting_assistant.worker")

ABANDON_MARGIN_SECONDS = 60.0
"""Past the idle and resume limits, a meeting whose audio stream stays silent lost its gateway."""


async def run_worker(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Serve meetings until `stopping` is set (by default: on SIGTERM or SIGINT)."""
    from app import open_services  # the app module builds the gateway; a worker needs only this

    stopping = stopping or _stop_on_signals()
    metrics = Metrics("redis")
    meter = LoadMeter(worker_policy(settings), metrics)  # this worker's headroom, published for the gateways
    async with AsyncExitStack() as stack:
        services = await open_services(settings, metrics, stack, meter, gateway=False)
        if not isinstance(services.pipeline, MeetingPipeline):
            raise TypeError("a worker runs the in-process pipeline")
        name = f"{socket.gethostname()}-{os.getpid()}"  # its consumer name, and its connections' (liveness.py)
        redis = await connect_checked(settings, client_name=name)
        stack.push_async_callback(redis.aclose)
        if settings.worker_metrics_port:
            server, _ = start_http_server(settings.worker_metrics_port, settings.host, registry=metrics.registry)
            stack.callback(server.shutdown)
            logger.info("worker metrics on http://%s:%d/metrics", settings.host, settings.worker_metrics_port)
        key = settings.audio_encryption_key
        quiet_limit = settings.session_idle_timeout_seconds + settings.resume_grace_seconds
        context = WorkerContext(
            redis=redis,
            pipeline=services.pipeline,
            cipher=AudioCipher(key.get_secret_value() if key else None),
            abandon_after=quiet_limit + ABANDON_MARGIN_SECONDS,
        )
        consumer = JobConsumer(
            context,
            name=name,
            max_sessions=settings.worker_max_sessions,
            lease_seconds=settings.worker_lease_seconds,
            metrics=metrics,
            meter=meter,
        )
        await consumer.run(stopping)
    logger.info("worker stopped")


def _stop_on_signals() -> asyncio.Event:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    return stopping

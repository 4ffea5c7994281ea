"""The meeting assistant: one FastAPI process serving the recording page, /ws, /health and /metrics.

    uvicorn app:app --host 127.0.0.1 --port 8000      # or: python app.py

Everything long-lived (Whisper model, inference executor and workers, diariser, LLM clients,
workflow hooks) is built in the lifespan and closed there, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from threadpoolctl import threadpool_limits

from integrations.workflows import build_workflows
from logging_setup import configure_logging
from observability import CONTENT_TYPE_LATEST, Metrics
from services.asr_service import load_recognizer
from services.auth import accepted_subprotocol, token_accepted
from services.diarization import build_diarization_service
from services.errors import ConfigurationError
from services.llm_service import build_llm_service
from services.orchestrator import Orchestrator
from services.pipeline import MeetingPipeline
from services.protocol import error_message
from services.session import CLOSE_POLICY, RecordingSession, SessionLimits
from services.settings import Settings, get_settings, unknown_setting_warnings
from services.vad import load_vad_model

logger = logging.getLogger("meeting_assistant")

STATIC_DIR = Path(__file__).parent / "static"
CLOSE_TRY_AGAIN_LATER = 1013


class SessionCounter:
    """Counts open sessions for admission control (uvicorn's limits do not cover WebSockets)."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.active = 0
        self._gauge = metrics.active_sessions

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        self._gauge.set(self.active)
        return True

    def release(self) -> None:
        self.active -= 1
        self._gauge.set(self.active)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; tests pass their own `Settings`."""
    settings = settings or get_settings()
    metrics = Metrics(settings.orchestrator_backend)
    sessions = SessionCounter(settings.max_sessions, metrics)
    limits = SessionLimits(
        partial_interval=settings.asr_partial_interval,
        max_session_seconds=settings.max_session_seconds,
        max_message_bytes=settings.ws_max_message_bytes,
        max_violations=settings.max_protocol_violations,
        max_frames_per_second=settings.max_frames_per_second,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.audio_encryption_key is None:
            logger.warning("AUDIO_ENCRYPTION_KEY is not set: session audio is held in memory unencrypted.")
        if settings.asr_cpu_threads:
            # BLAS/OpenMP pools default to one thread per core in every library; with our own
            # executor providing the parallelism, extra spinning threads only burn CPU.
            threadpool_limits(limits=settings.asr_cpu_threads)
        recognizer = await asyncio.to_thread(load_recognizer, settings, metrics)
        await asyncio.to_thread(load_vad_model)
        orchestrator = Orchestrator(
            workers=settings.inference_workers, batch_size=settings.inference_batch_size, metrics=metrics
        )
        await orchestrator.start()
        diarization = await asyncio.to_thread(build_diarization_service, settings, orchestrator.executor, metrics)
        llm = build_llm_service(settings, metrics)
        workflows = build_workflows(settings, metrics)
        app.state.pipeline = MeetingPipeline(
            settings=settings,
            metrics=metrics,
            recognizer=recognizer,
            orchestrator=orchestrator,
            diarization=diarization,
            llm=llm,
            workflows=workflows,
        )
        app.state.accepting = True
        logger.info("ready: %d inference worker(s), max %d session(s)", orchestrator.worker_count, sessions.limit)
        try:
            yield
        finally:
            app.state.accepting = False
            await orchestrator.aclose()  # finishes queued meetings, so the audit log loses no line
            await workflows.aclose()
            await llm.aclose()
            await diarization.aclose()

    app = FastAPI(title="Meeting assistant", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sessions = sessions
    app.state.accepting = False
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health")
    async def health() -> JSONResponse:
        pipeline: MeetingPipeline | None = getattr(app.state, "pipeline", None)
        if pipeline is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        ok = app.state.accepting and pipeline.orchestrator.running
        return JSONResponse(
            {
                "status": "ok" if ok else "stopping",
                "asr_model": pipeline.recognizer.name,
                "workers": pipeline.orchestrator.worker_count,
                "queue_depth": pipeline.orchestrator.queue_depth,
                "active_sessions": sessions.active,
                "max_sessions": sessions.limit,
                "diarization": pipeline.diarization.name if pipeline.diarization else None,
                "audio_encrypted": settings.audio_encryption_key is not None,
                "llm_chain": pipeline.llm.describe(),
            },
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def recording_socket(websocket: WebSocket) -> None:
        refusal = _refusal_reason(websocket, settings)
        if refusal is not None:
            metrics.sessions_refused.labels(reason=refusal).inc()
            await websocket.close(CLOSE_POLICY, reason=f"{refusal} refused")
            return
        await websocket.accept(subprotocol=accepted_subprotocol(websocket.headers))
        if not app.state.accepting or not sessions.try_acquire():
            metrics.sessions_refused.labels(reason="busy").inc()
            await websocket.send_json(
                error_message("busy", "The server is busy with other meetings (or restarting): try again in a minute.")
            )
            await websocket.close(CLOSE_TRY_AGAIN_LATER)
            return
        session = RecordingSession(websocket, uuid.uuid4().hex[:12], app.state.pipeline, limits)
        logger.info("session %s opened", session.id)
        try:
            await session.run()
        finally:
            sessions.release()
            logger.info("session %s closed", session.id)

    return app


def _refusal_reason(websocket: WebSocket, settings: Settings) -> str | None:
    """Why an upgrade is refused before accept ("token", "origin"), or None to admit it."""
    if settings.api_key is not None and not token_accepted(
        settings.api_key.get_secret_value(), websocket.query_params, websocket.headers
    ):
        return "token"
    allowlist = settings.origin_allowlist
    origin = websocket.headers.get("origin")
    if allowlist and origin is not None and origin.rstrip("/") not in allowlist:
        return "origin"
    return None


def _build_default_app() -> FastAPI:
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        raise SystemExit(f"meeting assistant: {exc}") from None
    configure_logging(settings)
    for warning in unknown_setting_warnings():
        logger.warning(warning)
    return create_app(settings)


app = _build_default_app()


def main() -> None:
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.ws_max_message_bytes,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()

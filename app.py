"""The meeting assistant: one FastAPI process serving the recording page, /ws, /health and /metrics.

    uvicorn app:app --host 127.0.0.1 --port 8000      # or: python app.py

Everything long-lived (Whisper model, inference executor and workers, diariser, LLM clients,
workflow hooks) is opened in the lifespan on one `AsyncExitStack` and closed there in reverse
order, each close running even when another one fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from threadpoolctl import threadpool_limits

from integrations.workflows import build_workflows
from observability import Metrics
from services.admission import SessionCounter, SessionLimits, admit_socket, refusal_reason
from services.asr_service import SpeechRecognizer, load_recognizer
from services.audio_buffer import AudioCipher
from services.auth import accepted_subprotocol
from services.calibration import choose_prior
from services.capacity import AdmissionMeter, CapacityPolicy, LoadMeter
from services.data_key import audio_key
from services.diarization import DiarizationService, build_diarization_service
from services.errors import ConfigurationError
from services.llm_service import LLMService, build_llm_service
from services.logging_setup import configure_logging
from services.meeting_store import MeetingStore
from services.meetings_api import router as meetings_router
from services.memory import limit_malloc_arenas
from services.openai_api import router as openai_router
from services.orchestrator import Orchestrator
from services.pipeline import MeetingPipeline
from services.protocol import CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER, server_error
from services.recovery import AudioUpkeep
from services.redis_backend.gateway import RemotePipeline, open_remote_pipeline
from services.redis_backend.resumes import RemoteResumes
from services.resume import ParkedRecording, ResumeRegistry
from services.session import RecordingSession
from services.session_builder import SessionBuilder
from services.setting_names import unknown_setting_warnings
from services.settings import Settings, get_settings
from services.spool_directory import SpoolDirectory
from services.sql_meeting_store import connect_meeting_store
from services.status_api import router as status_router
from services.tasks import cancel_and_wait
from services.uploads import router as uploads_router
from services.vad import load_vad_model
from services.ws_protocol import WebSocketProtocol

logger = logging.getLogger("meeting_assistant")

STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class Services:
    """What the lifespan opened; the routes read it through `AppState.services`."""

    asr_model: str
    orchestrator: Orchestrator
    diarization: DiarizationService | None
    pipeline: MeetingPipeline | RemotePipeline
    store: MeetingStore
    llm: LLMService
    resumes: ResumeRegistry
    recognizer: SpeechRecognizer
    spools: SpoolDirectory | None = None


@dataclass(slots=True)
class AppState:
    """The app's typed state: fixed parts from `create_app`, `services` while the lifespan runs."""

    settings: Settings
    metrics: Metrics
    sessions: SessionCounter
    limits: SessionLimits
    load: AdmissionMeter
    services: Services | None = None
    accepting: bool = False


async def open_services(
    settings: Settings,
    metrics: Metrics,
    stack: AsyncExitStack,
    load: LoadMeter | None = None,
    *,
    gateway: bool | None = None,
) -> Services:
    """Load the models and start the workers; every close is pushed on `stack` as soon as it is owed.

    The orchestrator is drained first on the way out (queued meetings still need the diariser, the
    LLM clients and the hooks) and its threads are freed last. A `gateway` (the default with
    ORCHESTRATOR_BACKEND=redis) hands its meetings to `python -m worker` processes through Redis
    (`services/redis_backend/`) and loads no diariser; `python -m worker` opens with `gateway=False`.
    """
    booted_at = time.time()
    gateway = settings.orchestrator_backend == "redis" if gateway is None else gateway
    store = await connect_meeting_store(settings)  # first: a database that cannot open stops start-up at once
    stack.push_async_callback(store.aclose)  # after the orchestrator drained: finished meetings are stored
    key = await asyncio.to_thread(audio_key, settings)  # generated once into DATA_DIR when not configured
    if settings.orchestrator_backend == "redis" and settings.audio_encryption_key is None:
        logger.warning("AUDIO_ENCRYPTION_KEY is not set: every gateway and worker must share DATA_DIR's audio key.")
    spools = None
    if settings.orchestrator_backend == "asyncio":  # with Redis the sealed audio lives in Redis streams
        spools = SpoolDirectory(settings.data_dir, key, settings.audio_retention_days, metrics)
        flusher = asyncio.create_task(spools.run(), name="spool-flusher")
        stack.push_async_callback(cancel_and_wait, flusher)  # after the drain: the last audio and deletions
    limit_malloc_arenas()  # before the inference threads start (services/memory.py)
    if settings.asr_cpu_threads:
        # BLAS/OpenMP pools default to one thread per core in every library; with our own
        # executor providing the parallelism, extra spinning threads only burn CPU.
        threadpool_limits(limits=settings.asr_cpu_threads)
    recognizer = await asyncio.to_thread(load_recognizer, settings, metrics)
    await asyncio.to_thread(load_vad_model)
    orchestrator = Orchestrator(
        workers=settings.inference_workers,
        batch_size=settings.inference_batch_size,
        metrics=metrics,
        max_background_audio=settings.max_background_audio_seconds,
        load=load,  # the admission's load meter (services/capacity.py)
    )
    stack.push_async_callback(orchestrator.aclose)
    diarization = None
    if not gateway:
        diarization = await asyncio.to_thread(build_diarization_service, settings, orchestrator.run_model, metrics)
        stack.push_async_callback(diarization.aclose)
    llm = build_llm_service(settings, metrics)
    stack.push_async_callback(llm.aclose)
    workflows = build_workflows(settings, metrics)
    stack.push_async_callback(workflows.aclose)
    await orchestrator.start()
    if load is not None and not gateway:  # before meetings and recovery use the CPU; a gateway runs no models
        load.use_prior(await choose_prior(settings, recognizer, orchestrator.run_model))
    stack.push_async_callback(orchestrator.drain)  # finishes queued meetings, so the audit log loses no line
    cipher = AudioCipher(key)
    sessions = SessionBuilder.from_settings(
        settings, metrics=metrics, recognizer=recognizer, orchestrator=orchestrator, diarization=diarization,
        cipher=cipher, spools=spools,
    )
    pipeline: MeetingPipeline | RemotePipeline = MeetingPipeline(
        metrics=metrics, orchestrator=orchestrator, diarization=diarization, llm=llm, workflows=workflows,
        store=store, sessions=sessions,
    )
    if gateway:
        pipeline = await open_remote_pipeline(settings, metrics, store, cipher, stack)

    def finish(parked: ParkedRecording) -> None:
        pipeline.finish_unheard(parked.session_id, parked.title, parked.started_at, parked.parts)

    resumes = ResumeRegistry(settings.resume_grace_seconds, finish)
    if isinstance(pipeline, RemotePipeline):  # a dropped recording can be resumed on any gateway
        resumes = RemoteResumes(settings.resume_grace_seconds, finish, pipeline)
    stack.push_async_callback(resumes.aclose)  # before the drain: recordings waiting for their client are finished
    if spools is not None:
        upkeep = AudioUpkeep(  # meetings a killed process left unfinished; audio retention (services/recovery.py)
            spools=spools,
            store=store,
            pipeline=pipeline,
            metrics=metrics,
            booted_at=booted_at,
            owns_store=settings.database_url is None,
        )
        stack.push_async_callback(cancel_and_wait, asyncio.create_task(upkeep.run(), name="audio-upkeep"))
    return Services(recognizer.name, orchestrator, diarization, pipeline, store, llm, resumes, recognizer, spools)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; tests pass their own `Settings`."""
    settings = settings or get_settings()
    metrics = Metrics(settings.orchestrator_backend)
    load = LoadMeter(CapacityPolicy.from_settings(settings), metrics)
    state = AppState(
        settings=settings,
        metrics=metrics,
        sessions=SessionCounter(settings.max_sessions, metrics, load),
        limits=SessionLimits.from_settings(settings),
        load=load,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            state.services = await open_services(settings, metrics, stack, load)
            if isinstance(state.services.pipeline, RemotePipeline):  # admit by the workers' load
                state.load = state.sessions.meter = state.services.pipeline.fleet
            state.accepting = True
            source = load.prior.source if state.load is load else "unused: the workers' reports decide"
            prior = f"admission prior {load.prior.session_cpu:.3f} CPU-s per audio s ({source})"
            logger.info("ready: %d inference worker(s), max %d session(s), %s", settings.inference_workers,
                        settings.max_sessions, prior)
            try:
                yield
            finally:
                state.accepting = False

    app = FastAPI(title="Meeting assistant", lifespan=lifespan)
    app.state.app_state = state
    app.include_router(meetings_router)
    app.include_router(uploads_router)
    app.include_router(openai_router)
    app.include_router(status_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.websocket("/ws")
    async def recording_socket(websocket: WebSocket) -> None:
        await serve_recording(websocket, state)

    return app


async def serve_recording(websocket: WebSocket, state: AppState) -> None:
    """Admit one /ws connection (token, origin, capacity) and run its recording session."""
    refusal = refusal_reason(websocket, state.settings)
    if refusal is not None:
        state.metrics.sessions_refused.labels(reason=refusal).inc()
        await websocket.close(CLOSE_POLICY, reason=f"{refusal} refused")
        return
    await websocket.accept(subprotocol=accepted_subprotocol(websocket.headers))
    if not state.accepting or state.services is None:
        state.metrics.sessions_refused.labels(reason="busy").inc()
        await websocket.send_json(server_error("busy"))
        await websocket.close(CLOSE_TRY_AGAIN_LATER)
        return
    session_id = uuid.uuid4().hex[:12]
    pipeline = state.services.pipeline
    reserve = functools.partial(pipeline.reserve, session_id) if isinstance(pipeline, RemotePipeline) else None
    busy, resume_only = await admit_socket(state.sessions, len(state.services.resumes), reserve)
    if busy is not None:
        state.metrics.sessions_refused.labels(reason=busy.reason).inc()
        logger.info("session refused: %s (%d active)", busy.reason, state.sessions.active)
        await websocket.send_json(busy.message())
        await websocket.close(CLOSE_TRY_AGAIN_LATER)
        return
    services = state.services
    session = RecordingSession(
        websocket, session_id, services.pipeline, state.limits, services.resumes, resume_only=resume_only
    )
    logger.info("session %s opened", session.id)
    try:
        await session.run()
    finally:
        state.sessions.release()
        logger.info("session %s closed", session.id)


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
        ws=WebSocketProtocol,  # uvicorn's default, mended (services/ws_protocol.py)
        ws_max_size=settings.ws_max_message_bytes,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()

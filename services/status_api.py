"""`/health`, `/ready` and `/metrics`: what operators, load balancers and Prometheus read.

They read the app's typed state (`app.state.app_state`, built in `app.py`): the services the
lifespan opened, the session counter and the load meter (`services/capacity.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from observability import CONTENT_TYPE_LATEST
from services.meeting_store import refresh_store_metrics

if TYPE_CHECKING:
    from app import AppState

router = APIRouter()


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.app_state
    return state


def _serving(state: AppState) -> bool:
    return state.services is not None and state.accepting and state.services.orchestrator.running


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = _state(request)
    services = state.services
    if services is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    ok = _serving(state)
    return JSONResponse(
        {
            "status": "ok" if ok else "stopping",
            "asr_model": services.asr_model,
            "workers": services.orchestrator.worker_count,
            "queue_depth": services.orchestrator.queue_depth,
            "active_sessions": state.sessions.active,
            "max_sessions": state.sessions.limit,
            "diarization": services.diarization.name if services.diarization else None,
            "audio_encrypted": True,  # with no key configured, one is generated (services/data_key.py)
            "llm_chain": services.llm.describe(),
            "capacity": state.load.describe(state.sessions.active) | {"remaining": state.sessions.remaining},
        },
        status_code=200 if ok else 503,
    )


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """For a load balancer: 200 while another meeting fits here, 503 when full or not serving."""
    state = _state(request)
    remaining = state.sessions.remaining if _serving(state) else 0
    body = {"ready": remaining > 0, "capacity": remaining, "active_sessions": state.sessions.active}
    return JSONResponse(body, status_code=200 if remaining > 0 else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    state = _state(request)
    if state.services is not None:
        await refresh_store_metrics(state.services.store, state.metrics)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

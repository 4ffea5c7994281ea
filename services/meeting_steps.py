"""The steps after the transcript: speaker labels and the summary. Each one that fails adds a
line to the meeting's `errors` and hands back what the meeting has without it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

from observability import Metrics
from services.errors import MeetingAssistantError
from services.types import MeetingSummary, Segment

if TYPE_CHECKING:
    from services.diarization import DiarizationService
    from services.diarization_backends.base import SpeakerTurn
    from services.llm_service import LLMService

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def label_speakers(
    diarization: DiarizationService | None,
    turns: asyncio.Task[list[SpeakerTurn]] | None,
    segments: list[Segment],
    *,
    session_id: str,
    metrics: Metrics,
    errors: list[str],
) -> list[Segment]:
    """`segments` with their speakers from `turns`, or unlabelled when diarisation failed."""
    if diarization is None or turns is None:
        return segments
    try:
        return diarization.apply_turns(segments, await turns)
    except MeetingAssistantError as exc:
        logger.warning("diarisation failed (session %s): %s", session_id, exc)
        metrics.job_failures.labels(stage="diarization").inc()
        errors.append(f"Speaker labels unavailable: {exc}")
        return segments


async def summarize(
    llm: LLMService,
    segments: Sequence[Segment],
    *,
    session_id: str,
    title: str | None,
    metrics: Metrics,
    errors: list[str],
) -> tuple[MeetingSummary, str]:
    """The summary and the provider that wrote it (`none` when every provider failed)."""
    metrics.jobs_total.labels(stage="summary").inc()
    outcome = await llm.summarize_meeting(segments, title=title, session_id=session_id)
    if outcome.provider == "none":
        metrics.job_failures.labels(stage="summary").inc()
    errors.extend(outcome.errors)
    return outcome.summary, outcome.provider


async def timed(timings: dict[str, float], name: str, step: Awaitable[T]) -> T:
    """Await `step`, recording its wall time under `timings[name]`."""
    started = time.perf_counter()
    try:
        return await step
    finally:
        timings[name] = time.perf_counter() - started

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from observability import Metrics
from services.errors import BacklogFullError
from services.fake_recognizer import FakeRecognizer, words_over
from services.orchestrator import InferenceJob, ModelRunner, Orchestrator, Urgency
from services.priority_executor import Priority, PriorityExecutor
from services.types import Segment


def _depth(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("meeting_assistant_inference_queue_depth", {"backend": "asyncio"})


async def test_jobs_run_on_workers_and_model_code_runs_off_the_loop() -> None:
    metrics = Metrics()
    orchestrator = Orchestrator(workers=2, batch_size=1, metrics=metrics)
    await orchestrator.start()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    finished: list[str] = []

    async def job(name: str) -> None:
        threads.append(await orchestrator.run_model(threading.get_ident))
        finished.append(name)

    for name in "abcde":
        orchestrator.submit(InferenceJob(session_id=name, run=lambda name=name: job(name)))
    await orchestrator.drain()
    await orchestrator.aclose()
    assert sorted(finished) == list("abcde")
    assert loop_thread not in threads
    assert _depth(metrics) == 0


async def test_a_failing_job_is_counted_and_the_worker_keeps_going() -> None:
    metrics = Metrics()
    orchestrator = Orchestrator(workers=1, batch_size=1, metrics=metrics)
    await orchestrator.start()
    done = asyncio.Event()

    async def boom() -> None:
        raise ValueError("boom")

    async def fine() -> None:
        done.set()

    orchestrator.submit(InferenceJob("s1", boom))
    orchestrator.submit(InferenceJob("s2", fine))
    await asyncio.wait_for(done.wait(), 5)
    assert metrics.registry.get_sample_value("meeting_assistant_job_failures_total", {"stage": "meeting"}) == 1
    await orchestrator.aclose()


async def test_queue_depth_is_exported_and_shutdown_drains_the_queue() -> None:
    metrics = Metrics()
    orchestrator = Orchestrator(workers=1, batch_size=2, metrics=metrics)
    await orchestrator.start()
    gate = asyncio.Event()
    ran: list[int] = []

    async def wait_then_record(i: int) -> None:
        await gate.wait()
        ran.append(i)

    for i in range(5):
        orchestrator.submit(InferenceJob(str(i), lambda i=i: wait_then_record(i)))
    await asyncio.sleep(0.05)
    assert _depth(metrics) == 3  # one worker took a batch of two
    gate.set()
    await orchestrator.drain()
    await orchestrator.aclose()
    assert sorted(ran) == [0, 1, 2, 3, 4]
    try:
        orchestrator.submit(InferenceJob("late", lambda: wait_then_record(9)))
    except RuntimeError as exc:
        assert "shutting down" in str(exc)
    else:
        raise AssertionError("a job submitted after shutdown must be refused")


def test_building_metrics_twice_does_not_clash() -> None:
    first, second = Metrics(), Metrics()
    first.active_sessions.set(3)
    assert b"meeting_assistant_active_sessions 3.0" in first.render()
    assert b"meeting_assistant_active_sessions 0.0" in second.render()


def test_the_most_urgent_waiting_call_runs_first() -> None:
    executor = PriorityExecutor(1)
    gate, order = threading.Event(), []
    blocker = executor.submit(Priority.LIVE, gate.wait)
    futures = [executor.submit(Priority.BACKGROUND, lambda: order.append("abandoned-1"))]
    futures.append(executor.submit(Priority.BACKGROUND, lambda: order.append("abandoned-2")))
    futures.append(executor.submit(Priority.LIVE, lambda: order.append("live draft")))
    gate.set()
    for future in [blocker, *futures]:
        future.result(timeout=5)
    executor.shutdown()
    assert order == ["live draft", "abandoned-1", "abandoned-2"]


async def test_background_jobs_leave_a_worker_for_live_ones_and_their_backlog_is_bounded() -> None:
    metrics = Metrics()
    orchestrator = Orchestrator(workers=2, batch_size=1, metrics=metrics, max_background_audio=90.0)
    await orchestrator.start()
    gate, started = asyncio.Event(), []

    async def job(name: str) -> None:
        started.append(name)
        await gate.wait()

    for name in ("left-1", "left-2", "left-3"):
        orchestrator.submit(InferenceJob(name, lambda name=name: job(name), Priority.BACKGROUND, audio_seconds=30.0))
    with pytest.raises(BacklogFullError):  # 120 s of audio would pass the 90 s bound
        orchestrator.submit(InferenceJob("left-4", lambda: job("left-4"), Priority.BACKGROUND, audio_seconds=30.0))
    await asyncio.sleep(0.05)
    assert started == ["left-1"], "background work holds at most all workers but one"
    orchestrator.submit(InferenceJob("live", lambda: job("live")))
    await asyncio.sleep(0.05)
    assert started == ["left-1", "live"], "a live meeting's job starts at once"
    assert metrics.registry.get_sample_value("meeting_assistant_background_jobs") == 3
    assert metrics.registry.get_sample_value("meeting_assistant_background_jobs_dropped_total") == 1
    gate.set()
    await orchestrator.drain()
    await orchestrator.aclose()
    assert sorted(started) == ["left-1", "left-2", "left-3", "live"]
    assert metrics.registry.get_sample_value("meeting_assistant_background_jobs") == 0


class _SlowRecognizer(FakeRecognizer):
    """The scripted fake, slow: each call holds its thread until the test lets it go."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(words_over("we ship the release on monday", 0.0, 3.0))
        self._gate = gate

    def draft(self, audio: np.ndarray, offset: float, prompt: str = "") -> str:
        self._gate.wait(10)
        return super().draft(audio, offset, prompt)

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str = "") -> list[Segment]:
        self._gate.wait(10)
        return super().transcribe(audio, offset, prompt)


async def test_careful_passes_run_before_the_drafts_of_live_sessions_waiting_for_a_thread() -> None:
    orchestrator = Orchestrator(workers=1, batch_size=1, metrics=Metrics())  # two inference threads
    await orchestrator.start()
    gate = threading.Event()
    recognizer = _SlowRecognizer(gate)
    audio = np.zeros(16000 * 3, dtype=np.float32)
    sessions = [Urgency() for _ in range(4)]
    drafts = [orchestrator.runner(urgency, draft=True) for urgency in sessions]
    careful = orchestrator.runner(sessions[0])
    order: list[str] = []

    async def call(name: str, run: ModelRunner, fn: Callable[..., object]) -> None:
        await run(fn, audio, 0.0)
        order.append(name)

    # both threads busy with drafts; then four more drafts queue up, and one careful pass after them
    tasks = [asyncio.create_task(call(f"busy-{i}", drafts[i], recognizer.draft)) for i in range(2)]
    await asyncio.sleep(0.1)
    tasks += [asyncio.create_task(call(f"draft-{i}", drafts[i], recognizer.draft)) for i in range(4)]
    await asyncio.sleep(0.1)
    tasks.append(asyncio.create_task(call("careful", careful, recognizer.transcribe)))
    await asyncio.sleep(0.1)
    gate.set()
    await asyncio.gather(*tasks)
    await orchestrator.aclose()
    waiting = [name for name in order if not name.startswith("busy")]
    assert waiting[0] == "careful", order
    assert sorted(waiting[1:]) == [f"draft-{i}" for i in range(4)]

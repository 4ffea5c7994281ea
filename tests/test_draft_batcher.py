"""The draft batcher: drafts of several sessions decoded together, each failure kept to its own draft."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from observability import Metrics
from services.asr_service import load_recognizer
from services.draft_batcher import DraftBatcher
from services.errors import ASRError
from services.types import DraftRequest
from tests.support import load_wav, make_settings


class _GatedDecoder:
    """Decodes a request to its prompt in capitals; the first batch holds its thread until `release`."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def draft_batch(self, requests: Sequence[DraftRequest]) -> list[str]:
        self.batches.append([request.prompt for request in requests])
        if len(self.batches) == 1:
            self.started.set()
            self.release.wait(10)
        if any(request.prompt == "breaks" for request in requests):
            raise ASRError("draft decoding failed: injected fault")
        return [request.prompt.upper() for request in requests]


async def _on_a_thread(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def _request(name: str) -> DraftRequest:
    return DraftRequest(np.zeros(1600, dtype=np.float32), 0.0, name)


async def test_drafts_that_come_while_a_batch_runs_go_together_in_the_next() -> None:
    decoder = _GatedDecoder()
    metrics = Metrics()
    batcher = DraftBatcher(decoder, _on_a_thread, metrics, max_batch=3)
    first = asyncio.create_task(batcher.draft(_request("a")))
    await asyncio.to_thread(decoder.started.wait, 10)  # a lone draft starts at once
    later = [asyncio.create_task(batcher.draft(_request(name))) for name in ("b", "c", "d", "e")]
    await asyncio.sleep(0.05)
    decoder.release.set()
    assert await first == "A"
    assert [await task for task in later] == ["B", "C", "D", "E"]
    assert decoder.batches == [["a"], ["b", "c", "d"], ["e"]]  # at most max_batch in one call
    assert metrics.registry.get_sample_value("meeting_assistant_draft_batch_size_count") == 3
    assert metrics.registry.get_sample_value("meeting_assistant_draft_batch_size_sum") == 5


async def test_a_draft_that_breaks_the_recogniser_fails_alone() -> None:
    decoder = _GatedDecoder()
    batcher = DraftBatcher(decoder, _on_a_thread, Metrics(), max_batch=8)
    first = asyncio.create_task(batcher.draft(_request("a")))
    await asyncio.to_thread(decoder.started.wait, 10)
    queued = [asyncio.create_task(batcher.draft(_request(name))) for name in ("b", "breaks", "c")]
    await asyncio.sleep(0.05)
    decoder.release.set()
    assert await first == "A"
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert results[0] == "B" and results[2] == "C"
    assert isinstance(results[1], ASRError)
    assert decoder.batches == [["a"], ["b", "breaks", "c"], ["b"], ["breaks"], ["c"]]  # together, then one by one


def test_one_batched_call_drafts_windows_of_other_lengths_and_prompts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Real tiny.en: three windows of the two-voice meeting, of three lengths, one unprompted, read
    in one batch what each reads alone; the prompted ones share one decoder call (their prompts
    differ in length: the longer is cut to the shorter), the unprompted one has its own."""
    metrics = Metrics()
    recognizer = load_recognizer(make_settings(tmp_path), metrics)
    pcm, _ = load_wav("meeting_two_voices.wav")
    audio = pcm.astype(np.float32) / 32768.0

    def turn(start: float, end: float, prompt: str) -> DraftRequest:
        return DraftRequest(audio[int(start * 16000) : int(end * 16000)], start, prompt)

    requests = [
        turn(0.3, 5.3, ""),
        turn(5.7, 11.3, "Good morning everyone. Let's review the launch plan for the new website."),
        turn(11.6, 16.1, "Thanks Alice."),
    ]
    alone = [recognizer.draft(r.audio, r.offset, r.prompt).lower() for r in requests]

    def generate_calls() -> float:
        labels = {"path": "draft", "op": "generate"}
        return metrics.registry.get_sample_value("meeting_assistant_asr_model_calls_total", labels) or 0.0

    before = generate_calls()
    together = [text.lower() for text in recognizer.draft_batch(requests)]
    assert generate_calls() - before == 2
    for one, batched in zip(alone, together, strict=True):
        assert batched and len(set(batched.split()) & set(one.split())) >= len(one.split()) // 2
    assert "morning" in together[0] and "monday" in together[1] and "march" in together[2]

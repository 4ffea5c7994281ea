"""Live drafts of every session decoded together, so more meetings fit on a core.

A draft is a short greedy decode, and on a CPU each decoder step costs about the same for one
sequence as for eight: the step reads all the decoder's weights (tiny.en's vocabulary projection
alone is 20 M of them) whatever the batch. So the drafts that sessions ask for while a batch is
running wait for it and then go together in the next one (continuous batching): a lone session's
draft starts at once, as before, and a full box decodes its drafts in a few calls instead of one
call each. Measured with tiny.en int8 on one core (`bench/batching_bench.py`): a batch of 4 greedy
decodes costs ~1.6x one decode of the same length.

One batch runs at a time, at draft priority (behind careful passes and finals, see
`services/orchestrator.py`). A batch that fails is decoded again one draft at a time, so a window
that breaks the recogniser fails only its own session's draft.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from observability import Metrics
from services.orchestrator import ModelRunner
from services.types import DraftRequest


class DraftDecoder(Protocol):
    """What the batcher needs: `SpeechRecognizer.draft_batch` (blocking, thread-safe)."""

    def draft_batch(self, requests: Sequence[DraftRequest]) -> list[str]: ...


class DraftBatcher:
    """Queues the drafts of live sessions and decodes them in batches of at most `max_batch`."""

    def __init__(self, decoder: DraftDecoder, run_model: ModelRunner, metrics: Metrics, *, max_batch: int) -> None:
        self._decoder = decoder
        self._run_model = run_model
        self._batch_size = metrics.draft_batch_size
        self._max_batch = max_batch
        self._waiting: list[tuple[DraftRequest, asyncio.Future[str]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def draft(self, request: DraftRequest) -> str:
        """The draft text of `request`, decoded with whatever other drafts are waiting.

        Raises:
            MeetingAssistantError: the recogniser failed on the batch this draft was in.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name="draft-batcher")
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            batch = [(request, future) for request, future in batch if not future.done()]  # cancelled
            if batch:
                self._batch_size.observe(len(batch))
                await self._decode(batch)

    async def _decode(self, batch: list[tuple[DraftRequest, asyncio.Future[str]]]) -> None:
        try:
            texts = await self._run_model(self._decoder.draft_batch, [request for request, _ in batch])
        except Exception as exc:
            if len(batch) > 1:  # one by one: only the window that breaks the recogniser fails
                for one in batch:
                    await self._decode([one])
            elif not batch[0][1].done():
                batch[0][1].set_exception(exc)  # its pump logs it and carries on: a draft is tentative
            return
        for (_, future), text in zip(batch, texts, strict=True):
            if not future.done():
                future.set_result(text)

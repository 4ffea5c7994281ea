from __future__ import annotations

import asyncio

from services.outbox import Outbox


def _draft(segment_id: int, text: str) -> dict[str, object]:
    return {"type": "partial_transcript", "segment_id": segment_id, "text": text, "committed": False}


async def test_newer_draft_replaces_a_waiting_one_of_the_same_segment() -> None:
    dropped: list[int] = []
    outbox = Outbox(on_drop=lambda: dropped.append(1))
    outbox.put(_draft(0, "hel"))
    outbox.put({"type": "status", "status": "recording"})
    outbox.put(_draft(0, "hello"))
    outbox.put(_draft(1, "world"))
    outbox.close()
    received = []
    while (message := await outbox.get()) is not None:
        received.append(message)
    assert [m.get("text") for m in received] == [None, "hello", "world"]
    assert len(dropped) == 1


async def test_slow_reader_backlog_stays_bounded_and_keeps_committed_text() -> None:
    outbox = Outbox(limit=8)
    for i in range(1000):
        outbox.put(_draft(i, f"draft {i}"))
        if i % 100 == 0:
            outbox.put({"type": "partial_transcript", "segment_id": i, "text": "kept", "committed": True})
    assert len(outbox) <= 10 + 8
    committed = [m for m in outbox._items if m.get("committed")]
    assert len(committed) == 10


async def test_get_waits_for_a_message_and_ends_after_close() -> None:
    outbox = Outbox()
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    outbox.put({"type": "status"})
    assert await getter == {"type": "status"}
    outbox.close()
    outbox.put({"type": "status"})  # ignored after close
    assert await outbox.get() is None


async def test_drained_waits_until_the_queue_is_empty() -> None:
    outbox = Outbox()
    await asyncio.wait_for(outbox.drained(), 1)  # empty at first
    outbox.put({"type": "status"})
    waiter = asyncio.create_task(outbox.drained())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await outbox.get()
    await asyncio.wait_for(waiter, 1)

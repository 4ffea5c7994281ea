"""services/tasks.py: a retry loop whose library lost a cancellation still ends when cancelled.

redis-py 8.1 can turn the cancellation of a command in flight into a ConnectionError (a
RedisError): a loop that retries on it swallowed the cancellation and `cancel_and_wait` on it hung
(seen against a real redis-server in a few hundred cancellations at random moments; not on
demand, so the library's part is played here by a call that turns CancelledError into an error).
"""

from __future__ import annotations

import asyncio

import pytest

from services.tasks import cancel_and_wait, raise_if_cancelled

pytestmark = pytest.mark.timeout(30)


class LibraryError(Exception):
    pass


async def _call_that_loses_cancellation() -> None:
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        raise LibraryError("connection closed") from None


async def _retrying(guarded: dict[str, bool], turns: list[int]) -> None:
    while True:
        if guarded["yes"]:
            raise_if_cancelled()
        turns.append(1)
        try:
            await _call_that_loses_cancellation()
        except LibraryError:
            await asyncio.sleep(0.01)


async def test_a_retry_loop_that_checks_ends_when_cancelled() -> None:
    turns: list[int] = []
    task = asyncio.create_task(_retrying({"yes": True}, turns))
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled() and len(turns) <= 2


async def test_without_the_check_the_loop_runs_on() -> None:
    turns: list[int] = []
    guarded = {"yes": False}
    task = asyncio.create_task(_retrying(guarded, turns))
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.sleep(0.3)
    assert not task.done() and len(turns) > 2, "the cancellation was lost"
    guarded["yes"] = True  # the check ends it at its next turn
    await asyncio.wait_for(cancel_and_wait(task), 5)

"""Small helpers for the asyncio tasks the server owns."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, whatever it raised."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def raise_if_cancelled() -> None:
    """Raise `CancelledError` if the running task was asked to stop and the request got lost.

    redis-py (8.1 here) can turn the cancellation of a command in flight into a `ConnectionError`
    and even retry the command: a loop that retries on `RedisError` then swallows the cancellation
    and never ends, and whoever awaits it (`cancel_and_wait`) hangs. Such loops call this each turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

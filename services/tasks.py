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

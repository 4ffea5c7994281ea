"""A thread pool that runs the most urgent model call first.

`concurrent.futures.ThreadPoolExecutor` is first come, first served: a dozen abandoned recordings
queued before a live meeting's draft would make that meeting wait for all of them. Here every call
carries a `Priority`; among the waiting calls the most urgent runs next (first come, first served
within a priority). A call that is running is never interrupted.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import queue
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """How urgent a piece of model work is; lower runs first."""

    LIVE = 0
    """A meeting somebody is watching: drafts, careful passes, the final they wait for."""
    BACKGROUND = 1
    """Work nobody waits for on a socket: recordings whose client left, uploads."""


_STOP = Priority.LIVE - 1  # sorts before any work: a stopping thread takes no new call


class PriorityExecutor:
    """`threads` worker threads taking calls from one priority queue."""

    def __init__(self, threads: int, name: str = "inference") -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, concurrent.futures.Future[Any]]]
        self._queue = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: Priority, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Queue `fn()`; the future holds its result or exception."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((int(priority), next(self._order), fn, future))
        return future

    def shutdown(self) -> None:
        """Let the running calls finish, cancel the waiting ones, and join the threads."""
        for _ in self._threads:
            self._queue.put((_STOP, next(self._order), None, concurrent.futures.Future()))
        for thread in self._threads:
            thread.join()
        while not self._queue.empty():
            _, _, _, future = self._queue.get_nowait()
            future.cancel()

    def _work(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up waiting
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, who decides
                future.set_exception(exc)
            else:
                future.set_result(result)

"""A thread pool that runs the most urgent model call first.

`concurrent.futures.ThreadPoolExecutor` is first come, first served: a dozen abandoned recordings
queued before a live meeting's draft would make that meeting wait for all of them. Here every call
carries a `Priority`; among the waiting calls the most urgent runs next (first come, first served
within a priority). A call that is running is never interrupted, but while a thread runs background
work it is niced (Linux, where the process may renice its threads back): the OS then gives live
calls the cores first even against long background calls already running (a 30-minute upload's
transcription is one call of minutes).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """How urgent a piece of model work is; lower runs first."""

    LIVE = 0
    """A meeting somebody is watching: careful passes (committed text), the final they wait for."""
    DRAFT = 1
    """A live meeting's tentative drafts: thinned first under load, so they wait behind committed text."""
    BACKGROUND = 2
    """Work nobody waits for on a socket: recordings whose client left, uploads."""


_STOP = Priority.LIVE - 1  # sorts before any work: a stopping thread takes no new call

BACKGROUND_NICE = 10
"""Niceness of a thread running background work (CFS weight 110 against 1024 at nice 0)."""

logger = logging.getLogger(__name__)


class PriorityExecutor:
    """`threads` worker threads taking calls from one priority queue."""

    def __init__(self, threads: int, name: str = "inference") -> None:
        self._queue: queue.PriorityQueue[
            tuple[int, int, float, Callable[[], Any] | None, concurrent.futures.Future[Any]]
        ] = queue.PriorityQueue()
        self._live_wait = 0.0  # the longest a live call waited for a thread since the last read
        self._order = itertools.count()
        self._renice = _threads_can_be_reniced()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: Priority, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Queue `fn()`; the future holds its result or exception."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((int(priority), next(self._order), time.monotonic(), fn, future))
        return future

    def take_live_wait(self) -> float:
        """The longest a live call (careful pass, final) waited for a thread since the last call (load meter)."""
        wait, self._live_wait = self._live_wait, 0.0
        return wait

    def shutdown(self) -> None:
        """Let the running calls finish, cancel the waiting ones, and join the threads."""
        for _ in self._threads:
            self._queue.put((_STOP, next(self._order), 0.0, None, concurrent.futures.Future()))
        for thread in self._threads:
            thread.join()
        while not self._queue.empty():
            *_, future = self._queue.get_nowait()
            future.cancel()

    def _work(self) -> None:
        niceness = 0
        while True:
            priority, _, queued_at, fn, future = self._queue.get()
            if fn is None:
                return
            if priority == Priority.LIVE:  # drafts waiting is thinning at work, not overload
                self._live_wait = max(self._live_wait, time.monotonic() - queued_at)
            wanted = BACKGROUND_NICE if priority >= Priority.BACKGROUND and self._renice else 0
            if wanted != niceness:
                _set_thread_nice(wanted)
                niceness = wanted
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up waiting
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, who decides
                future.set_exception(exc)
            else:
                future.set_result(result)


def _set_thread_nice(value: int) -> None:
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), value)  # Linux: a thread id is a "process"


def _threads_can_be_reniced() -> bool:
    """Whether a thread may be niced and brought back (Linux, root or RLIMIT_NICE allowing it).

    Tried on a throw-away thread: lowering niceness back is what an unprivileged process cannot do,
    and a thread stuck niced would slow live work down.
    """
    if not sys.platform.startswith("linux"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            _set_thread_nice(base + 1)
            _set_thread_nice(base)
            result.append(base == 0)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="renice-probe")
    thread.start()
    thread.join()
    if not result[0]:
        logger.info("background model work is not niced: threads of this process cannot be reniced back")
    return result[0]

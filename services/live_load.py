"""What the load meter reads each tick: the live sessions' audio looked at and their lag (`LiveLoad`).

`services/capacity.py` turns the readings into the draft interval, the cost per meeting and the
sessions that still fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement: cumulative CPU and live audio seconds processed, the worst live lag and queue wait now."""

    at: float
    cpu_seconds: float
    audio_seconds: float
    lag: float = 0.0
    queue_wait: float = 0.0


class LoadSource(Protocol):
    """A live session as the meter sees it (the `LivePump`)."""

    @property
    def processed_seconds(self) -> float: ...

    @property
    def lag_seconds(self) -> float: ...


class LiveLoad:
    """The live sessions being pumped; read into a `Reading` each tick."""

    def __init__(self) -> None:
        self._sources: set[LoadSource] = set()
        # audio looked at, not received: a client sending a burst has not cost its CPU yet
        self._gone_seconds = 0.0  # audio of sessions no longer tracked: the total stays cumulative

    def track(self, source: LoadSource) -> None:
        self._sources.add(source)

    def untrack(self, source: LoadSource) -> None:
        if source in self._sources:
            self._sources.discard(source)
            self._gone_seconds += source.processed_seconds

    def read(self, *, interval: float, queue_wait: float, at: float, cpu_seconds: float) -> Reading:
        audio = self._gone_seconds + sum(source.processed_seconds for source in self._sources)
        # audio left waiting on purpose (less than the draft interval) is no lag
        lag = max((source.lag_seconds - interval for source in self._sources), default=0.0)
        return Reading(at=at, cpu_seconds=cpu_seconds, audio_seconds=audio, lag=max(0.0, lag), queue_wait=queue_wait)

"""How loaded the box is: the measured cost of a live meeting, the sessions that still fit, thinned drafts.

Admission used to count sessions only: at eight meetings on two cores every meeting lagged by 15 s.
The `LoadMeter` turns readings taken every `TICK_SECONDS` into three answers:

- **draft interval**: when the process is short of CPU (utilisation over `cpu_target`, live calls
  waiting for a thread, or live audio waiting to be looked at), the seconds of new audio between
  a session's live steps grow (x1.5 per tick, up to `max_draft_interval`); when there is room
  again they shrink back (/1.25 per tick). Drafts are the largest share of the live work, so
  fewer of them keep careful passes (committed text) and finals at speed; those also run before
  drafts among waiting calls (`Priority.DRAFT`).
- **cost per session**: CPU seconds per live audio second, measured (a moving average over
  ~`COST_SECONDS`, starting from the prior, trusted after `_WARM_UP_SECONDS` of live audio) while
  the drafts are thinned to the full, since that is the regime of a full box; until then the prior
  (`SessionPrior`: ADMISSION_SESSION_CPU when set, else calibrated to this machine at start-up by
  `services/calibration.py`), or the cost measured with fuller drafts when that is lower (thinning
  only lowers it).
- **capacity**: the sessions that still fit, `floor(cores * cpu_target / cost) - active`, capped by
  MAX_SESSIONS, and zero while the live lag guard is tripped: worst live lag (audio waiting beyond
  the draft interval, of sessions sent at real-time pace: a burst is no sign of overload) over
  `max_lag`, or live model calls waiting for a thread longer than `max_queue_wait`. Once tripped it
  stays closed until both have been under half their limits for `probation` seconds, so a box on
  the edge does not flap between admitting and refusing.

The meter is pure arithmetic over the readings (`update`), so it is tested with injected
measurements; `LiveLoad` gathers them from the live pumps and the inference executor.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Protocol

from observability import Metrics
from services.live_load import LiveLoad, Reading
from services.settings import Settings

TICK_SECONDS = 0.5
COST_SECONDS = 20.0
"""Time constant of the moving average of the per-session cost."""
_RATE_SECONDS = 2.0
"""Time constant of the CPU and audio rates that steer the draft interval."""
_MIN_AUDIO_RATE = 0.5
"""Live audio seconds per second below which the cost is not measured (too little to tell)."""
_WARM_UP_SECONDS = 30.0
"""Seconds of live audio flowing before a measured cost replaces the prior: a meeting's first seconds
cost a third of the rest (its careful passes and speaker embeddings come later), so a burst measured
then made two 1-core workers report room for 10-11 more each while they served 5-6, and 13 meetings
were admitted where 10 fit."""
UNCALIBRATED_SESSION_CPU = 0.6
"""The prior when ADMISSION_SESSION_CPU is unset and the start-up calibration has not run (or could
not): one meeting alone on a 2-core machine about 3x slower than the one the README measures on."""


@dataclass(frozen=True, slots=True)
class CapacityPolicy:
    """Admission and draft-thinning limits (the ADMISSION_* settings and the draft intervals)."""

    max_sessions: int = 4
    by_load: bool = True
    cores: float = 2.0
    cpu_target: float = 0.9
    session_cpu: float = 0.25
    max_lag: float = 3.0
    max_queue_wait: float = 1.0
    probation: float = 10.0
    retry_after: float = 15.0
    draft_interval: float = 0.4
    max_draft_interval: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CapacityPolicy:
        return cls(
            max_sessions=settings.max_sessions,
            # a Redis gateway runs no models: its own CPU says nothing about the workers' room
            by_load=settings.admission_by_load and settings.orchestrator_backend == "asyncio",
            cores=settings.admission_cpu_cores or available_cores(),
            cpu_target=settings.admission_cpu_target,
            session_cpu=settings.admission_session_cpu or UNCALIBRATED_SESSION_CPU,
            max_lag=settings.admission_max_lag_seconds,
            max_queue_wait=settings.admission_max_queue_wait_seconds,
            probation=settings.admission_probation_seconds,
            retry_after=settings.admission_retry_seconds,
            draft_interval=settings.asr_partial_interval,
            max_draft_interval=max(settings.asr_partial_interval, settings.asr_partial_max_interval),
        )


def available_cores() -> float:
    """The cores this process may run on (its CPU affinity)."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return float(os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class SessionPrior:
    """The cost of a meeting planned with until it is measured, and where it came from (for /health)."""

    session_cpu: float
    source: str
    """"ADMISSION_SESSION_CPU" (the operator's), "calibrated", "uncalibrated" or "policy" (as constructed)."""
    reference_cpu_seconds: float | None = None
    """The calibration's reference workload on this machine, when it ran."""


class LoadMeter:
    """Readings in; the draft interval, the per-session cost and the sessions that still fit out."""

    def __init__(self, policy: CapacityPolicy, metrics: Metrics | None = None) -> None:
        self.policy = policy
        self._metrics = metrics
        self._last: Reading | None = None
        self._cpu_rate = 0.0  # cores busy, short average
        self._audio_rate = 0.0  # live audio seconds per second, short average
        self._cost: float | None = None  # CPU-s per audio s, measured with the drafts thinned to the full
        self._cost_unthinned: float | None = None  # the same with fuller drafts: an upper bound
        self._measured_seconds = 0.0  # seconds of live audio flowing the costs were measured over
        self._stretch = 1.0
        self.lag = 0.0
        self.queue_wait = 0.0
        self._tripped_until: float | None = None  # the guard is closed until then (None: open)
        self.live = LiveLoad()
        self.prior = SessionPrior(policy.session_cpu, "policy")
        """Replaced at start-up by `use_prior` (services/calibration.py `choose_prior`)."""
        self._publish(0)

    def use_prior(self, prior: SessionPrior) -> None:
        """Plan with `prior` until the cost is measured (the operator's, or calibrated to this machine)."""
        self.prior = prior

    @property
    def draft_interval(self) -> float:
        """Seconds of new audio between a live session's steps now."""
        return self.policy.draft_interval * self._stretch

    @property
    def thinning(self) -> bool:
        """Whether the box is short of CPU: drafts are thinned (and the final's full-context reading waits)."""
        return self._stretch > 1.0

    @property
    def session_cost(self) -> float:
        """CPU seconds one live meeting costs per audio second (measured, or the prior)."""
        if self._measured_seconds < _WARM_UP_SECONDS:
            return self.prior.session_cpu
        if self._cost is not None:
            return self._cost
        return min(self.prior.session_cpu, self._cost_unthinned or self.prior.session_cpu)

    @property
    def utilisation(self) -> float:
        return self._cpu_rate / self.policy.cores

    def update(self, reading: Reading) -> None:
        """Take one reading (cumulative counters, so a missed tick loses nothing)."""
        last, self._last = self._last, reading
        self.lag, self.queue_wait = reading.lag, reading.queue_wait
        if last is None or reading.at <= last.at:
            return
        elapsed = reading.at - last.at
        cpu_rate = (reading.cpu_seconds - last.cpu_seconds) / elapsed
        audio_rate = (reading.audio_seconds - last.audio_seconds) / elapsed
        short = 1.0 - math.exp(-elapsed / _RATE_SECONDS)
        self._cpu_rate += (cpu_rate - self._cpu_rate) * short
        self._audio_rate += (audio_rate - self._audio_rate) * short
        self._steer()
        if self._audio_rate >= _MIN_AUDIO_RATE:
            measured = self._cpu_rate / self._audio_rate
            weight = 1.0 - math.exp(-elapsed / COST_SECONDS)
            self._measured_seconds += elapsed
            if self._stretch * self.policy.draft_interval >= self.policy.max_draft_interval:
                self._cost = _average(self._cost, measured, weight, self.prior.session_cpu)
            else:
                self._cost_unthinned = _average(self._cost_unthinned, measured, weight, self.prior.session_cpu)
        self._guard(reading.at)
        if self._metrics is not None:
            self._metrics.session_cpu_cost.set(self.session_cost)
            self._metrics.draft_interval.set(self.draft_interval)

    def _steer(self) -> None:
        """Thin the drafts when short of CPU; bring them back when there is room."""
        limit = self.policy.max_draft_interval / self.policy.draft_interval
        target = self.policy.cpu_target
        if self.utilisation >= target or self.queue_wait > 0.2 or self.lag > 1.0:
            self._stretch = min(limit, self._stretch * 1.5)
        elif self.utilisation < target - 0.15 and self.queue_wait < 0.05 and self.lag < 0.5:
            self._stretch = max(1.0, self._stretch / 1.25)

    def _guard(self, now: float) -> None:
        if self.lag > self.policy.max_lag or self.queue_wait > self.policy.max_queue_wait:
            self._tripped_until = now + self.policy.probation
        elif self._tripped_until is not None and (
            self.lag > self.policy.max_lag / 2 or self.queue_wait > self.policy.max_queue_wait / 2
        ):
            self._tripped_until = max(self._tripped_until, now + self.policy.probation)

    def overloaded(self, now: float | None = None) -> bool:
        """Whether the live lag guard is closed (live meetings fall behind, or did within `probation`)."""
        if self._tripped_until is None:
            return False
        if (time.monotonic() if now is None else now) >= self._tripped_until:
            self._tripped_until = None
            return False
        return True

    def fits(self) -> int:
        """How many live sessions the CPU serves in real time at the measured cost."""
        return math.floor(self.policy.cores * self.policy.cpu_target / self.session_cost + 1e-9)

    def capacity(self, active: int, now: float | None = None) -> int:
        """Sessions that may still be admitted (never below 0)."""
        room = self.policy.max_sessions - active
        if self.policy.by_load:
            room = 0 if self.overloaded(now) else min(room, self.fits() - active)
        remaining = max(0, room)
        self._publish(remaining)
        return remaining

    def _publish(self, remaining: int) -> None:
        if self._metrics is None:
            return
        self._metrics.capacity_sessions.set(remaining)
        self._metrics.session_cpu_cost.set(self.session_cost)
        self._metrics.draft_interval.set(self.draft_interval)

    def describe(self, active: int) -> dict[str, object]:
        """The capacity block of /health and /ready."""
        return {
            "remaining": self.capacity(active),
            "by_load": self.policy.by_load,
            "cores": self.policy.cores,
            "session_cpu": round(self.session_cost, 3),
            "session_cpu_prior": round(self.prior.session_cpu, 3),
            "prior_source": self.prior.source,
            "reference_cpu_seconds": None if (ref := self.prior.reference_cpu_seconds) is None else round(ref, 3),
            "utilisation": round(self.utilisation, 3),
            "live_lag_seconds": round(self.lag, 2),
            "queue_wait_seconds": round(self.queue_wait, 3),
            "draft_interval_seconds": round(self.draft_interval, 2),
            "overloaded": self.overloaded(),
        }


class AdmissionMeter(Protocol):
    """What admission and `/health` ask of a meter: this process's `LoadMeter`, or in Redis mode a
    gateway's view of its workers' published headroom (`services/redis_backend/fleet.py`)."""

    @property
    def policy(self) -> CapacityPolicy: ...

    def capacity(self, active: int, now: float | None = None) -> int: ...

    def overloaded(self, now: float | None = None) -> bool: ...

    def describe(self, active: int) -> dict[str, object]: ...


def _average(average: float | None, value: float, weight: float, start: float) -> float:
    """The moving average moved toward `value`; it starts from `start` (the prior), not from the first
    reading, which comes from the cheap first seconds of the meetings."""
    average = start if average is None else average
    return average + (value - average) * weight

"""Who may open a recording session and what it may do: token and origin checks before accept,
the session count and the measured load, and each session's limits.

uvicorn's `--limit-concurrency` does not cover WebSocket upgrades, so the app counts sessions itself.
A new meeting is admitted when fewer than MAX_SESSIONS are open and the load meter
(`services/capacity.py`) says one more can be served in real time; otherwise it gets the `busy`
error with a `retry_after` hint in seconds and close 1013, before any audio is taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from observability import Metrics
from services.auth import token_accepted
from services.capacity import AdmissionMeter
from services.protocol import error_message
from services.settings import Settings


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one session may do, from the settings."""

    max_session_seconds: float
    max_message_bytes: int
    max_violations: int
    max_frames_per_second: float
    handshake_timeout: float = 10.0
    """Seconds a new socket may wait before its `start` or first audio."""
    idle_timeout: float = 120.0
    """Seconds a recording may go without audio before it is finished."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        return cls(
            max_session_seconds=settings.max_session_seconds,
            max_message_bytes=settings.ws_max_message_bytes,
            max_violations=settings.max_protocol_violations,
            max_frames_per_second=settings.max_frames_per_second,
            handshake_timeout=settings.ws_handshake_timeout_seconds,
            idle_timeout=settings.session_idle_timeout_seconds,
        )


@dataclass(frozen=True, slots=True)
class Busy:
    """Why a session was not admitted: `busy` (MAX_SESSIONS), `capacity` (the CPU is spoken for) or
    `overloaded` (live meetings are falling behind); `retry_after` seconds is the client's hint."""

    reason: str
    retry_after: float

    def message(self) -> dict[str, Any]:
        """The `busy` error the client gets (the code every refusal has kept; `retry_after` is new)."""
        why = {
            "busy": "the server is serving as many meetings as it may",
            "capacity": "the server has no CPU left for another live meeting",
            "overloaded": "the meetings already running are falling behind",
        }[self.reason]
        seconds = round(self.retry_after)
        return error_message("busy", f"The server is busy ({why}): try again in {seconds} s.") | {
            "retry_after": seconds
        }


class SessionCounter:
    """Counts open sessions and admits a new one when the count and the measured load allow it."""

    def __init__(self, limit: int, metrics: Metrics, meter: AdmissionMeter | None = None) -> None:
        self.limit = limit
        self.active = 0
        self.meter = meter
        self._gauge = metrics.active_sessions
        self._retry_after = meter.policy.retry_after if meter is not None else 60.0

    @property
    def remaining(self) -> int:
        """Sessions that may still be admitted now."""
        if self.meter is None:
            return max(0, self.limit - self.active)
        return min(self.meter.capacity(self.active), self.limit - self.active)

    def admit(self) -> Busy | None:
        """Take a session slot, or say why not."""
        if self.active >= self.limit:
            return Busy("busy", self._retry_after)
        if self.meter is not None and self.meter.capacity(self.active) == 0:
            return Busy("overloaded" if self.meter.overloaded() else "capacity", self._retry_after)
        self.active += 1
        self._gauge.set(self.active)
        return None

    def admit_past_limit(self, parked: int) -> bool:
        """Admit a socket although `admit` said no, to resume one of the `parked` recordings waiting for their
        clients (served already: their dropped sockets gave their slots back); one socket each past the limit."""
        if not parked or self.active >= self.limit + parked:
            return False
        self.active += 1
        self._gauge.set(self.active)
        return True

    def try_acquire(self) -> bool:
        return self.admit() is None

    def release(self) -> None:
        self.active -= 1
        self._gauge.set(self.active)


Reserve = Callable[[], Awaitable[Busy | None]]
"""A worker slot for the new session, atomically across gateways (Redis mode); a `Busy` when none is left."""
Admitted = tuple[Busy | None, Busy | None]


async def admit_socket(counter: SessionCounter, parked: int, reserve: Reserve | None) -> Admitted:
    """Whether a new socket may record: (refused, resume_only). `resume_only` is set when it is admitted past
    the limit only to resume one of the `parked` recordings: the refusal it gets if it does anything else."""
    busy = counter.admit()  # the count and the measured load (services/capacity.py)
    if busy is None and reserve is not None and (busy := await reserve()) is not None:
        counter.release()
    if busy is not None and counter.admit_past_limit(parked):
        return None, busy
    return busy, None


def refusal_reason(websocket: WebSocket, settings: Settings) -> str | None:
    """Why an upgrade is refused before accept ("token", "origin"), or None to admit it."""
    if settings.api_key is not None and not token_accepted(
        settings.api_key.get_secret_value(), websocket.query_params, websocket.headers
    ):
        return "token"
    allowlist = settings.origin_allowlist
    origin = websocket.headers.get("origin")
    if allowlist and origin is not None and origin.rstrip("/") not in allowlist:
        return "origin"
    return None

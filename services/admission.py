"""Who may open a recording session and what it may do: token and origin checks before accept,
the session count, and each session's limits.

uvicorn's `--limit-concurrency` does not cover WebSocket upgrades, so the app counts sessions itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.websockets import WebSocket

from observability import Metrics
from services.auth import token_accepted
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


class SessionCounter:
    """Counts open sessions for admission control."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.active = 0
        self._gauge = metrics.active_sessions

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        self._gauge.set(self.active)
        return True

    def release(self) -> None:
        self.active -= 1
        self._gauge.set(self.active)


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

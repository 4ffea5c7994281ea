"""The limits one client's frames are held to: frame size, frame rate, protocol violations, and what a
socket admitted only to resume a parked recording may do.

A session asks its guard before it handles a frame; the guard counts what it sees in the
metrics and queues the `error` messages the client is owed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from observability import Metrics
from services.admission import Busy, SessionLimits
from services.audio_intake import FramePacer
from services.errors import ProtocolError
from services.outbox import Outbox
from services.protocol import CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN_LATER, error_message, server_error


class ClientGuard:
    """Holds one client to its `SessionLimits`."""

    def __init__(self, limits: SessionLimits, metrics: Metrics, outbox: Outbox) -> None:
        self._limits = limits
        self._metrics = metrics
        self._outbox = outbox
        self._pacer = FramePacer(limits.max_frames_per_second)
        self._violations = 0
        self._late_audio_told = False

    def oversized(self, data: bytes) -> int | None:
        """Close 1009 for a frame over `WS_MAX_MESSAGE_BYTES`, else None."""
        if len(data) <= self._limits.max_message_bytes:
            return None
        self._metrics.protocol_errors.labels(code="frame_too_big").inc()
        return CLOSE_TOO_BIG

    async def pace(self, peer_gone: bool) -> None:
        """Slow a flooding client down (`FramePacer`); the frames a vanished client left are read at once."""
        delay, tell = self._pacer.next_frame()
        if delay <= 0 or peer_gone:
            return
        if tell:
            self.tell("rate_limited", rate=self._limits.max_frames_per_second)
        await asyncio.sleep(delay)

    def tell(self, code: str, **values: Any) -> None:
        """An `error` the server detects itself, counted but not a violation."""
        self._metrics.protocol_errors.labels(code=code).inc()
        self._outbox.put(server_error(code, **values))

    def late_audio(self) -> None:
        """Audio after stop: frames still in flight are normal, so one notice, never a violation."""
        if not self._late_audio_told:
            self._late_audio_told = True
            self.tell("audio_after_stop")

    def refuse(self, busy: Busy) -> int:
        """A socket admitted past the limit only to resume a parked recording did something else: `busy`, 1013."""
        self._metrics.sessions_refused.labels(reason=busy.reason).inc()
        self._outbox.put(busy.message())
        return CLOSE_TRY_AGAIN_LATER

    def violation(self, error: ProtocolError) -> int | None:
        """Answer a bad frame; close 1008 once the client has made `MAX_PROTOCOL_VIOLATIONS` of them."""
        self._violations += 1
        self._metrics.protocol_errors.labels(code=error.code).inc()
        self._outbox.put(error_message(error.code, error.message))
        if self._violations >= self._limits.max_violations:
            self._outbox.put(server_error("too_many_errors"))
            return CLOSE_POLICY
        return None

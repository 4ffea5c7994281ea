"""Recordings whose socket dropped, kept for `RESUME_GRACE_SECONDS` so the client can resume them.

A client that vanishes mid-recording has usually lost its network for a moment, not its meeting.
Its session's parts (audio, live transcript, speakers) are parked here under the session id; a
new socket that sends `{"type": "start", "resume": id}` claims them and carries on, so one
transcript and one summary cover the whole meeting. A recording nobody claims in time is
finished with the audio it has, in the background (`expire`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.recording import SessionParts

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ParkedRecording:
    """What a new socket needs to carry on with a recording."""

    session_id: str
    title: str | None
    started_at: float
    parts: SessionParts


class ResumeRegistry:
    """Parked recordings by session id; `expire(parked)` finishes each one nobody claims in time."""

    def __init__(self, grace_seconds: float, expire: Callable[[ParkedRecording], None]) -> None:
        self.grace_seconds = grace_seconds
        self._expire = expire
        self._parked: dict[str, tuple[ParkedRecording, asyncio.TimerHandle]] = {}
        self._attached: dict[str, Callable[[], None]] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def holds(self, session_id: str) -> bool:
        """Whether `session_id`'s recording waits here for its client."""
        return session_id in self._parked

    def park(self, parked: ParkedRecording) -> None:
        timer = asyncio.get_running_loop().call_later(self.grace_seconds, self._time_up, parked.session_id)
        self._parked[parked.session_id] = (parked, timer)
        logger.info("session %s parked for %.0f s, waiting for its client", parked.session_id, self.grace_seconds)

    def attach(self, session_id: str, let_go: Callable[[], None]) -> None:
        """A socket serves `session_id`; `let_go()` parks its recording (a newer socket claims it)."""
        self._attached[session_id] = let_go

    def detach(self, session_id: str, let_go: Callable[[], None]) -> None:
        if self._attached.get(session_id) == let_go:  # the same bound method, not the same object
            del self._attached[session_id]

    def claim(self, session_id: str) -> ParkedRecording | None:
        """The parked recording, now the caller's; None when the id is unknown or already finished.

        A client often reconnects before the server has noticed that its old socket is dead: a
        recording still attached to a socket is parked first, then claimed.
        """
        if (let_go := self._attached.pop(session_id, None)) is not None:
            let_go()
        entry = self._parked.pop(session_id, None)
        if entry is None:
            return None
        parked, timer = entry
        timer.cancel()
        return parked

    async def claim_anywhere(self, session_id: str) -> ParkedRecording | None:
        """`claim`, from wherever the recording waits: here, this process. (In Redis mode a recording
        may wait on another gateway: `services/redis_backend/resumes.py`.)"""
        return self.claim(session_id)

    async def aclose(self) -> None:
        """Finish every parked recording now (the server is shutting down)."""
        self.expire_all()

    def expire_all(self) -> None:
        """Finish every parked recording now (the server is shutting down)."""
        for session_id in list(self._parked):
            self._time_up(session_id)

    def _time_up(self, session_id: str) -> None:
        entry = self._parked.pop(session_id, None)
        if entry is not None:
            logger.info("session %s: its client did not come back; finishing it", session_id)
            entry[1].cancel()
            self._expire(entry[0])

"""One recording's parts while it records, and what is handed on when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.audio_buffer import SecureAudioBuffer
from services.live_pump import LivePump
from services.orchestrator import Urgency
from services.priority_executor import Priority
from services.session_speakers import SessionSpeakers
from services.spool import AudioSpool
from services.stored_meeting import MeetingSource


@dataclass(slots=True)
class SessionParts:
    """What one recording session works with while it records."""

    buffer: SecureAudioBuffer
    pump: LivePump
    speakers: SessionSpeakers | None
    urgency: Urgency
    listed: asyncio.Task[bool] | None = None
    """Listing the meeting in the store (started with the first audio)."""
    spool: AudioSpool | None = None
    """Where the audio also goes, sealed, as it arrives (`services/spool.py`); None: memory only."""

    def detach(self) -> None:
        """Nobody is watching any more: this session's model work goes behind live meetings."""
        self.urgency.level = Priority.BACKGROUND

    def attach(self, *, new_capture: bool = False) -> None:
        """Somebody is watching again (a resumed session); `new_capture`: what its client sends next does not
        continue what it sent before (a reloaded page), so it is heard on its own."""
        self.urgency.level = Priority.LIVE
        if new_capture:
            self.pump.hear_afresh()

    def audio_complete(self) -> None:
        """All of the recording's audio is in (an upload decoded, a live one stopped)."""
        if self.spool is not None:
            self.spool.audio_complete(self.buffer.samples)

    def meeting_stored(self) -> None:
        """The finished meeting is in the store: its spooled audio is no longer needed to recover it."""
        if self.spool is not None:
            self.spool.finished()

    def close(self) -> None:
        """Drop the work in flight and the audio in memory (the session is over).

        The spool is closed, not deleted: unless `meeting_stored()` came first, the next start-up
        finishes the meeting from it.
        """
        self.pump.cancel()
        if self.speakers is not None:
            self.speakers.close()
        self.buffer.clear()
        if self.spool is not None:
            self.spool.close()


@dataclass(frozen=True, slots=True)
class FinishedRecording:
    """What a session hands the pipeline at stop."""

    session_id: str
    title: str | None
    started_at: float
    """Unix time the session started."""
    stopped_at: float
    """`time.perf_counter()` when the recording stopped (for stop -> final)."""
    parts: SessionParts
    source: MeetingSource = MeetingSource.LIVE
    """`upload` for a recording posted to /api/meetings (stored as such, not in the live stop -> final)."""
    recovered: bool = False
    """Finished at start-up from the spool of a process that died (stored as `recovered`)."""
    hooks_once: Callable[[], Awaitable[bool]] | None = None
    """Asked right before the after-stop hooks run: False when they already ran for this meeting
    (a Redis-mode worker that died after them; its successor finishes the meeting again). None: run."""

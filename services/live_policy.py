"""The live transcription policy of one session: when to draft, when to commit, what to send.

Two windows run over the session's audio:

- the *draft* window is the utterance being spoken (since the last pause of `min_silence`).
  Every `advance()` with new speech drafts it with the cheap path and sends it as tentative text.
  When the speaker pauses, that draft is frozen (still tentative) and the next utterance opens;
- the *commit* window holds every utterance not yet committed. It is decoded with the careful
  path (beam search, 30 s context, word times, the committed tail as the prompt) on a pause of
  `commit_silence`, once it holds `commit_window` seconds of speech and an utterance ends, or at
  the end of the recording. Its segments replace the pending drafts by `segment_id`.

Decoding several utterances together costs one careful pass instead of one per utterance, and
gives Whisper the context it was trained with (better words). An utterance that runs past
`max_utterance` without a pause has its settled head committed at the widest word gap that is at
least `holdback` seconds old, so drafts stay short and cheap.

The streaming VAD gates everything: a window with no speech is dropped, so silence is never
decoded (and never hallucinated into "Thank you."). Committed text is never revised, so it never
flickers. All methods block (model work): call them on the inference executor, one at a time.

This module holds the policy's timing (from the ASR_* settings) and the careful pass it schedules.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.settings import Settings
from services.types import DraftRequest, Segment


@dataclass(frozen=True, slots=True)
class LivePolicy:
    """Timing of the live policy, in seconds (from the ASR_* settings)."""

    min_silence: float = 0.5
    commit_silence: float = 1.0
    commit_window: float = 8.0
    max_utterance: float = 8.0
    vad_threshold: float = 0.35

    @classmethod
    def from_settings(cls, settings: Settings) -> LivePolicy:
        """The live transcription timing the ASR_* settings ask for."""
        return cls(
            min_silence=settings.asr_min_silence_seconds,
            commit_silence=settings.asr_commit_silence_seconds,
            commit_window=settings.asr_commit_window_seconds,
            max_utterance=settings.asr_max_utterance_seconds,
            vad_threshold=settings.asr_vad_threshold,
        )


@dataclass(frozen=True, slots=True)
class CommitJob:
    """A careful pass over [start, end) samples that replaces the drafts shown for that audio."""

    start: int
    end: int
    pending: tuple[tuple[int, float], ...]  # (segment id, start time) of the drafts it replaces
    drafts: dict[int, Segment]  # their latest text, which stands in if the careful pass fails


@dataclass(frozen=True, slots=True)
class DraftJob:
    """A draft of the open utterance [start, end) samples, due now; `request` is what to decode."""

    segment_id: int | None  # the utterance's id once it has a draft on screen
    start: int
    end: int
    onset: int | None  # where the VAD heard the utterance begin (onset-delay metric); None: a takeover's backlog
    request: DraftRequest

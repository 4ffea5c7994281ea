"""The segments one session's client sees: ids in order, drafts of what is not committed yet, then commits.

    open(start) -> id    draft(segment) -> update    close()          the utterance being drafted
    hand_over(start, end) -> CommitJob                                its drafts go to a careful pass
    settle(job, segments) -> updates                                  which replaces them, id for id

`LiveTranscriber` decides when to draft and commit over the audio; this keeps what the client was
shown, so a commit replaces exactly the drafts it covers (`segment_id` for `segment_id`) and the
committed transcript grows in order. Not thread-safe: the transcriber calls it one step at a time.
"""

from __future__ import annotations

from services.live_policy import CommitJob
from services.transcript_words import deal_words, empty_segment
from services.types import Segment, TranscriptUpdate

_PROMPT_SEGMENTS = 4
_PROMPT_CHARS = 200


class LiveSegments:
    """Segment ids, pending drafts and the committed transcript of one live session."""

    def __init__(self) -> None:
        self._next_id = 0
        self._pending: list[tuple[int, float]] = []  # (segment id, start time) of drafts shown, oldest first
        self._drafts: dict[int, Segment] = {}  # the latest draft of each pending segment id
        self.open_id: int | None = None
        """The id of the utterance being drafted, once it has a draft on screen."""
        self.committed: list[Segment] = []

    def resume_after(self, committed: list[Segment], next_id: int) -> None:
        """Go on after a transcript another worker committed: ids continue from `next_id`."""
        self._next_id = next_id
        self.committed.extend(committed)

    @property
    def pending(self) -> bool:
        """Whether drafts are on screen that no commit has replaced yet."""
        return bool(self._pending)

    def prompt(self) -> str:
        """The committed tail that conditions the next decode."""
        return " ".join(segment.text for segment in self.committed[-_PROMPT_SEGMENTS:])[-_PROMPT_CHARS:]

    def open(self, start: float, *, continuing: bool = False) -> int:
        """A new id for the utterance starting at `start` seconds. `continuing`: it goes on from the last
        pending draft (a stalled draft split off), so a commit deals their words as one utterance's."""
        self.open_id = self._new_id()
        if continuing and self._pending:
            start = self._pending[-1][1]
        self._pending.append((self.open_id, start))
        return self.open_id

    def draft(self, segment: Segment) -> tuple[TranscriptUpdate, Segment | None]:
        """Show `segment` as the open utterance's draft (after `open`): the update, and the draft it replaces."""
        if self.open_id is None:
            raise RuntimeError("draft() with no open utterance: open() it first")
        previous = self._drafts.get(self.open_id)
        self._drafts[self.open_id] = segment
        return TranscriptUpdate(self.open_id, segment, committed=False), previous

    def close(self) -> None:
        """The open utterance's draft stays on screen as it is; the next draft opens a new id."""
        self.open_id = None

    def hand_over(self, start: int, end: int) -> CommitJob:
        """A careful pass over [start, end) samples that will replace every draft shown so far."""
        job = CommitJob(start, end, tuple(self._pending), dict(self._drafts))
        self._pending, self._drafts, self.open_id = [], {}, None
        return job

    def settle(self, job: CommitJob, segments: list[Segment] | None) -> list[TranscriptUpdate]:
        """Commit `segments` in place of the job's drafts, one segment per drafted utterance: the careful
        pass often runs several utterances into one segment, and its words are dealt back to the drafts the
        client shows, by time (a draft that gets none is committed empty; clients drop it). None (the pass
        failed, or heard nothing in speech) commits the drafts shown instead."""
        ids = [segment_id for segment_id, _ in job.pending]
        if segments is None:
            pieces = [job.drafts.get(segment_id) or empty_segment() for segment_id in ids]
        elif ids:
            pieces = deal_words(segments, [start for _, start in job.pending])
        else:
            pieces, ids = segments, [self._new_id() for _ in segments]
        self.committed += [segment for segment in pieces if segment.text]
        return [TranscriptUpdate(i, piece, committed=True) for i, piece in zip(ids, pieces, strict=True)]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

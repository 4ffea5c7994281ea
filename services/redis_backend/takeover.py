"""What a worker that takes a meeting over keeps from the worker before it: the committed transcript.

Committed text never changes (the protocol says so), and every committed update a worker sent is in
the meeting's results stream, with its word times (`streams.WORDS`). A worker that takes the
meeting marks its epoch in that stream first (`streams.TAKEN`: from then on the gateway drops what
the old worker still sends), then reads everything before the mark as the gateway accepted it
(`committed_so_far`), and starts its transcriber after the last committed word (`seed`): the audio
before that point is only fed to the VAD, never transcribed again, and the committed segments are
neither sent again nor lost from the final. The drafts the old worker showed after that point are
cleared (committed empty; clients drop those) and that audio is transcribed afresh, under new
segment ids, so no id the client holds as committed is ever reused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from services.live_pump import LivePump
from services.redis_backend import streams
from services.transcript_words import empty_segment
from services.types import Segment, TranscriptUpdate, Word

RESULTS_PAGE = 1000
"""Results entries read per request when a takeover reads what earlier workers sent."""


@dataclass(slots=True)
class Committed:
    """A meeting's transcript as its gateway holds it when a worker takes the meeting over."""

    segments: list[Segment] = field(default_factory=list)
    """The committed segments with text, in the order they were committed."""
    next_id: int = 0
    """The first segment id no earlier worker used."""
    drafts: list[int] = field(default_factory=list)
    """Ids whose latest update is a draft: shown to the participants, never committed."""

    @property
    def until(self) -> float:
        """Seconds of audio the committed text covers (the end of its last word)."""
        return max((segment.end for segment in self.segments), default=0.0)


def words_field(update: TranscriptUpdate) -> bytes | None:
    """A committed update's word times, for the results entry (None for a draft)."""
    if not update.committed or not update.segment.words:
        return None
    words = [[round(w.start, 3), round(w.end, 3), w.text, round(w.probability, 3)] for w in update.segment.words]
    return json.dumps(words).encode()


async def results_before(
    redis: Redis, session_id: str, mark: bytes, page: int = RESULTS_PAGE
) -> AsyncIterator[dict[bytes, bytes]]:
    """The results stream's entries up to `mark`, oldest first, read `page` entries per request:
    a long meeting's stream holds tens of thousands, which one reply would hold in Redis' output
    buffer and this worker's memory at once, and which would block Redis while it builds it."""
    key, start = streams.results_key(session_id), b"-"
    while True:
        entries = await redis.xrange(key, start, mark, count=page)
        for _, fields in entries:
            yield fields
        if len(entries) < page:
            return
        start = b"(" + entries[-1][0]


async def committed_so_far(redis: Redis, session_id: str, mark: bytes, page: int = RESULTS_PAGE) -> Committed:
    """The committed transcript in the results stream before `mark` (this worker's TAKEN entry),
    as the gateway accepted it: an entry of an older epoch than one before it is void."""
    epoch, latest = 0, {}
    async for fields in results_before(redis, session_id, mark, page):
        entry_epoch = int(fields.get(streams.EPOCH, b"0"))
        if entry_epoch < epoch:
            continue
        epoch = entry_epoch
        if fields.get(streams.KIND) == streams.UPDATE:
            body: dict[str, Any] = json.loads(fields[streams.BODY])
            latest[int(body["segment_id"])] = (body, fields.get(streams.WORDS))
    committed = Committed(next_id=max(latest, default=-1) + 1)
    for segment_id, (body, words) in latest.items():  # insertion order: the order they were first sent
        if not body["committed"]:
            committed.drafts.append(segment_id)
        elif body["text"]:
            committed.segments.append(_segment(body, words))
    return committed


def _segment(body: dict[str, Any], words: bytes | None) -> Segment:
    timed = [Word(float(w[0]), float(w[1]), str(w[2]), float(w[3])) for w in json.loads(words)] if words else []
    return Segment(float(body["start"]), float(body["end"]), str(body["text"]), body.get("speaker"), timed)


def clear_drafts(committed: Committed) -> list[TranscriptUpdate]:
    """The updates that take the old worker's uncommitted drafts off the participants' screens."""
    return [TranscriptUpdate(segment_id, empty_segment(), committed=True) for segment_id in committed.drafts]


def seed(pump: LivePump, committed: Committed) -> None:
    """Start `pump`'s transcriber after the committed text (before `pump.start()`)."""
    pump.resume_after(committed.segments, committed.next_id)

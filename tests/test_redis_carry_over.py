"""A takeover carries the committed transcript over instead of transcribing the meeting again.

Against a real redis-server: what `committed_so_far` reads from a results stream (as the gateway
accepted it: older epochs' late entries void, drafts told apart, word times kept), page by page
(a four-hour meeting's results are never one reply; no entry lost or read twice at a page's edge). With the real
tiny.en model on the scripted meeting: a transcriber that dies mid-meeting, and one that takes over
from what the first published: it drafts the speech since the last committed word at once (then
commits in that draft's place), the committed segments are neither sent again nor re-transcribed
(no segment of the new one overlaps them), and no scripted turn is lost.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from redis.asyncio import Redis

from observability import Metrics
from services.asr_service import WhisperRecognizer, load_recognizer
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.live_policy import LivePolicy
from services.live_transcriber import LiveTranscriber
from services.protocol import partial_message
from services.redis_backend import streams
from services.redis_backend.takeover import RESULTS_PAGE, clear_drafts, committed_so_far, words_field
from services.redis_backend.worker_session import ResultPublisher
from services.types import Segment, TranscriptUpdate, Word
from tests.redis_server import lost_turns, redis_server
from tests.support import load_wav, make_settings

STEP = int(0.3 * 16_000)
KILLED_AT = 14.0
"""Seconds of audio the first worker had looked at when it died (inside the third scripted turn)."""


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    with redis_server() as url:
        client = streams.connect(url)
        yield client
        await client.aclose()


def _committed(segment_id: int, start: float, text: str) -> TranscriptUpdate:
    words = [Word(start + i * 0.4, start + i * 0.4 + 0.3, f" {word}") for i, word in enumerate(text.split())]
    return TranscriptUpdate(segment_id, Segment(start, words[-1].end, text, "SPEAKER_1", words), committed=True)


def _draft(segment_id: int, start: float, text: str) -> TranscriptUpdate:
    return TranscriptUpdate(segment_id, Segment(start, start + 1.0, text), committed=False)


async def test_the_committed_transcript_is_read_as_the_gateway_accepted_it(redis: Redis) -> None:
    first = ResultPublisher(redis, "m1", 1)
    await first.mark_taken()
    first.update(_committed(0, 0.5, "good morning everyone"), 0.1)
    first.update(_draft(1, 2.5, "the lau"), 0.1)
    first.update(TranscriptUpdate(2, Segment(0.0, 0.0, ""), committed=True), 0.1)  # a draft with no words
    first.update(_draft(3, 4.0, "thanks"), 0.1)
    await first.close()
    second = ResultPublisher(redis, "m1", 2)
    await second.mark_taken()
    second.update(_committed(4, 5.9, "thanks alice"), 0.2)
    await second.close()
    late = ResultPublisher(redis, "m1", 1)  # the first worker, still talking after it lost the meeting
    late.update(_committed(5, 7.0, "stale words"), 0.0)
    await late.close()
    third = ResultPublisher(redis, "m1", 3)
    mark = await third.mark_taken()
    after = ResultPublisher(redis, "m1", 3)
    after.update(_committed(6, 9.0, "after the mark"), 0.0)
    await after.close()

    committed = await committed_so_far(redis, "m1", mark)

    assert [s.text for s in committed.segments] == ["good morning everyone", "thanks alice"]
    assert committed.segments[0].speaker == "SPEAKER_1"
    assert [w.text for w in committed.segments[0].words] == [" good", " morning", " everyone"]
    assert committed.drafts == [1, 3] and committed.next_id == 5
    assert committed.until == pytest.approx(5.9 + 0.4 + 0.3)
    assert [(u.segment_id, u.committed, u.segment.text) for u in clear_drafts(committed)] == [
        (1, True, ""),
        (3, True, ""),
    ]
    await third.close()


async def _publish_long_meeting(redis: Redis, session_id: str, hours: float) -> list[str]:
    """The results a worker publishes over `hours` of meeting: each segment drafted three times,
    then committed (with its word times), one every 5 s; the committed texts."""
    key, texts = streams.results_key(session_id), []
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {streams.EPOCH: b"1", streams.KIND: streams.TAKEN, streams.BODY: b"{}"})
        for segment_id in range(int(hours * 3600 / 5)):
            start, text = segment_id * 5.0, f"segment {segment_id} was said"
            for draft in range(3):
                update = _draft(segment_id, start, " ".join(text.split()[: draft + 1]))
                pipe.xadd(key, {streams.EPOCH: b"1", streams.KIND: streams.UPDATE, streams.BODY: _body(update)})
            update = _committed(segment_id, start, text)
            fields = {streams.EPOCH: b"1", streams.KIND: streams.UPDATE, streams.BODY: _body(update)}
            pipe.xadd(key, fields | {streams.WORDS: words_field(update) or b""})
            texts.append(text)
        await pipe.execute()
    return texts


def _body(update: TranscriptUpdate) -> bytes:
    return json.dumps(partial_message(update, 0.0)).encode()


async def _xrange_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


async def test_a_takeover_reads_a_long_meetings_results_page_by_page(redis: Redis) -> None:
    texts = await _publish_long_meeting(redis, "long", hours=4.0)  # 2,880 segments, 11,521 entries
    entries = await redis.xlen(streams.results_key("long"))
    taker = ResultPublisher(redis, "long", 2)
    mark = await taker.mark_taken()
    await taker.close()
    await redis.config_resetstat()

    committed = await committed_so_far(redis, "long", mark)

    assert [segment.text for segment in committed.segments] == texts
    assert committed.next_id == len(texts) and committed.drafts == []
    assert committed.segments[-1].words[-1].text == " said"
    pages = await _xrange_calls(redis)
    assert pages == (entries + 1) // RESULTS_PAGE + 1, (pages, entries)  # with the mark; never one reply


@pytest.mark.parametrize("page", [1, 2, 3, 5])
async def test_page_boundaries_lose_and_repeat_nothing(redis: Redis, page: int) -> None:
    first = ResultPublisher(redis, "m3", 1)
    await first.mark_taken()
    for segment_id, text in enumerate(["one two", "three four", "five six"]):
        first.update(_draft(segment_id, segment_id * 2.0, text.split()[0]), 0.0)
        first.update(_committed(segment_id, segment_id * 2.0, text), 0.0)
    first.update(_draft(3, 6.0, "seven"), 0.0)
    await first.close()
    taker = ResultPublisher(redis, "m3", 2)
    mark = await taker.mark_taken()
    await taker.close()

    committed = await committed_so_far(redis, "m3", mark, page=page)

    assert [s.text for s in committed.segments] == ["one two", "three four", "five six"]
    assert committed.drafts == [3] and committed.next_id == 4


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> WhisperRecognizer:
    return load_recognizer(make_settings(tmp_path_factory.mktemp("carry")), Metrics())


def _steps(live: LiveTranscriber, buffer: SecureAudioBuffer, pcm: np.ndarray) -> list[TranscriptUpdate]:
    """Feed `pcm` as a stream feeds it; the updates the transcriber sent."""
    updates = []
    for offset in range(0, len(pcm), STEP):
        buffer.append(pcm[offset : offset + STEP])
        updates += live.advance()
        if (job := live.take_commit()) is not None:
            updates += live.apply_commit(job, live.transcribe_commit(job))
    return updates


async def test_a_takeover_sends_no_committed_text_again_and_loses_no_turn(
    redis: Redis, recognizer: WhisperRecognizer
) -> None:
    pcm, _ = load_wav("meeting_two_voices.wav")
    killed = int(KILLED_AT * 16_000)
    dead_buffer = SecureAudioBuffer(AudioCipher(None))
    dead = LiveTranscriber(recognizer, dead_buffer, LivePolicy())
    sent = _steps(dead, dead_buffer, pcm[:killed])  # then it dies: no finish, its drafts stay shown
    publisher = ResultPublisher(redis, "m2", 1)
    for update in sent:
        publisher.update(update, 0.0)
    await publisher.close()
    committed_before = {u.segment_id: u.segment.text for u in sent if u.committed and u.segment.text}
    assert committed_before, "the first worker had committed text when it died"

    taker = ResultPublisher(redis, "m2", 2)
    committed = await committed_so_far(redis, "m2", await taker.mark_taken())
    await taker.close()
    buffer = SecureAudioBuffer(AudioCipher(None))
    live = LiveTranscriber(recognizer, buffer, LivePolicy())
    live.resume_after(committed.segments, committed.next_id)
    buffer.append(pcm[:killed])  # the stored audio arrives at once, then the meeting goes on
    backlog = live.draft_backlog()  # shown again at once, as a draft
    updates = backlog + _steps(live, buffer, pcm[killed:]) + live.finish()

    assert [(u.segment_id, u.committed, bool(u.segment.text)) for u in backlog] == [(committed.next_id, False, True)]
    assert backlog[0].segment.start >= committed.until - 0.3
    assert any(u.segment_id == committed.next_id and u.committed and u.segment.text for u in updates), (
        "the careful pass commits in the backlog draft's place"
    )

    assert [s.text for s in committed.segments] == list(committed_before.values())
    assert all(u.segment_id >= committed.next_id for u in updates), "no id the client holds is reused"
    carried, new = live.committed[: len(committed.segments)], live.committed[len(committed.segments) :]
    assert [s.text for s in carried] == list(committed_before.values()), "committed text carried over as it was"
    assert new, "the rest of the meeting was transcribed"
    assert new[0].start >= committed.until - 0.3, (committed.until, new[0])  # no re-transcribed committed audio
    text = " ".join(s.text for s in live.committed)
    assert not lost_turns(text, "meeting_two_voices"), text
    words = [w.lower().strip(".,") for w in text.split()]
    repeats = [a for a, b in zip(words, words[1:], strict=False) if a == b]
    assert not repeats, f"a word committed twice at the seam: {repeats} in {text!r}"
